"""A scrolling pane that says so: its frame's lower border reads "↓ more below: …" while there is
more below the fold (a newcomer otherwise never finds the settings down there)."""

from __future__ import annotations

from typing import Any


class ScrollHint:
    """Mixed into a scrolling widget inside a bordered frame (its parent)."""

    SCROLL_HINT = "↓ more below"
    details_ready = True  # a pane that mounts its lower part late sets this False until then

    parent: Any
    scroll_y: float
    max_scroll_y: int

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)  # type: ignore[misc]
        self._hint_scroll()

    def watch_virtual_size(self) -> None:
        self._hint_scroll()

    def _hint_scroll(self) -> None:
        frame = self.parent
        if frame is None or not self.details_ready:
            return
        more = self.max_scroll_y > 0 and self.scroll_y < self.max_scroll_y - 1
        hint = self.SCROLL_HINT if more else ""
        if getattr(frame, "border_subtitle", None) != hint:
            frame.border_subtitle = hint
