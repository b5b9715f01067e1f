"""README's demo table and images are what `make demo` prints: this runs the Makefile demo's exact
``mmbalance compare`` command (read from the Makefile, ~40 s on 2 idle cores) and compares every cell.

The images carry the numbers they were drawn from (PNG text chunk), written by scripts/update_readme_demo.py;
they are compared with the fresh run's numbers, not pixel by pixel (pixels vary with the matplotlib version)."""
import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("update_readme_demo", REPO / "scripts" / "update_readme_demo.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def printed_table(text: str):
    """(headers, rows) of the first fixed-width table `compare` printed (columns cut at the dash rule)."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("method") and "test acc (%)" in line)
    spans = [m.span() for m in re.finditer(r"-+", lines[i + 1])]
    cut = lambda row: [row[a: (spans[j + 1][0] if j + 1 < len(spans) else None)].strip()  # noqa: E731
                       for j, (a, _) in enumerate(spans)]
    rows = []
    for line in lines[i + 2:]:
        if not line.strip() or len(line) > len(lines[i + 1]):  # a blank line or the notes under the table
            break
        rows.append(cut(line))
    return cut(lines[i]), rows


def readme_table(block: str):
    md = [line for line in block.splitlines() if line.startswith("|")]
    split = lambda row: [c.strip() for c in row.strip().strip("|").split("|")]  # noqa: E731
    return split(md[0]), [split(row) for row in md[2:]]


@pytest.mark.e2e
def test_readme_demo_table_and_images_are_what_make_demo_prints(tmp_path):
    U = _script()
    grid = tmp_path / "demo"
    argv = U.demo_command(grid)
    assert argv[:1] == ["compare"] and "--seeds" in argv and f"{grid}" in argv
    printed = U.run_demo(grid)
    headers, rows = printed_table(printed)
    keep = [j for j, h in enumerate(headers) if h not in U.VARIABLE_COLUMNS]
    readme = (REPO / "README.md").read_text()
    block = U.current_block(readme)
    assert block, "README.md has no demo block"
    r_headers, r_rows = readme_table(block)
    assert r_headers == [headers[j] for j in keep]
    assert r_rows == [[row[j] for j in keep] for row in rows], "README's demo table differs from what the demo prints"
    assert block == U.readme_block(grid)  # and it is exactly what the script writes
    for name, source in U.image_sources(grid).items():
        assert U.png_source(REPO / "docs" / "img" / name) == source, f"docs/img/{name} was not drawn from this demo"
