"""Regenerate the option tables of docs/methods/*.md from the registered methods' declared options.

A table lives between ``<!-- options: NAME -->`` and ``<!-- /options -->``; everything between the two markers
is rewritten from ``describe_options(METHODS.get(NAME).Options)`` (name, allowed values, default, provenance,
doc). ``--check`` rewrites nothing and exits 1 naming the first stale table (the test suite runs it).

    python scripts/method_options_md.py [--check] [docs/methods/x.md ...]
"""
from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mmbalance.engine.options import describe_options  # noqa: E402
from mmbalance.methods import METHODS  # noqa: E402

BLOCK = re.compile(r"(<!-- options: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /options -->)", re.S)


def options_table(name: str) -> str:
    """The markdown table of method ``name``'s options."""
    rows = ["| option | values | default | source | meaning |", "|---|---|---|---|---|"]
    for opt, what, default, source, doc in describe_options(METHODS.get(name).Options):
        cell = doc.replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{opt}` | {what} | `{default!r}` | {source} | {cell} |")
    return "\n".join(rows) + "\n"


def render(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + options_table(m.group("name")) + m.group(4), text)


def main(argv: List[str]) -> int:
    check = "--check" in argv
    files = [Path(a) for a in argv if a != "--check"] or sorted((ROOT / "docs" / "methods").glob("*.md"))
    for path in files:
        text = path.read_text()
        new = render(text)
        if new == text:
            continue
        if check:
            print(f"{path}: an option table is out of date; run python scripts/method_options_md.py")
            return 1
        path.write_text(new)
        print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
