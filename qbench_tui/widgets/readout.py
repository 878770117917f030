"""Updating a text readout without a layout pass when its size stays the same.

``Static.update`` lays out the whole screen by default; while a sweep runs, readouts change
several times a second and a layout per change was most of the app's CPU. ``set_text`` skips
identical text, and lays out only when the text's height at the widget's width changes.
"""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static


def set_text(widget: Static, content: Content, fixed_height: bool = True) -> None:
    """Update a Static only when its text changes; one-line readouts (``fixed_height``: a
    height set in CSS) skip the layout pass.

    A readout that may wrap or grow (``fixed_height=False``) is laid out again only when its
    height at the current width changes (the phase strip changes with every phase and batch size)."""
    if getattr(widget, "_last_content", None) == content:
        return
    layout = not fixed_height
    width = widget.content_size.width
    if layout and width > 0:
        height = content.get_height(widget.styles, width)
        layout = getattr(widget, "_last_height", None) != (width, height)
        widget._last_height = (width, height)  # type: ignore[attr-defined]
    widget._last_content = content  # type: ignore[attr-defined]
    widget.update(content, layout=layout)
