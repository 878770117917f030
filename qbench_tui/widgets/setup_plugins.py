"""Method plugins named by installed packages' entry points, looked for after the first frame.

Finding them reads every installed package's metadata (0.1 s or more on a loaded machine), which
the first frame does not wait for: the app starts with the entry-point scan deferred
(:func:`engines.core.discovery.defer_entry_points`), lists the built-in methods and
``$QBENCH_PLUGINS``'s, and once the panes are drawn a thread scans the entry points and imports
what they name. New methods are added to the list (and selected again where the remembered
set-up had them); a plugin that cannot be imported is reported, as it was before at start-up.
"""

from __future__ import annotations

from typing import Any

from textual.content import Content
from textual.widgets import SelectionList
from textual.widgets.selection_list import Selection

from engines import catalog
from engines.core import discovery


class LatePlugins:
    """Mixed into :class:`~qbench_tui.widgets.sweep_setup.SweepSetupPane`."""

    app: Any
    screen: Any
    plugins_scanned = False  # the entry points were scanned (and what they name imported)

    def scan_plugins_later(self) -> None:
        self.run_worker(self._scan_plugins, thread=True, group="plugins", exit_on_error=False)  # type: ignore[attr-defined]

    def _scan_plugins(self) -> None:
        before = set(catalog.METHODS)
        problem = None
        try:
            if discovery.scan_entry_points():
                catalog.METHODS, catalog.RUNTIMES  # imports them here, off the UI thread  # noqa: B018
        except ImportError as exc:
            problem = str(exc)
        new = [name for name in catalog.METHODS if name not in before]
        try:
            self.app.call_from_thread(self._plugins_found, new, problem)
        except RuntimeError:  # the app has closed meanwhile
            pass

    def _plugins_found(self, new: list[str], problem: str | None) -> None:
        self.plugins_scanned = True
        if problem:
            self.app.notify(problem, title="plugin skipped", severity="error")
        if not new:
            return
        methods = self.query_one("#methods", SelectionList)  # type: ignore[attr-defined]
        remembered = (getattr(getattr(self.screen, "settings", None), "last_setup", None) or {}).get("methods", [])
        methods.add_options([
            Selection(Content.from_markup("$n [$text-muted]$b-bit[/]", n=spec.name, b=str(spec.bits)),
                      spec.name, spec.name in remembered, id=spec.name)
            for spec in (catalog.METHODS[name] for name in new)])
        self.refresh_support()  # type: ignore[attr-defined]
