"""The command palette's provider: the app's own commands (run, cancel, export, themes,
models, runs, panes), listed from the app's current state."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from qbench_tui.app import QBenchApp


class QBenchCommands(Provider):
    """Every entry comes from ``QBenchApp.palette_commands`` (title, help, callback, discover)."""

    def _commands(self):
        app = cast("QBenchApp", self.app)
        return app.palette_commands()

    async def discover(self) -> Hits:
        for title, help_text, callback, show in self._commands():
            if show:
                yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback, _ in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)
