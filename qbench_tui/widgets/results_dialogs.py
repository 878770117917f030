"""The dialogs the results pane opens: a result's detail, the sort picker, the chart, the
comparison, the export of the shown rows (written by a thread worker of the pane) and of the
selected variant as a model; and the lines shown instead of or under the table (the store
unusable, the best device). Each reads what it needs
from the store (a run's results, a variant's earlier measurements, the chart's points), not from
the rows the table holds. The answers of the pane's workers (an export, MLflow's) come back here."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.worker import Worker, WorkerState

from engines.core.schema import variant_key
from qbench_tui import messages
from qbench_tui.analysis import result_key
from qbench_tui.controllers.sweep import describe_error
from qbench_tui.history import CHART_SAMPLE

if TYPE_CHECKING:
    from qbench_tui.history import ResultsView
    from qbench_tui.widgets.results_tracking import ResultsTracking


class ResultsDialogs:
    """Mixed into :class:`~qbench_tui.widgets.results.ResultsPane`, which provides the state."""

    store: Any | None
    view: ResultsView
    sort_column: str | None
    sort_reverse: bool
    tracking: ResultsTracking
    app: Any

    if TYPE_CHECKING:  # provided by the pane (declared here for the type checker only)
        def _query(self) -> Any: ...
        def set_sort(self, column: str, reverse: bool | None = None) -> None: ...
        def marked_results(self) -> list[dict[str, Any]]: ...
        def cursor_result(self) -> dict[str, Any] | None: ...
        def notify(self, message: str, **kwargs: Any) -> None: ...
        def post_message(self, message: Any) -> bool: ...
        def query_one(self, selector: str, expect_type: Any = None) -> Any: ...
        @property
        def screen(self) -> Any: ...

    def open_result(self, result: dict[str, Any]) -> None:
        """Everything about one result, with the same variant's measurements in other runs."""
        from qbench_tui.screens.result_detail import ResultDetailScreen

        recipe, runtime, device, batch = variant_key(result)
        earlier = [] if self.store is None else self.store.results(
            where="model = ? AND status = 'ok' AND COALESCE(NULLIF(recipe_id, ''), method) = ? AND runtime = ? "
                  "AND device = ? AND batch_size = ?", params=[result["model"], recipe, runtime, device, batch])
        earlier = [r for r in earlier if result_key(r) != result_key(result)]
        earlier.sort(key=lambda r: r.get("finished_at") or "", reverse=True)
        run_id = result.get("run_id") or ""
        # The runs the pane holds are brief (no request nor environment): the detail shows both.
        run = (self.store.get_run(run_id) if self.store is not None and run_id else None) or self.runs.get(run_id)
        self.app.push_screen(ResultDetailScreen(result, run, earlier))

    def choose_sort(self) -> None:
        from qbench_tui.screens.sort import SortScreen

        def chosen(column: str | None) -> None:
            if column:
                self.set_sort(column)

        self.app.push_screen(SortScreen(self.sort_column, self.sort_reverse), chosen)

    def reverse_sort(self) -> None:
        if self.sort_column:
            self.set_sort(self.sort_column, not self.sort_reverse)

    def show_chart(self) -> None:
        from qbench_tui.screens.chart import ParetoChartScreen

        cursor = self.cursor_result()  # the chart draws one model's frontier: the one under the cursor
        self.app.push_screen(ParetoChartScreen(self.chart_results(), model=cursor.get("model") if cursor else None))

    def chart_results(self) -> list[dict[str, Any]]:
        """The view's ok results to plot: the newest CHART_SAMPLE of them plus both frontiers
        (latency and size) exactly, so the starred points are right however many were stored."""
        if self.store is None:
            return [r for r in self.view.rows if r["status"] == "ok"]
        query = self._query().with_(status="ok", sort="when", reverse=True)
        sample = self.store.query_results(query, limit=CHART_SAMPLE)
        seen = {r["id"] for r in sample}
        wanted = (self.store.frontier_ids(query) | self.store.frontier_ids(query, x="size")) - seen
        if wanted:
            marks = ",".join("?" * len(wanted))
            sample += self.store.results(where=f"id IN ({marks})", params=sorted(wanted))
        return sample

    def run_results(self, run_id: str | None) -> list[dict[str, Any]]:
        return self.store.results(run_id) if self.store is not None and run_id else []

    def compare_marked(self) -> None:
        """Compare the two marked results (or the one marked and the one under the cursor)."""
        from qbench_tui.screens.compare import CompareScreen

        marked = self.marked_results()
        if len(marked) == 1:
            cursor = self.cursor_result()
            if cursor is not None and result_key(cursor) != result_key(marked[0]):
                marked.append(cursor)
        if len(marked) < 2:
            self.notify("mark two results with space (in the results table), then press x",
                        title="compare", severity="warning")
            return
        a, b = marked[:2]
        self.app.push_screen(CompareScreen(a, b, self.run_results(a.get("run_id")), self.run_results(b.get("run_id"))))

    def export_shown(self) -> None:
        """Ask where to export the shown results; a worker writes every result of the view (not
        only the pages read) there."""
        from qbench_tui.screens.export import ExportScreen, export_folder

        count, query = self.view.size, self._query()
        if not count:
            self.notify("no results to export", severity="warning")
            return
        default = export_folder() / f"qbench-results-{datetime.now():%Y%m%d-%H%M%S}.csv"

        def chosen(path: Path | None) -> None:
            if path is not None:
                self._export_worker(path, query)

        self.app.push_screen(ExportScreen(default, count), chosen)

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
        message.stop()
        if message.error:
            self.notify(message.error, title="export failed", severity="error", timeout=10)
        else:
            self.notify(f"{message.count} result(s) → {message.path}", title="exported", timeout=6)

    def export_model(self, db_path: Path | None) -> None:
        """Export the variant under the cursor as a model (ONNX, TFLite, Core ML, MLX), validated."""
        from qbench_tui.screens.export_model import ExportModelScreen

        result = self.cursor_result()
        if result is None or result.get("status") != "ok":
            self.notify("select an ok result in the results table first", title="export model", timeout=5)
            return
        self.app.push_screen(ExportModelScreen(result, db_path))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Worker.StateChanged does not bubble: an unexpected error of the pane's workers (an
        # export, MLflow's) goes on to the screen's one handler, which shows it.
        if event.state == WorkerState.ERROR:
            self.screen.post_message(event)

    def on_tracking_synced(self, message: messages.TrackingSynced) -> None:
        self.tracking.synced(message)  # not stopped: the screen's top bar shows the queue

    def on_model_registered(self, message: messages.ModelRegistered) -> None:
        message.stop()
        self.tracking.registered(message)

    def show_store_error(self, error: str | None = None) -> None:
        """The store cannot be used: say why (``error``) where the welcome would be, without the
        starter; once the history is read (without ``error``), the welcome rather than a table."""
        from textual.content import Content

        if error is None:
            self.query_one("#results-empty").display = True
            self.query_one("#results-table").display = False
            return
        self.query_one("#welcome").update(Content.from_markup(
            "[b $text-error]The result store cannot be used[/]\n$e\n\n"
            "[$text-muted]Models and methods can still be browsed; sweeps need a store. Start qbench "
            "with --db PATH to use another file.[/]", e=error))
        self.query_one("#starter-button").display = False

    def show_device_choice(self, model: str, choice: dict[str, Any] | None) -> None:
        """The best device for ``model`` and its evidence (engines.analysis.device_choice), or hide it."""
        from textual.content import Content

        line = self.query_one("#device-choice")
        line.display = choice is not None
        if choice is None:
            return
        evidence = "; ".join(
            f"{e['device']} {e['label']}·{e['runtime']} p50 {e['p50_ms']:.3f} ms" if e.get("p50_ms") is not None
            else f"{e['device']} {e['label']}·{e['runtime']}" for e in choice["evidence"])
        unmeasured = "; ".join(f"{d}: {why}" for d, why in (choice.get("unmeasured") or {}).items())
        head = (f"best device for {model} ({choice['objective']}): " if choice["device"] else
                f"no best device for {model}: ")
        line.update(Content.from_markup(
            "[b]$h[/]$r[$text-muted]$e$u[/]", h=head, r=choice["reason"],
            e=f"  ·  evidence: {evidence}" if evidence else "", u=f"  ·  not measured: {unmeasured}" if unmeasured else ""))
