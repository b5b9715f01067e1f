"""Print a method's options as the markdown table the docs pages embed (regenerate, never edit by hand).

    PYTHONPATH=src python scripts/method_options_md.py greedy

``tests/test_bb_methods.py`` checks that each page of docs/methods/ that embeds a table between
``<!-- options:NAME -->`` and ``<!-- /options -->`` holds exactly this output.
"""
from __future__ import annotations

import sys


def options_table(method: str) -> str:
    """``| option | type | default | source | meaning |`` rows of ``method``'s declared options."""
    from mmbalance.engine.options import describe_options
    from mmbalance.methods import METHODS

    rows = ["| option | type | default | source | meaning |", "|---|---|---|---|---|"]
    for name, kind, default, source, doc in describe_options(METHODS.get(method).Options):
        cell = doc.replace("|", "\\|")
        rows.append(f"| `{name}` | {kind} | `{default!r}` | {source} | {cell} |")
    return "\n".join(rows)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: method_options_md.py METHOD")
    print(options_table(sys.argv[1]))
