"""The report page builder: the same content as HTML (images inlined as base64) and markdown (images linked)."""
from __future__ import annotations

import base64
import datetime
import html as _html
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .aggregate import markdown_table

HTML_FILE = "report.html"
MD_FILE = "report.md"

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #ddd;padding-bottom:.3em}h2{margin-top:1.6em;border-bottom:1px solid #eee}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em}
th{background:#f4f4f4}td{text-align:right}td:first-child{text-align:left;font-weight:600}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85em;color:#444;max-width:60em}
code{background:#f4f4f4;padding:0 .2em}.warn{color:#a00}.meta{color:#777;font-size:.85em}
pre{background:#f7f7f7;border:1px solid #e4e4e4;padding:.6em;overflow-x:auto;font-size:.85em}
details{margin:.6em 0}summary{cursor:pointer;color:#245}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;font-size:.92em}dl.kv dt{font-weight:600}
dl.kv dd{margin:0}
"""


def esc(s: Any) -> str:
    return _html.escape(str(s))


class Page:
    """Accumulates the same content as HTML (images inlined) and markdown (images linked)."""

    def __init__(self, title: str, out: Path):
        self.title, self.out = title, out
        self.html: List[str] = []
        self.md: List[str] = []
        self.images: List[Path] = []
        self.warnings: List[str] = []

    def heading(self, text: str) -> None:
        self.html.append(f"<h2>{esc(text)}</h2>")
        self.md.append(f"\n## {text}\n")

    def subheading(self, text: str) -> None:
        self.html.append(f"<h3>{esc(text)}</h3>")
        self.md.append(f"\n### {text}\n")

    def para(self, html_text: str, md_text: Optional[str] = None) -> None:
        """``html_text`` is HTML when ``md_text`` is given; otherwise plain text used for both."""
        if md_text is None:
            self.html.append(f"<p>{esc(html_text)}</p>")
            self.md.append(html_text + "\n")
        else:
            self.html.append(f"<p>{html_text}</p>")
            self.md.append(md_text + "\n")

    def warn(self, text: str) -> None:
        """A warning shown where it applies (and listed at the top of the page)."""
        self.html.append(f'<p class="warn">{esc(text)}</p>')
        self.md.append(f"> **warning:** {text}\n")
        self.warnings.append(text)

    def facts(self, items: Sequence[Sequence[str]]) -> None:
        """A ``name: value`` list (values are plain text)."""
        self.html.append('<dl class="kv">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items)
                         + "</dl>")
        self.md.append("\n".join(f"- **{k}**: {v}" for k, v in items) + "\n")

    def code(self, text: str, summary: Optional[str] = None, lang: str = "") -> None:
        """Preformatted text; collapsed behind ``summary`` when given."""
        block = f"<pre>{esc(text)}</pre>"
        self.html.append(f"<details><summary>{esc(summary)}</summary>{block}</details>" if summary else block)
        self.md.append((f"{summary}:\n\n" if summary else "") + f"```{lang}\n{text.rstrip()}\n```\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        head = "".join(f"<th>{esc(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
        self.html.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        self.md.append(markdown_table(headers, rows) + "\n")

    def image(self, path: Optional[Path], caption: str) -> None:
        if path is None or not Path(path).is_file():
            return
        path = Path(path)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self.html.append(f'<figure><img alt="{esc(path.stem)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{esc(caption)}</figcaption></figure>")
        try:
            rel = path.resolve().relative_to(self.out.resolve())
        except ValueError:
            rel = path.resolve()
        self.md.append(f"![{path.stem}]({rel.as_posix()})\n\n*{caption}*\n")
        self.images.append(path)

    def write(self) -> Dict[str, Any]:
        from ..engine.checkpoint import atomic_write_text

        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        warn_html = "".join(f'<p class="warn">warning: {esc(w)}</p>' for w in self.warnings)
        doc = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(self.title)}</title>"
               f"<style>{_CSS}</style></head><body><h1>{esc(self.title)}</h1>"
               f"<p class=\"meta\">generated by mmbalance report on {stamp}</p>{warn_html}"
               + "\n".join(self.html) + "</body></html>\n")
        self.out.mkdir(parents=True, exist_ok=True)
        html_path = self.out / HTML_FILE
        atomic_write_text(html_path, doc)  # a failed report never leaves half a page over the last one
        md = [f"# {self.title}\n", f"*generated by mmbalance report on {stamp}*\n"]
        md += [f"> warning: {w}\n" for w in self.warnings]
        md_path = self.out / MD_FILE
        atomic_write_text(md_path, "\n".join(md + self.md))
        return {"html": html_path, "markdown": md_path, "images": list(self.images), "warnings": list(self.warnings)}


__all__ = ["HTML_FILE", "MD_FILE", "Page", "esc"]
