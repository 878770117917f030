"""The dialogs the results pane opens: a result's detail, the sort picker, the chart, the
comparison and the export; and the best-device line under the table. Each reads what it needs from the store (a run's results, a
variant's earlier measurements, the chart's points), not from the rows the table holds."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.core.schema import variant_key
from qbench_tui.analysis import result_key
from qbench_tui.history import CHART_SAMPLE

if TYPE_CHECKING:
    from qbench_tui.history import ResultsView


class ResultsDialogs:
    """Mixed into :class:`~qbench_tui.widgets.results.ResultsPane`, which provides the state."""

    store: Any | None
    view: ResultsView
    sort_column: str | None
    sort_reverse: bool
    app: Any

    if TYPE_CHECKING:  # provided by the pane (declared here for the type checker only)
        ExportChosen: Any

        def _query(self) -> Any: ...
        def set_sort(self, column: str, reverse: bool | None = None) -> None: ...
        def marked_results(self) -> list[dict[str, Any]]: ...
        def cursor_result(self) -> dict[str, Any] | None: ...
        def notify(self, message: str, **kwargs: Any) -> None: ...
        def post_message(self, message: Any) -> bool: ...
        def query_one(self, selector: str, expect_type: Any = None) -> Any: ...

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
        """Ask where to export the shown results; the answer is posted as :class:`ExportChosen`."""
        from qbench_tui.screens.export import ExportScreen, export_folder

        count, query = self.view.size, self._query()
        if not count:
            self.notify("no results to export", severity="warning")
            return
        default = export_folder() / f"qbench-results-{datetime.now():%Y%m%d-%H%M%S}.csv"

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.post_message(self.ExportChosen(path, query))

        self.app.push_screen(ExportScreen(default, count), chosen)

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
