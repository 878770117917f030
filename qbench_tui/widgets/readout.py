"""Updating a text readout without a layout pass when its size stays the same.

``Static.update`` lays out the whole screen by default; while a sweep runs, readouts change
several times a second and a layout per change was most of the app's CPU. ``set_text`` skips
identical text, and lays out only when the text's height at the widget's width changes.
"""

from __future__ import annotations

import os
from pathlib import Path

from textual.content import Content
from textual.widgets import Static


def set_text(widget: Static, content: Content, fixed_height: bool = True, keep_height: bool = False,
             reserve: Content | None = None) -> None:
    """Update a Static only when its text changes; one-line readouts (``fixed_height``: a
    height set in CSS) skip the layout pass.

    A readout that may wrap or grow (``fixed_height=False``) is laid out again only when its
    height at the current width changes (the phase strip changes with every phase and batch size).
    With ``keep_height`` it never shrinks: shorter text is followed by blank lines (a readout
    that grows and shrinks with each variant of a sweep would lay the screen out each time).
    ``reserve``: the readout is at least as tall as this text would be (room taken at once for
    what a sweep will show later, rather than a layout when it does)."""
    key = content if reserve is None else (content, reserve)  # the same text, room reserved: laid out again
    if getattr(widget, "_last_content", None) == key:
        return
    widget._last_content = key  # type: ignore[attr-defined]
    layout = not fixed_height
    width, shown = widget.content_size  # as laid out now (a layout already asked for may change it)
    if layout and width > 0:
        height = content.get_height(widget.styles, width)
        least = max(shown if keep_height else 0,
                    reserve.get_height(widget.styles, width) if reserve is not None else 0)
        if height < least:
            content, height = content + Content("\n" * (least - height)), least
        layout = height != shown
    widget.update(content, layout=layout)


def short_path(path: Path | str | None) -> str:
    """A path with the home folder as ``~`` (the top bar is narrow)."""
    if path is None:
        return "–"
    text = str(path)
    home = str(Path.home())
    return "~" + text[len(home):] if text.startswith(home + os.sep) else text
