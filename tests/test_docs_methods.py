"""Every docs/methods page that embeds an option table (``<!-- options:NAME -->`` ... ``<!-- /options -->``) holds
exactly what scripts/method_options_md.py generates from the method's declared options, and has a fidelity note."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- options:([\w-]+) -->\n(.*?)\n<!-- /options -->", re.S)
PAGES = sorted(p for p in (ROOT / "docs" / "methods").glob("*.md") if BLOCK.search(p.read_text()))


def _generator():
    spec = importlib.util.spec_from_file_location("method_options_md", ROOT / "scripts" / "method_options_md.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("page", PAGES, ids=[p.stem for p in PAGES])
def test_the_docs_option_table_is_the_generated_one(page):
    text = page.read_text()
    mod = _generator()
    for method, embedded in BLOCK.findall(text):
        assert embedded == mod.options_table(method), f"regenerate with scripts/method_options_md.py {method}"
    assert "## Fidelity note" in text


def test_the_pages_of_the_documented_methods_are_checked():
    assert {"greedy", "umt", "ume", "mbsd", "dgl", "arl", "inforeg", "cggm"} <= {p.stem for p in PAGES}
