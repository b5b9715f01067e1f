#!/usr/bin/env python
"""Regenerate docs/functional.md from mmbalance.functional: each family's module docstring (what the method does
and a recipe for your own loop) and, for each function, its signature and the first paragraph of its docstring.

    python scripts/build_functional_docs.py            # write docs/functional.md
    python scripts/build_functional_docs.py --check    # exit 1 if the page is out of date (a test runs this)
"""
from __future__ import annotations

import argparse
import inspect
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
PAGE = ROOT / "docs" / "functional.md"

HEADER = """# `mmbalance.functional`: the methods' math for your own training loop

Every method's core is a plain, typed function, and the plug-ins call the very same functions: one
implementation, two entry points. Use `--method ogm-ge+diagnose-relearn` on mmbalance's `Trainer`, or call
`ogm_coefficients` + `modulate_` and `purity_gap` + `soft_reinit_` from the loop you already have.
[`examples/plain_loop.py`](../examples/plain_loop.py) trains with OGM-GE and D&R in a plain PyTorch loop, and a
test (`tests/test_plain_loop.py`) checks that its per-epoch test accuracies and final weights equal those of
the same methods run by the `Trainer` on the same seed and data. To run the plug-ins themselves inside a
Lightning module, see [`mmbalance.lightning`](lightning.md).

```python
from mmbalance.functional import ogm_ge, diagnose_relearn     # a family
from mmbalance.functional.dus import heuristic_sizes          # one function
import mmbalance.functional as MF; MF.pacing                  # a name only one family defines
```

`agm.discrepancy` and `dus.discrepancy` are different functions: ask for them through their family.
What each function does to state is in its name: a trailing `_` (`modulate_`, `soft_reinit_`,
`pareto_rewrite_`) changes its arguments in place; every other function returns new values.

*This page is generated from the docstrings by `scripts/build_functional_docs.py`; edit those, not this file.*
"""


def _first_paragraph(doc: str) -> str:
    para = inspect.cleandoc(doc or "").split("\n\n")[0]
    return " ".join(line.strip() for line in para.splitlines())


def _signature(fn) -> str:
    """``name(arg: Type = default, ...) -> Type`` with the annotations as written (no quotes)."""
    sig = inspect.signature(fn)

    def ann(a) -> str:
        return a if isinstance(a, str) else inspect.formatannotation(a)

    params = []
    for p in sig.parameters.values():
        text = p.name + (f": {ann(p.annotation)}" if p.annotation is not p.empty else "")
        if p.default is not p.empty:
            text += f" = {p.default!r}"
        params.append(text)
    ret = f" -> {ann(sig.return_annotation)}" if sig.return_annotation is not sig.empty else ""
    return f"({', '.join(params)}){ret}".replace("torch.Tensor", "Tensor")


def render() -> str:
    import mmbalance.functional as MF
    from mmbalance.functional import common

    parts = [HEADER]
    for fam in ("common", *MF.FAMILIES):
        mod = common if fam == "common" else MF.family(fam)
        parts.append(f"\n## `{fam}`\n\n{inspect.cleandoc(mod.__doc__ or '')}\n")
        consts = [n for n in mod.__all__ if not callable(getattr(mod, n))]
        for name in mod.__all__:
            obj = getattr(mod, name)
            if not callable(obj) or inspect.isclass(obj):
                continue
            sig = _signature(obj)
            source = obj.__module__
            parts.append(f"\n### `{name}`\n\n```text\n{name}{sig}\n```\n"
                         f"{textwrap.fill(_first_paragraph(obj.__doc__), 115)}  \n*defined in* `{source}`\n")
        if consts:
            parts.append("\nConstants: " + ", ".join(f"`{n}` = `{getattr(mod, n)!r}`" for n in consts) + "\n")
    return "".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/functional.md is out of date")
    args = ap.parse_args()
    text = render()
    if args.check:
        if not PAGE.is_file() or PAGE.read_text() != text:
            print(f"{PAGE} is out of date: run python scripts/build_functional_docs.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
