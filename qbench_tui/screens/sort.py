"""Pick the column the results are sorted by (choosing the current one reverses it)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from qbench_tui.analysis import COLUMNS


class SortScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, current: str | None, reverse: bool, **kwargs: Any):
        super().__init__(**kwargs)
        self.current, self.reverse = current, reverse

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -small", id="sort-dialog") as dialog:
            dialog.border_title = "sort results by"
            dialog.border_subtitle = "enter sorts · again reverses · escape cancels"
            options = []
            for col in COLUMNS:
                arrow = (" ▼" if self.reverse else " ▲") if col.key == self.current else ""
                options.append(Option(f"{col.label}{arrow}", id=col.key))
            yield OptionList(*options, id="sort-list")

    def on_mount(self) -> None:
        option_list = self.query_one(OptionList)
        if self.current:
            option_list.highlighted = option_list.get_option_index(self.current)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)
