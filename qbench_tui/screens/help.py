"""The help screen: every key binding of the app, generated from the binding declarations."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

HelpSection = tuple[str, list[tuple[str, str]]]  # (title, [(keys, description)])


class HelpScreen(ModalScreen[None]):
    """Shows the sections the app hands over; escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close"),
    ]

    def __init__(self, sections: list[HelpSection], footer: str = "", **kwargs: Any):
        super().__init__(**kwargs)
        self.sections = sections
        self.footer = footer

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -tall", id="help-dialog") as dialog:
            dialog.border_title = "qbench · keys"
            dialog.border_subtitle = "escape closes"
            with VerticalScroll():
                yield Static(self._text(), id="help-text")

    def _text(self) -> Content:
        key_w = max((len(k) for _, rows in self.sections for k, _ in rows), default=8) + 2
        lines: list[Content] = []
        for title, rows in self.sections:
            lines.append(Content.from_markup("[b $text-accent]$t[/]", t=title))
            for keys, description in rows:
                lines.append(Content.from_markup("  [b]$k[/]$d", k=keys.ljust(key_w), d=description))
            lines.append(Content(""))
        if self.footer:
            lines.append(Content.from_markup("[$text-muted]$f[/]", f=self.footer))
        return Content("\n").join(lines)


def binding_rows(app: Any, bindings: list[BindingType]) -> list[tuple[str, str]]:
    """(displayed keys, description) for each binding, keys as the footer shows them."""
    rows = []
    for item in bindings:
        binding = item if isinstance(item, Binding) else Binding(*item)
        keys = " / ".join(app.get_key_display(Binding(k.strip(), binding.action))
                          for k in binding.key.split(","))
        rows.append((keys, binding.tooltip or binding.description or binding.action))
    return rows
