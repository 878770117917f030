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


# The main screen's bindings by section (actions as in MainScreen.BINDINGS).
HELP_GROUPS: dict[str, tuple[str, ...]] = {
    "Sweep": ("run_sweep", "cancel_sweep", "starter_sweep", "open_model", "pull_model", "hosts", "quit"),
    "Results": ("focus_filter", "sort", "reverse_sort", "chart", "compare", "insights", "export", "clear_filters"),
    "Panes and help": ("pane('models')", "pane('setup')", "pane('meters')", "pane('results')", "help"),
}


def main_help_sections(app: Any, bindings: list[BindingType]) -> list[HelpSection]:
    """The help of the main screen: its ``bindings``, the results table's, the dialogs', and the
    keys Textual itself handles (lists, forms, the palette)."""
    from qbench_tui.screens.chart import ParetoChartScreen
    from qbench_tui.screens.compare import CompareScreen
    from qbench_tui.widgets.results import ResultsTable

    by_action = {b.action: b for b in bindings if isinstance(b, Binding)}
    sections = [(title, binding_rows(app, [by_action[a] for a in actions if a in by_action]))
                for title, actions in HELP_GROUPS.items()]
    sections[1][1].extend(binding_rows(app, ResultsTable.BINDINGS))
    sections[1][1].extend([("enter", "Open the result under the cursor: every measurement and the environment"),
                           ("click header", "Sort by that column (again: reverse)")])
    sections[2][1].extend([("tab / shift+tab", "Move between fields and panes"),
                           ("ctrl+p", "Command palette: run, cancel, export, themes, models, runs…"),
                           ("ctrl+q", "Quit at once (a running sweep is cancelled first)")])
    sections.append(("Lists and forms", [
        ("↑ ↓ / home end", "Move in a list or table"),
        ("space / enter", "Toggle a method, runtime or device; flip a switch"),
        ("escape", "Leave a text field (then the keys above work again)"),
    ]))
    sections.append(("Chart and compare dialogs", binding_rows(app, ParetoChartScreen.BINDINGS)
                     + binding_rows(app, CompareScreen.BINDINGS)))
    return sections
