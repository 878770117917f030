"""The results pane: every stored result (history and the running sweep) in one table, with
filters, sorting by any column, marks for comparison and the Pareto frontier starred.

The store filters, sorts and counts (``qbench_tui.history``); the table holds the pages read so
far and reads the next one when the cursor or the scroll comes near its end."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, Vertical
from textual.content import Content
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Button, DataTable, Input, Select, Static

from qbench_tui import analysis
from qbench_tui.analysis import COLUMNS, ResultFilter, result_key
from qbench_tui.fit import clip, fit_table
from qbench_tui.history import PAGE_SIZE, ResultsView, read_more, read_view, to_query
from qbench_tui.widgets.readout import set_text
from qbench_tui.widgets.results_dialogs import ResultsDialogs
from qbench_tui.widgets.results_feed import ResultsFeed
from qbench_tui.widgets.results_frontier import FrontierStars
from qbench_tui.widgets.results_tracking import ResultsTracking

if TYPE_CHECKING:
    from qbench_tui.controllers.tracking import TrackingController

LOAD_AHEAD = 20  # rows before the end of those read at which the next page is read
# A typed filter is applied this long after the last key: keys read in one burst make one filter.
TYPING_PAUSE_S = 0.03

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

    class NearEnd(Message):
        """The view came within LOAD_AHEAD rows of the last row read: time for the next page."""

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value + self.size.height >= self.row_count - LOAD_AHEAD:
            self.post_message(self.NearEnd())

    def action_toggle_mark(self) -> None:
        if self.row_count and self.cursor_row >= 0:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
            if key is not None:
                self.post_message(self.MarkToggled(key))


class ResultsPane(FrontierStars, ResultsDialogs, Vertical):
    """Shows one view of the store (filtered, sorted) a page at a time; holds only those pages.
    Owns the running sweep's results as they come (``feed``; ``on_shown`` follows each batch
    shown) and MLflow's queue (``tracking``, sent through the ``tracking`` controller)."""

    def __init__(self, tracking: TrackingController | None = None, on_shown: Callable[[bool], None] | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.feed = ResultsFeed(self, on_shown)
        self.tracking = ResultsTracking(self, tracking)
        self.store: Any | None = None
        self.runs: dict[str, dict[str, Any]] = {}
        self.filter = ResultFilter()
        self.sort_column: str | None = "when"
        self.sort_reverse = True  # newest first
        self.marked: list[str] = []
        self._marked_results: dict[str, dict[str, Any]] = {}  # kept: a marked row may leave the view
        self.loaded = False
        self.running = False  # a sweep runs: show the (filling) table, not the welcome
        self.store_path = ""
        self.view = ResultsView(to_query(self.filter, self.sort_column, self.sort_reverse))
        self._by_key: dict[str, dict[str, Any]] = {}
        self._filter_choices: dict[str, list[str]] = {}
        self._selects_coming = False  # the filter selects are to be mounted (_mount_filter_selects)
        self._frontier: set[str] = set()
        self._typed: str | None = None
        self._typing_timer: Timer | None = None
        self._shown: list[tuple[Any, int | None]] = [(c, None) for c in COLUMNS]  # as fitted (_fit)

    def compose(self) -> ComposeResult:
        with Container(id="filter-bar"):
            yield Input(placeholder="filter text…  (/)", id="filter-text", compact=True)
        with Vertical(id="results-empty"):
            yield Static("", id="welcome")
            yield Button("Run the starter sweep  (b)", id="starter-button", variant="primary", compact=True)
        table = ResultsTable(id="results-table", cursor_type="row", zebra_stripes=True)
        table.display = False
        yield table
        yield Static("", id="results-status")
        choice = Static("", id="device-choice")
        choice.display = False
        yield choice

    def on_mount(self) -> None:
        self.query_one("#results-empty").display = False
        self._render_status()

    # --- data in -----------------------------------------------------------------------------

    @property
    def total(self) -> int:
        """Every result in the store."""
        return self.view.total

    def set_history(self, store: Any | None, view: ResultsView | None, runs: dict[str, dict[str, Any]]) -> None:
        """The store and its first view (read by the start-up worker)."""
        self.store = store
        self.runs = dict(runs)
        self.loaded = True
        if view is not None and view.query == self._query():
            self._show(view, rebuild_filters=True)
        else:
            self.reload(rebuild_filters=True)

    def set_running(self, running: bool) -> None:
        if running != self.running:
            self.running = running
            self.refresh_view()

    def add_run(self, run: dict[str, Any]) -> None:
        if run.get("id"):
            self.runs[run["id"]] = run

    def add_results(self, results: list[dict[str, Any]]) -> None:
        """Results the running sweep stored: read the view again, once (the store has them already)."""
        new_values = any(r.get(f) is not None and str(r.get(f)) not in self._filter_choices.get(f, ())
                         for r in results for f, _ in FILTER_SELECTS)
        self.reload(rebuild_filters=new_values)

    # --- view --------------------------------------------------------------------------------

    @property
    def visible(self) -> list[dict[str, Any]]:
        """The rows read so far of the view, in order (the whole view once it is read to its end)."""
        return list(self.view.rows)

    def context(self) -> dict[str, Any]:
        return {"runs": self.runs, "speedups": self.view.speedups}

    def _query(self) -> Any:
        return to_query(self.filter, self.sort_column, self.sort_reverse)

    def set_filter(self, flt: ResultFilter) -> None:
        self.filter = flt
        self.reload()

    def set_sort(self, column: str, reverse: bool | None = None) -> None:
        if reverse is None:
            reverse = (not self.sort_reverse) if column == self.sort_column else False
        self.sort_column, self.sort_reverse = column, reverse
        self.reload()

    def reload(self, rebuild_filters: bool = False) -> None:
        """Read the first page of the view again (filter, sort or the store changed)."""
        if self.store is None:
            self._show(ResultsView(self._query()), rebuild_filters)
            return
        # A new result changes the counts and maybe the frontier: only a sort change keeps them.
        previous = self.view if not rebuild_filters and self.view.total == self._store_total() else None
        # The same view read again (a sweep stored a result) keeps as many rows as were read, so
        # a table scrolled far down does not shrink under the cursor.
        limit = max(PAGE_SIZE, len(self.view.rows)) if self.view.query == self._query() else PAGE_SIZE
        view = read_view(self.store, self._query(), previous, limit=limit, choices=rebuild_filters, frontier=False)
        self._show(view, rebuild_filters)

    def _store_total(self) -> int:
        return sum(self.store.count_results().values()) if self.store is not None else 0

    def _show(self, view: ResultsView, rebuild_filters: bool = False) -> None:
        self.view = view
        self._by_key = {result_key(r): r for r in view.rows}
        self._frontier = {result_key(r) for r in view.rows if r.get("id") in view.frontier}
        if rebuild_filters:
            self._rebuild_filter_options()
        self.refresh_view()
        # After the frame with the new count and rows: the thread's Python half (sorting the kept
        # rows, the Pareto walk) would otherwise take the GIL while that frame is drawn.
        self.call_after_refresh(self._read_stars_later)

    def read_next_page(self) -> None:
        """Append the view's next page to the table (the cursor or the scroll neared the end)."""
        if self.store is None or self.view.complete:
            return
        rows = read_more(self.store, self.view)
        if not rows:
            return
        table = self.query_one(ResultsTable)
        styles = self._styles(table)
        ctx = self.context()
        for r in rows:
            key = result_key(r)
            self._by_key[key] = r
            if r.get("id") in self.view.frontier:
                self._frontier.add(key)
            table.add_row(*self._cells(r, ctx, styles), key=key)
        self._render_status()

    def refresh_view(self, rebuild_filters: bool = False) -> None:
        """Redraw the table from the rows read (marks, theme, running state changed)."""
        if rebuild_filters:
            self._rebuild_filter_options()
        ctx = self.context()
        empty = self.loaded and not self.view.total and not self.running
        self.query_one("#results-empty").display = empty
        table = self.query_one(ResultsTable)
        table.display = not empty
        self._fill_table(table, ctx)
        self._render_status()

    def _columns(self) -> tuple[Any, ...]:
        """Every column the table could show: a host column after the device once the store holds
        results of more than one machine (a fleet's sweep)."""
        if len(self.view.choices.get("host") or ()) < 2:
            return COLUMNS
        at = next(i for i, c in enumerate(COLUMNS) if c.key == "device") + 1
        return (*COLUMNS[:at], analysis.HOST_COLUMN, *COLUMNS[at:])

    def _fit(self, ctx: dict[str, Any]) -> list[tuple[Any, int | None]]:
        """The columns that fit the table's width, by priority; the detail shows what is left out."""
        width = self.query_one(ResultsTable).size.width or self.size.width
        # Less the mark column (2 + padding) and the vertical scrollbar.
        return fit_table(self._columns(), self.view.rows[:PAGE_SIZE], ctx, width - 6 if width else 0,
                         self.sort_column)

    def on_resize(self) -> None:
        if self.loaded and [c.key for c, _ in self._fit(self.context())] != [c.key for c, _ in self._shown]:
            self.refresh_view()

    def _fill_table(self, table: ResultsTable, ctx: dict[str, Any]) -> None:
        cursor_key = None
        if table.row_count and table.cursor_row >= 0:
            cursor_key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        scroll_x = table.scroll_x
        table.clear(columns=True)
        table.add_column(" ", key="mark", width=2)
        self._shown = self._fit(ctx)
        for col, cut in self._shown:
            arrow = ""
            if col.key == self.sort_column:
                arrow = " ▼" if self.sort_reverse else " ▲"
            label = Text(col.label + arrow, justify="right" if col.numeric else "left")
            table.add_column(label, key=col.key, width=cut or col.width)
        styles = self._styles(table)
        for r in self.view.rows:
            table.add_row(*self._cells(r, ctx, styles), key=result_key(r))
        if cursor_key is not None and cursor_key in table.rows:  # still shown: keep the cursor on it
            table.move_cursor(row=table.get_row_index(cursor_key), animate=False)
        table.scroll_x = scroll_x

    @staticmethod
    def _styles(table: ResultsTable) -> dict[str, Any]:
        return {s: table.get_component_rich_style(f"results--{s}", partial=True)
                for s in ("ok", "failed", "unsupported", "mark", "frontier")}

    def _cells(self, r: dict[str, Any], ctx: dict[str, Any], styles: dict[str, Any]) -> list[Any]:
        cells: list[Any] = [self._mark(result_key(r), styles)]
        for col, cut in self._shown:
            text = col.text(r, ctx) if cut is None else clip(col.text(r, ctx), cut)
            style = ""
            if col.key == "status" or (col.key == "note" and r["status"] != "ok"):
                style = styles.get(r["status"], "")
            cells.append(Text(text, style=style, justify="right" if col.numeric else "left", end=""))
        return cells

    def _rebuild_filter_options(self) -> None:
        mounted = bool(self.query(f"#filter-{FILTER_SELECTS[0][0]}"))
        changed = []
        for name, _ in FILTER_SELECTS:
            values = sorted(self.view.choices.get(name, []), reverse=True) if name == "run_id" else list(
                self.view.choices.get(name, []))
            if self._filter_choices.get(name) != values:
                changed.append(name)
            self._filter_choices[name] = values
        if not mounted:  # the six selects (18 widgets) come after the frame with the history: not to delay it
            if not self._selects_coming:
                self._selects_coming = True
                self.call_after_refresh(self._mount_filter_selects)
            return
        for name in changed:  # set_options re-lays out the screen: not for each result of a sweep
            values, current = self._filter_choices[name], getattr(self.filter, name)
            select = self.query_one(f"#filter-{name}", Select)
            with self.prevent(Select.Changed):
                select.set_options([(v, v) for v in values])
                if current in values:
                    select.value = current

    def _mount_filter_selects(self) -> None:
        choices = [(name, label, self._filter_choices.get(name, []), getattr(self.filter, name))
                   for name, label in FILTER_SELECTS]
        self.query_one("#filter-bar").mount_all([Select(
            [(v, v) for v in values], prompt=label, id=f"filter-{name}", compact=True, tooltip=f"Show only this {label}",
            value=current if current in values else Select.NULL) for name, label, values, current in choices])

    def _render_status(self) -> None:
        status = self.query_one("#results-status", Static)
        if not self.loaded:
            set_text(status, Content.from_markup("[$text-muted]loading results…[/]"))
            return
        total, shown = self.view.total, self.view.size
        counts = {s: self.view.counts.get(s, 0) for s in ("ok", "failed", "unsupported")}
        parts = [f"{shown} of {total} results" if self.filter.active else f"{total} results"]
        parts.append(f"{counts['ok']} ok · {counts['failed']} failed · {counts['unsupported']} unsupported")
        if self.sort_column:  # before the hint below: a line cut at the terminal's edge keeps it
            parts.append(f"sorted by {analysis.COLUMN_BY_KEY[self.sort_column].label}"
                         f" {'▼' if self.sort_reverse else '▲'}")
        if total and (hidden := len(self._columns()) - len(self._shown)):
            parts.append(f"{hidden} columns left out at this width (enter: all of a result)")
        if not self.view.complete:
            parts.append(f"{len(self.view.rows)} read")
        if self.marked:
            parts.append(f"{len(self.marked)} marked" + (" · x compares" if len(self.marked) == 2 else ""))
        parts.append("★ Pareto (acc vs p50)")
        set_text(status, Content.from_markup("[$text-muted]$t[/]", t="  ·  ".join(parts)))  # one line (CSS)

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
            result = self._by_key.get(key)
            if result is None:
                return
            self.marked.append(key)
            self._marked_results[key] = result
            self.marked = self.marked[-2:]  # comparing takes two: the oldest mark gives way
        self._marked_results = {k: self._marked_results[k] for k in self.marked}
        self.refresh_view()

    def marked_results(self) -> list[dict[str, Any]]:
        return [self._marked_results[k] for k in self.marked]

    def cursor_result(self) -> dict[str, Any] | None:
        table = self.query_one(ResultsTable)
        if not table.row_count or table.cursor_row < 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self._by_key.get(key) if key else None

    def on_results_table_near_end(self, event: ResultsTable.NearEnd) -> None:
        event.stop()
        table = self.query_one(ResultsTable)
        if table.scroll_y + table.size.height >= table.row_count - LOAD_AHEAD:  # still near (not read since)
            self.read_next_page()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        if event.cursor_row >= event.data_table.row_count - LOAD_AHEAD:
            self.read_next_page()

    def on_results_table_mark_toggled(self, event: ResultsTable.MarkToggled) -> None:
        event.stop()
        self.toggle_mark(event.key)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        result = self._by_key.get(event.row_key.value) if event.row_key.value else None
        if result is not None:
            self.open_result(result)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        if event.column_key.value in analysis.COLUMN_BY_KEY:
            self.set_sort(event.column_key.value)

    # --- filters -----------------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter-text":
            event.stop()
            # Applied once typing pauses: each keystroke of a fast burst would read the store again.
            self._typed = event.value.strip()
            if self._typing_timer is not None:
                self._typing_timer.stop()
            self._typing_timer = self.set_timer(TYPING_PAUSE_S, self._apply_typed, name="filter-typing")

    def _apply_typed(self) -> None:
        self._typing_timer = None
        if self._typed is not None and self._typed != self.filter.text:
            self.set_filter(self.filter.with_(text=self._typed))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter-text":
            event.stop()
            if self._typing_timer is not None:  # enter applies what was typed at once
                self._typing_timer.stop()
                self._apply_typed()
            self.query_one(ResultsTable).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        name = (event.select.id or "").removeprefix("filter-")
        if name not in dict(FILTER_SELECTS):
            return
        event.stop()
        value = None if event.value is Select.NULL else event.value
        self.set_filter(self.filter.with_(**{name: value}))

    def clear_filters(self) -> None:
        if self._typing_timer is not None:
            self._typing_timer.stop()
            self._typing_timer = None
        with self.prevent(Input.Changed, Select.Changed):
            self.query_one("#filter-text", Input).value = ""
            for select in self.query("#filter-bar Select").results(Select):
                select.clear()
        self.set_filter(ResultFilter())

    def show_run(self, run_id: str) -> None:
        """Filter to one run (used when opening a run from the palette)."""
        with self.prevent(Select.Changed):
            for select in self.query("#filter-run_id").results(Select):
                if run_id in self._filter_choices.get("run_id", ()):
                    select.value = run_id
        self.set_filter(self.filter.with_(run_id=run_id))
