"""Textual's compact footer, minus the work it repeats at start-up.

Textual's ``Footer`` recomposes (removes and mounts every key) each time the screen's bindings
signal a change, which includes every focus change, even when the keys shown stay the same; and
each compact key, once mounted, adds its ``-compact`` class, which restyles it again. At start-up
that was four recomposes and about 90 restyles, a sizeable part of the time to the first full
frame. This footer shows the same keys in the same style: it recomposes only when what it shows
changed, turns keys on and off in place when only that changed (the panes mounted, the history
read: two recomposes at start-up, about 20 ms each), and its keys carry ``-compact`` from the start.
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.widgets import Footer
from textual.widgets._footer import FooterKey  # the keys Footer.compose yields (not re-exported)


class CompactFooter(Footer):
    """``Footer(compact=True)`` that recomposes only when its keys change."""

    def __init__(self, **kwargs: Any):
        super().__init__(compact=True, **kwargs)
        self._shown: tuple[Any, ...] | None = None

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if isinstance(widget, FooterKey) and self.compact:
                # Set before mounting: the key's own watcher then finds it set and restyles nothing.
                widget.set_class(True, "-compact", update=False)
            yield widget

    def _keys_shown(self) -> tuple[Any, ...]:
        """What compose would show: the shown bindings (and the palette's), enabled or not."""
        palette = self.app.COMMAND_PALETTE_BINDING
        keys = tuple(
            (binding.key, self.app.get_key_display(binding), binding.description, binding.action,
             binding.group, enabled, tooltip)
            for key, (_, binding, enabled, tooltip) in self.screen.active_bindings.items()
            if binding.show or key == palette)
        return keys, self.compact, self.show_command_palette, self.app.ENABLE_COMMAND_PALETTE

    async def recompose(self) -> None:
        if not self.is_attached:
            return
        shown = self._keys_shown()
        if shown == self._shown and self.children:
            return  # the same keys: nothing to remove and mount again
        if self._shown is not None and self.children and _without_enabled(shown) == _without_enabled(self._shown):
            # Only keys turned on or off (the panes mounted, the history read): set in place.
            enabled = {(key[0], key[3]): key[5] for key in shown[0]}
            for widget in self.query(FooterKey):
                on = enabled.get((widget.key, widget.action), not widget.has_class("-disabled"))
                widget._disabled = not on  # FooterKey reads it on a click (the bell for a dimmed key)
                widget.set_class(not on, "-disabled")
            self._shown = shown
            return
        self._shown = shown
        await super().recompose()


def _without_enabled(shown: tuple[Any, ...]) -> tuple[Any, ...]:
    keys, *rest = shown
    return (tuple(key[:5] + key[6:] for key in keys), *rest)
