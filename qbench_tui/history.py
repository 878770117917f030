"""The history as the app shows it: one filtered, sorted view of the store, read a page at a time.

SQLite filters, sorts, counts and finds the Pareto frontier (``engines.store.query``); the app
holds only the pages read so far (50 rows each), so 20,000 stored results cost what 100 do.
No Textual here: the start-up worker reads the first view, the results pane the next ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engines.store.query import ResultQuery
from qbench_tui.analysis import ResultFilter, result_key, speedups

# Rows read at a time; a 40-row terminal shows about 25. Two screens, not four: the table measures
# every cell of the rows it is given (Textual's DataTable), 1 ms a row, on each filter and sort.
PAGE_SIZE = 50
CHART_SAMPLE = 4000  # points the chart plots besides the frontier (plotext slows down beyond)
CHOICE_COLUMNS = ("model", "method", "runtime", "device", "status", "run_id", "host")


def to_query(flt: ResultFilter, sort: str | None, reverse: bool) -> ResultQuery:
    return ResultQuery(text=flt.text, model=flt.model, method=flt.method, runtime=flt.runtime, device=flt.device,
                       status=flt.status, run_id=flt.run_id, sort=sort, reverse=reverse)


@dataclass
class ResultsView:
    """What the results table shows: the rows read so far and the figures of the whole view."""

    query: ResultQuery
    rows: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # the view's results per status
    total: int = 0  # every result in the store
    frontier: set[int] = field(default_factory=set)  # row ids on the Pareto frontier (p50)
    frontier_known: bool = True  # False: the frontier is still to be read (read_frontier, in a worker)
    speedups: dict[str, float] = field(default_factory=dict)  # result_key -> p50 speed-up over fp32
    choices: dict[str, list[str]] = field(default_factory=dict)  # filter options, when read

    @property
    def size(self) -> int:
        """How many results the view holds (read or not)."""
        return sum(self.counts.values())

    @property
    def complete(self) -> bool:
        return len(self.rows) >= self.size


def read_view(store: Any, query: ResultQuery, previous: ResultsView | None = None, limit: int = PAGE_SIZE,
              choices: bool = False, frontier: bool = True) -> ResultsView:
    """The first ``limit`` rows of ``query`` and its figures. The counts and the frontier depend
    on the filter only, so a new sort keeps ``previous``'s instead of counting again.
    ``frontier=False``: the counts and the rows only (``frontier_known`` False); the frontier (two
    thirds of a typed filter's reading at 20,000 results) is read after, by :func:`read_frontier`."""
    same_filter = previous is not None and previous.query.with_(sort=None, reverse=False) == query.with_(
        sort=None, reverse=False)
    view = ResultsView(query)
    if same_filter and previous is not None:
        view.counts, view.total, view.frontier = previous.counts, previous.total, previous.frontier
        view.frontier_known = previous.frontier_known
    else:
        if not frontier:
            view.counts, view.frontier_known = store.count_results(query), False
        elif query.text:
            view.counts, view.frontier = store.counts_and_frontier(query)
        else:
            view.counts, view.frontier = store.count_results(query), store.frontier_ids(query)
        view.total = sum(store.count_results().values()) if query.where()[0] != "1" else sum(view.counts.values())
    if choices:
        view.choices = {name: store.distinct_values(name) for name in CHOICE_COLUMNS}
    elif previous is not None:
        view.choices = previous.choices
    read_more(store, view, limit)
    return view


def read_frontier(store: Any, view: ResultsView) -> set[int]:
    """The row ids of ``view``'s Pareto frontier (p50), as :func:`read_view` would have read them."""
    return store.frontier_ids(view.query)


def read_more(store: Any, view: ResultsView, limit: int = PAGE_SIZE) -> list[dict[str, Any]]:
    """Read the next page into ``view``; returns the new rows."""
    if view.complete and view.rows:
        return []
    rows = store.query_results(view.query, limit=limit, offset=len(view.rows))
    view.rows.extend(rows)
    # Speed-ups against the fp32 of the same run: the page's runs' fp32 rows, one query.
    references = store.fp32_references({r.get("run_id") for r in rows})
    new = speedups([*references, *rows])
    keys = {result_key(r) for r in rows}  # built once: in the comprehension's test it was built per item
    view.speedups.update({k: v for k, v in new.items() if k in keys})
    return rows
