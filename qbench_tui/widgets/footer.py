"""Textual's compact footer, minus the work it repeats at start-up.

Textual's ``Footer`` recomposes (removes and mounts every key) each time the screen's bindings
signal a change, which includes every focus change, even when the keys shown stay the same; and
each compact key, once mounted, adds its ``-compact`` class, which restyles it again. At start-up
that was four recomposes and about 90 restyles, a sizeable part of the time to the first full
frame. This footer shows the same keys in the same style: it recomposes only when what it shows
changed, and its keys carry ``-compact`` from the start. When only keys are enabled or dimmed (a
sweep starting or ending, the panes mounted, the history read) it restyles them in place: a
recompose lays out the whole screen (about 20 ms each at start-up).
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
        # The keys are composed with the footer, so they are in the screen's first frame (Footer
        # waits for the screen's first bindings signal, then for a refresh, then recomposes:
        # a frame later, and a layout of the whole screen).
        self.set_reactive(Footer._bindings_ready, True)

    def compose(self) -> ComposeResult:
        self._shown = self._keys_shown()  # what a recompose compares with
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
            # Only keys enabled or dimmed (a sweep starting or ending: Run dims, Cancel lights):
            # restyled in place, without removing and mounting every key (a layout of the screen).
            enabled = {(key[0], key[3]): key[5] for key in shown[0]}
            for widget in self.query(FooterKey):
                disabled = not enabled.get((widget.key, widget.action), not widget._disabled)
                widget._disabled = disabled  # what a click reads (FooterKey.on_mouse_down)
                widget.set_class(disabled, "-disabled")
            self._shown = shown
            return
        self._shown = shown
        await super().recompose()


def _without_enabled(shown: tuple[Any, ...]) -> tuple[Any, ...]:
    """What ``_keys_shown`` returns, less each key's enabled flag."""
    keys, *rest = shown
    return (tuple(key[:5] + key[6:] for key in keys), *rest)
