"""Check boxes whose state reads in text: ``[x]`` chosen, ``[ ]`` not.

Textual draws every toggle as ``▐X▌`` and tells on from off by colour alone: on a 16-colour SSH
terminal, in a text capture or through a screen reader every row looks chosen. These subclasses
keep Textual's behaviour, styles and mouse targets and only change the three characters.
"""

from __future__ import annotations

from rich.segment import Segment
from textual.content import Content
from textual.strip import Strip
from textual.widgets import Checkbox, SelectionList
from textual.widgets._toggle_button import ToggleButton
from textual.widgets.option_list import OptionDoesNotExist

CHECKED, UNCHECKED = "[x]", "[ ]"


def mark(on: bool) -> str:
    """The three characters for a toggle's state."""
    return CHECKED if on else UNCHECKED


class TextCheckbox(Checkbox):
    """A Checkbox drawn as ``[x]`` / ``[ ]``."""

    @property
    def _button(self) -> Content:
        style = self.get_visual_style("toggle--button")
        return Content.assemble((mark(self.value), style))


class CheckList(SelectionList[str]):
    """A SelectionList whose rows start with ``[x]`` / ``[ ]`` instead of a coloured ``▐X▌``."""

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        segments = list(strip)
        if len(segments) < 3 or segments[1].text != ToggleButton.BUTTON_INNER:
            return strip  # not an option row (past the last option)
        try:
            selection = self.get_option_at_index(self.scroll_offset.y + y)
        except OptionDoesNotExist:
            return strip
        text = mark(selection.value in self._selected)
        button_style = segments[1].style  # holds the option's index for the mouse, as the sides do
        boxed = [Segment(char, button_style) for char in text]
        return Strip([*boxed, *segments[3:]], strip.cell_length)
