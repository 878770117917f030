"""The results' Pareto stars, read after the count and the rows are shown.

At 20,000 results the frontier is two thirds of what a typed filter reads (every kept, measured
row, sorted), so the pane shows a new view's count and first page at once and a thread reads the
frontier; its stars are added to the rows shown when it is read (a later filter drops a stale one).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from qbench_tui.analysis import result_key
from qbench_tui.history import ResultsView, read_frontier


class FrontierStars:
    """Mixed into :class:`~qbench_tui.widgets.results.ResultsPane`, which provides the state."""

    store: Any | None
    view: ResultsView
    marked: list[str]
    _frontier: set[str]
    app: Any

    def _mark(self, key: str, styles: dict[str, Any]) -> Text:
        """The first column: the row's comparison mark and its star."""
        mark = Text("", end="")
        if key in self.marked:
            mark.append(str(self.marked.index(key) + 1), styles["mark"])
        if key in self._frontier:
            mark.append("★", styles["frontier"])
        return mark

    def _read_stars_later(self) -> None:
        """Read the shown view's frontier in a thread, if it is not known yet."""
        view, store = self.view, self.store
        if view.frontier_known or store is None:
            return

        def read() -> None:
            try:
                with store.reading():  # the store may be closed meanwhile (the app's exit)
                    ids = read_frontier(store, view)
            except Exception:  # noqa: BLE001 - no stars rather than a crashed worker
                return
            try:
                self.app.call_from_thread(self._stars_read, view, ids)
            except RuntimeError:  # the app has closed meanwhile
                pass

        self.run_worker(read, thread=True, group="frontier", exclusive=True, exit_on_error=False)  # type: ignore[attr-defined]

    def _stars_read(self, view: ResultsView, ids: set[int]) -> None:
        """Star the rows of the frontier read for ``view``'s filter (if it is still the one shown)."""
        current = self.view
        if current.frontier_known or current.query.with_(sort=None, reverse=False) != view.query.with_(
                sort=None, reverse=False):
            return
        current.frontier, current.frontier_known = ids, True
        self._frontier = {result_key(r) for r in current.rows if r.get("id") in ids}
        table = self.query_one("#results-table")  # type: ignore[attr-defined]
        styles = self._styles(table)  # type: ignore[attr-defined]
        for key in self._frontier:
            if key in table.rows:
                table.update_cell(key, "mark", self._mark(key, styles))
