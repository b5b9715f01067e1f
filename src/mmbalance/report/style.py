"""Colours shared by every figure of a report page, so that a modality has one colour on the whole page.

Modalities take the colour-blind-safe Okabe-Ito palette in sorted-name order; a report page first declares
all its modalities (:func:`page_modalities`), so that a plot showing only some of them (a unimodal run, a
method logging one modality) still uses the page's colours. Methods take matplotlib's ``tab10`` in the
order given (the page's method order), a palette distinct from the modalities'.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Dict, Iterable, Iterator, Sequence, Tuple

#: Okabe & Ito (2008), without yellow (unreadable on white) and black (kept for fused/total lines)
MODALITY_PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#D55E00", "#CC79A7", "#0072B2", "#999999")
#: what is not a modality: the fused prediction, the total loss
FUSED_COLOR = "black"

_PAGE: contextvars.ContextVar[Tuple[str, ...]] = contextvars.ContextVar("mmbalance_page_modalities", default=())


@contextlib.contextmanager
def page_modalities(names: Iterable[str]) -> Iterator[None]:
    """Within the block, :func:`modality_colors` assigns colours from all of ``names`` (the page's modalities)."""
    token = _PAGE.set(tuple(sorted(set(names))))
    try:
        yield
    finally:
        _PAGE.reset(token)


def modality_colors(names: Iterable[str]) -> Dict[str, str]:
    """``{modality: colour}`` for ``names``: from the page's modalities when they include every name, else
    from the sorted ``names`` themselves (the same colours on every plot that shows the same modalities)."""
    names = list(dict.fromkeys(names))
    page = _PAGE.get()
    order = page if page and set(names) <= set(page) else tuple(sorted(names))
    return {n: MODALITY_PALETTE[order.index(n) % len(MODALITY_PALETTE)] for n in names}


def method_colors(methods: Sequence[str]) -> Dict[str, str]:
    """``{method: colour}`` in the given order (tab10)."""
    return {m: f"C{i % 10}" for i, m in enumerate(dict.fromkeys(methods))}


__all__ = ["MODALITY_PALETTE", "FUSED_COLOR", "page_modalities", "modality_colors", "method_colors"]
