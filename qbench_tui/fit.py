"""Fitting a table to the terminal's width by column priority, for the app's results table and the
CLI's tables alike.

Each column says how wide its content is, how much it matters (``priority`` 1: always shown;
higher numbers give way first) and, for identifiers, how far it may shorten (``shrink``). A table
too wide first shortens its identifiers (those of the highest priority numbers first), then drops
whole columns, the highest priority number first and, among equals, the rightmost. A new column
is one more :class:`FitColumn` with its priority.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FitColumn:
    key: str
    width: int  # the widest cell or header
    priority: int = 5
    shrink: int | None = None  # an identifier: may be cut to this many cells (an ellipsis ends it)


def fit_widths(columns: Sequence[FitColumn], available: int, gap: int = 2) -> dict[str, int]:
    """The columns that fit in ``available`` cells (each costs its width plus ``gap``), with their
    widths, in the columns' order. Columns of priority 1 stay even when they do not fit."""
    widths = {c.key: c.width for c in columns}

    def excess() -> int:
        return sum(widths.values()) + gap * len(widths) - available

    if available <= 0 or excess() <= 0:
        return widths
    by_weakest = sorted(range(len(columns)), key=lambda i: (-columns[i].priority, -i))
    for i in by_weakest:
        col = columns[i]
        if col.shrink is not None and widths[col.key] > col.shrink:
            widths[col.key] -= min(excess(), widths[col.key] - col.shrink)
            if excess() <= 0:
                return widths
    for i in by_weakest:
        col = columns[i]
        if col.priority <= 1:
            break
        del widths[col.key]
        if excess() <= 0:
            break
    dropped = [i for i in reversed(by_weakest) if columns[i].key not in widths]
    for i in reversed(by_weakest):  # what dropping freed lengthens the shortened first, strongest first
        col = columns[i]
        if col.key in widths and widths[col.key] < col.width and excess() < 0:
            widths[col.key] += min(-excess(), col.width - widths[col.key])
    for i in dropped:  # then a column dropped on the way that fits in what is left comes back
        if columns[i].width + gap <= -excess():
            widths[columns[i].key] = columns[i].width
    widths = {c.key: widths[c.key] for c in columns if c.key in widths}  # in the columns' order
    return widths


def clip(text: str, width: int) -> str:
    """``text`` in at most ``width`` cells, an ellipsis ending what was cut."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def fit_table(columns: Sequence[Any], rows: Sequence[dict[str, Any]], ctx: dict[str, Any],
              available: int, sort_key: str | None = None) -> list[tuple[Any, int | None]]:
    """The app's table columns (``analysis.Column``: label, width, priority, shrink, text) that fit
    ``available`` cells for these rows, each with the width it is cut to (None: its own)."""
    fits = [FitColumn(col.key, col.width or max(max((len(col.text(r, ctx)) for r in rows), default=0),
                                                len(col.label) + (2 if col.key == sort_key else 0)),  # " ▼"
                      col.priority, col.shrink) for col in columns]
    widths = fit_widths(fits, available)
    return [(col, widths[col.key] if widths[col.key] < fit.width else None)
            for col, fit in zip(columns, fits, strict=True) if col.key in widths]
