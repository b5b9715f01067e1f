"""Print the markdown options table of registered methods (for docs/methods/*.md).

    python scripts/method_options_table.py lfm mmcosine

One table per method: option, allowed values, default, provenance tag, meaning -- read from the method's
declarative ``Options`` (``mmbalance.engine.options.describe_options``), so the docs cannot drift from the code.
"""
from __future__ import annotations

import sys

from mmbalance.engine.options import describe_options
from mmbalance.methods import METHODS


def table(name: str) -> str:
    rows = ["| option | values | default | source | meaning |", "|---|---|---|---|---|"]
    for opt, what, default, source, doc in describe_options(METHODS.get(name).Options):
        rows.append(f"| `{opt}` | {what} | `{_value(default)}` | {source} | {doc.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


def _value(v) -> str:
    """A default as it is written in an override (``null``, ``true``, ``0.5``, ``fitted``)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def main(names) -> None:
    for i, name in enumerate(names):
        if len(names) > 1:
            print(f"{'' if i == 0 else chr(10)}`{name}`:\n")
        print(table(name))


if __name__ == "__main__":
    main(sys.argv[1:])
