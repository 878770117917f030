"""The results pane: every stored result (history and the running sweep) in one table, with
filters, sorting by any column, marks for comparison and the Pareto frontier starred."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, Vertical
from textual.content import Content
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Select, Static

from engines.core.schema import variant_key
from qbench_tui import analysis
from qbench_tui.analysis import COLUMNS, ResultFilter, result_key

FILTER_SELECTS = (("model", "model"), ("method", "method"), ("runtime", "runtime"),
                  ("device", "device"), ("status", "status"), ("run_id", "run"))


class ResultsTable(DataTable):
    """The table itself; styles for status and marks come from component classes (theme CSS)."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "results--ok", "results--failed", "results--unsupported", "results--mark", "results--frontier",
        "results--running",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_mark", "Mark", tooltip="Mark this result for comparison (two at most)"),
    ]

    @dataclass
    class MarkToggled(Message):
        key: str

    def action_toggle_mark(self) -> None:
        if self.row_count and self.cursor_row >= 0:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
            if key is not None:
                self.post_message(self.MarkToggled(key))


class ResultsPane(Vertical):
    """Holds the results in memory; the table shows the filtered, sorted view."""

    @dataclass
    class ResultOpened(Message):
        result: dict[str, Any]

    @dataclass
    class ExportChosen(Message):
        """The user chose where to export the shown results (the screen writes them in a worker)."""

        path: Path
        results: list[dict[str, Any]]

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.results: dict[str, dict[str, Any]] = {}  # result_key -> result, insertion ordered
        self.runs: dict[str, dict[str, Any]] = {}
        self.filter = ResultFilter()
        self.sort_column: str | None = "when"
        self.sort_reverse = True  # newest first
        self.marked: list[str] = []
        self.loaded = False
        self.running = False  # a sweep runs: show the (filling) table, not the welcome
        self.store_path = ""
        self._visible: list[dict[str, Any]] = []
        self._filter_choices: dict[str, list[str]] = {}
        self._frontier: set[str] = set()

    def compose(self) -> ComposeResult:
        with Container(id="filter-bar"):
            yield Input(placeholder="filter text…  (/)", id="filter-text", compact=True)
            for name, label in FILTER_SELECTS:
                yield Select([], prompt=label, id=f"filter-{name}", compact=True, tooltip=f"Show only this {label}")
        with Vertical(id="results-empty"):
            yield Static("", id="welcome")
            yield Button("Run the starter sweep  (b)", id="starter-button", variant="primary", compact=True)
        table = ResultsTable(id="results-table", cursor_type="row", zebra_stripes=True)
        table.display = False
        yield table
        yield Static("", id="results-status")

    def on_mount(self) -> None:
        self.query_one("#results-empty").display = False
        self._render_status()

    # --- data in -----------------------------------------------------------------------------

    def set_history(self, results: list[dict[str, Any]], runs: dict[str, dict[str, Any]]) -> None:
        self.results = {result_key(r): r for r in results}
        self.runs = dict(runs)
        self.loaded = True
        self.refresh_view(rebuild_filters=True)

    def set_running(self, running: bool) -> None:
        if running != self.running:
            self.running = running
            self.refresh_view()

    def add_run(self, run: dict[str, Any]) -> None:
        if run.get("id"):
            self.runs[run["id"]] = run

    def add_result(self, result: dict[str, Any]) -> None:
        new_values = [f for f, _ in FILTER_SELECTS if result.get(f) not in self._filter_values(f)]
        self.results[result_key(result)] = result
        if new_values:
            self._rebuild_filter_options(new_values)
        self.refresh_view()

    def _filter_values(self, name: str) -> set[Any]:
        return {r.get(name) for r in self.results.values()}

    # --- view --------------------------------------------------------------------------------

    @property
    def visible(self) -> list[dict[str, Any]]:
        """The results as shown: filtered and sorted."""
        return list(self._visible)

    def context(self) -> dict[str, Any]:
        return {"runs": self.runs, "speedups": analysis.speedups(self.results.values())}

    def set_filter(self, flt: ResultFilter) -> None:
        self.filter = flt
        self.refresh_view()

    def set_sort(self, column: str, reverse: bool | None = None) -> None:
        if reverse is None:
            reverse = (not self.sort_reverse) if column == self.sort_column else False
        self.sort_column, self.sort_reverse = column, reverse
        self.refresh_view()

    def refresh_view(self, rebuild_filters: bool = False) -> None:
        if rebuild_filters:
            self._rebuild_filter_options()
        ctx = self.context()
        shown = analysis.filter_results(self.results.values(), self.filter)
        self._visible = analysis.sort_results(shown, self.sort_column, self.sort_reverse, ctx)
        _, frontier = analysis.frontier_results(self._visible)
        self._frontier = {result_key(r) for r in frontier}
        self.marked = [k for k in self.marked if k in self.results]
        empty = self.loaded and not self.results and not self.running
        self.query_one("#results-empty").display = empty
        table = self.query_one(ResultsTable)
        table.display = not empty
        self._fill_table(table, ctx)
        self._render_status()

    def _fill_table(self, table: ResultsTable, ctx: dict[str, Any]) -> None:
        cursor_key = None
        if table.row_count and table.cursor_row >= 0:
            cursor_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        scroll_x = table.scroll_x
        table.clear(columns=True)
        table.add_column(" ", key="mark", width=2)
        for col in COLUMNS:
            arrow = ""
            if col.key == self.sort_column:
                arrow = " ▼" if self.sort_reverse else " ▲"
            label = Text(col.label + arrow, justify="right" if col.numeric else "left")
            table.add_column(label, key=col.key, width=col.width)
        styles = {s: table.get_component_rich_style(f"results--{s}", partial=True)
                  for s in ("ok", "failed", "unsupported", "mark", "frontier")}
        for r in self._visible:
            key = result_key(r)
            mark = Text("", end="")
            if key in self.marked:
                mark.append(str(self.marked.index(key) + 1), styles["mark"])
            if key in self._frontier:
                mark.append("★", styles["frontier"])
            cells: list[Any] = [mark]
            for col in COLUMNS:
                text = col.text(r, ctx)
                style = ""
                if col.key == "status" or (col.key == "note" and r["status"] != "ok"):
                    style = styles.get(r["status"], "")
                cells.append(Text(text, style=style, justify="right" if col.numeric else "left", end=""))
            table.add_row(*cells, key=key)
        if cursor_key is not None and cursor_key in table.rows:  # still shown: keep the cursor on it
            table.move_cursor(row=table.get_row_index(cursor_key), animate=False)
        table.scroll_x = scroll_x

    def _rebuild_filter_options(self, names: list[str] | None = None) -> None:
        for name, label in FILTER_SELECTS:
            if names is not None and name not in names:
                continue
            select = self.query_one(f"#filter-{name}", Select)
            values = analysis.distinct(self.results.values(), name)
            if name == "run_id":
                values.sort(reverse=True)
            current = getattr(self.filter, name)
            self._filter_choices[name] = values
            with self.prevent(Select.Changed):
                select.set_options([(v, v) for v in values])
                if current in values:
                    select.value = current

    def _render_status(self) -> None:
        status = self.query_one("#results-status", Static)
        if not self.loaded:
            status.update(Content.from_markup("[$text-muted]loading results…[/]"))
            return
        total, shown = len(self.results), len(self._visible)
        counts = {s: sum(1 for r in self._visible if r["status"] == s) for s in ("ok", "failed", "unsupported")}
        parts = [f"{shown} of {total} results" if self.filter.active else f"{total} results"]
        parts.append(f"{counts['ok']} ok · {counts['failed']} failed · {counts['unsupported']} unsupported")
        if self.sort_column:
            parts.append(f"sorted by {analysis.COLUMN_BY_KEY[self.sort_column].label}"
                         f" {'▼' if self.sort_reverse else '▲'}")
        if self.marked:
            parts.append(f"{len(self.marked)} marked" + (" · x compares" if len(self.marked) == 2 else ""))
        parts.append("★ Pareto (acc vs p50)")
        status.update(Content.from_markup("[$text-muted]$t[/]", t="  ·  ".join(parts)))

    def set_welcome(self, store_path: str) -> None:
        self.store_path = store_path
        self.query_one("#welcome", Static).update(Content.from_markup(
            "[b $text-primary]Welcome to qbench[/] [$text-muted]· no results in $path yet[/]\n"
            "Press [b $text-accent]b[/] for a starter sweep: the built-in [b]digits-mlp[/], float32 against "
            "dynamic int8 on ONNX Runtime, CPU (about half a minute, every phase shown live). "
            "Or choose a model and methods, then press [b $text-accent]r[/].\n"
            "[$text-muted]? lists every key · ctrl+p opens the command palette[/]",
            path=store_path))

    # --- marks and opening -------------------------------------------------------------------

    def toggle_mark(self, key: str) -> None:
        if key in self.marked:
            self.marked.remove(key)
        else:
            self.marked.append(key)
            self.marked = self.marked[-2:]  # comparing takes two: the oldest mark gives way
        self.refresh_view()

    def marked_results(self) -> list[dict[str, Any]]:
        return [self.results[k] for k in self.marked if k in self.results]

    def cursor_result(self) -> dict[str, Any] | None:
        table = self.query_one(ResultsTable)
        if not table.row_count or table.cursor_row < 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.results.get(key) if key else None

    def on_results_table_mark_toggled(self, event: ResultsTable.MarkToggled) -> None:
        event.stop()
        self.toggle_mark(event.key)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        result = self.results.get(event.row_key.value) if event.row_key.value else None
        if result is not None:
            self.post_message(self.ResultOpened(result))

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        if event.column_key.value in analysis.COLUMN_BY_KEY:
            self.set_sort(event.column_key.value)

    # --- filters -----------------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter-text":
            event.stop()
            self.set_filter(self.filter.with_(text=event.value.strip()))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter-text":
            event.stop()
            self.query_one(ResultsTable).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        name = (event.select.id or "").removeprefix("filter-")
        if name not in dict(FILTER_SELECTS):
            return
        event.stop()
        value = None if event.value is Select.NULL else event.value
        self.set_filter(self.filter.with_(**{name: value}))

    def clear_filters(self) -> None:
        with self.prevent(Input.Changed, Select.Changed):
            self.query_one("#filter-text", Input).value = ""
            for name, _ in FILTER_SELECTS:
                self.query_one(f"#filter-{name}", Select).clear()
        self.set_filter(ResultFilter())

    def show_run(self, run_id: str) -> None:
        """Filter to one run (used when opening a run from the palette)."""
        select = self.query_one("#filter-run_id", Select)
        with self.prevent(Select.Changed):
            if run_id in self._filter_choices.get("run_id", ()):
                select.value = run_id
        self.set_filter(self.filter.with_(run_id=run_id))

    # --- dialogs over the results -------------------------------------------------------------

    def open_result(self, result: dict[str, Any]) -> None:
        """Everything about one result, with the same variant's measurements in other runs."""
        from qbench_tui.screens.result_detail import ResultDetailScreen

        key = variant_key(result)
        earlier = [r for r in self.results.values()
                   if r is not result and r["status"] == "ok" and r["model"] == result["model"]
                   and variant_key(r) == key]
        earlier.sort(key=lambda r: r.get("finished_at") or "", reverse=True)
        self.app.push_screen(ResultDetailScreen(result, self.runs.get(result.get("run_id") or ""), earlier))

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

        self.app.push_screen(ParetoChartScreen(self.visible))

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
        everything = self.results.values()
        self.app.push_screen(CompareScreen(a, b, [r for r in everything if r.get("run_id") == a.get("run_id")],
                                           [r for r in everything if r.get("run_id") == b.get("run_id")]))

    def export_shown(self) -> None:
        """Ask where to export the shown results; the answer is posted as :class:`ExportChosen`."""
        from qbench_tui.screens.export import ExportScreen, export_folder

        shown = self.visible
        if not shown:
            self.notify("no results to export", severity="warning")
            return
        default = export_folder() / f"qbench-results-{datetime.now():%Y%m%d-%H%M%S}.csv"

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.post_message(self.ExportChosen(path, shown))

        self.app.push_screen(ExportScreen(default, len(shown)), chosen)
