"""The main screen's side of the results pane: its keys (filter, sort, chart, compare, export),
the Hosts and Insights views, exporting the shown rows (a thread worker) or the selected variant
as a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.widgets import Input

from qbench_tui import messages
from qbench_tui.controllers.sweep import describe_error

if TYPE_CHECKING:
    from qbench_tui.widgets.model_browser import ModelBrowser
    from qbench_tui.widgets.results import ResultsPane


class ResultsReactions:
    """Mixed into :class:`~qbench_tui.screens.main.MainScreen`."""

    store: Any | None
    db_path: Path | None
    built: bool
    if TYPE_CHECKING:
        results_pane: ResultsPane
        browser: ModelBrowser
        app: Any

        def action_pane(self, pane: str) -> None: ...
        def notify(self, message: str, **kwargs: Any) -> None: ...
        def post_message(self, message: Any) -> bool: ...

    def on_results_pane_result_opened(self, message: ResultsPane.ResultOpened) -> None:
        self.results_pane.open_result(message.result)

    def action_focus_filter(self) -> None:
        self.action_pane("results")
        self.results_pane.query_one("#filter-text", Input).focus()

    def action_clear_filters(self) -> None:
        self.results_pane.clear_filters()

    def action_sort(self) -> None:
        self.results_pane.choose_sort()

    def action_reverse_sort(self) -> None:
        self.results_pane.reverse_sort()

    def action_chart(self) -> None:
        self.results_pane.show_chart()

    def action_hosts(self) -> None:
        from qbench_tui.screens.hosts import HostsScreen

        self.app.push_screen(HostsScreen(self.store))

    def action_compare(self) -> None:
        self.results_pane.compare_marked()

    def action_insights(self) -> None:
        from qbench_tui.screens.insights import InsightsScreen

        selected = getattr(self.browser, "selected", None) if self.built else None
        self.app.push_screen(InsightsScreen(self.store, getattr(selected, "name", None)))

    def action_export(self) -> None:
        self.results_pane.export_shown()

    def action_export_model(self) -> None:
        from qbench_tui.screens.export_model import ExportModelScreen

        result = self.results_pane.cursor_result()
        if result is None or result.get("status") != "ok":
            self.notify("select an ok result in the results table first", title="export model", timeout=5)
            return
        self.app.push_screen(ExportModelScreen(result, self.db_path))

    def on_results_pane_export_chosen(self, message: ResultsPane.ExportChosen) -> None:
        self._export_worker(message.path, message.query)

    @work(thread=True, group="export", exit_on_error=False)
    def _export_worker(self, path: Path, query: Any) -> None:
        from qbench_tui.screens.export import write_results

        try:
            results = self.store.query_results(query) if self.store is not None else []
            write_results(path, results)
        except (OSError, ValueError, TypeError) as exc:
            self.post_message(messages.ResultsExported(str(path), 0, describe_error(exc)))
            return
        self.post_message(messages.ResultsExported(str(path), len(results)))

    def on_results_exported(self, message: messages.ResultsExported) -> None:
        if message.error:
            self.notify(message.error, title="export failed", severity="error", timeout=10)
        else:
            self.notify(f"{message.count} result(s) → {message.path}", title="exported", timeout=6)

    def show_run(self, run_id: str) -> None:
        self.results_pane.show_run(run_id)
        self.action_pane("results")
