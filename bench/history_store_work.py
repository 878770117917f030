"""The store's part of the app's history views, in-process: what the start-up thread reads, a typed
filter's view, a sort, the Pareto frontier (a worker's). Best of five calls each, in ms.

Run:  uv run python bench/history_store_work.py DB
      PYTHONPATH=/tmp/before uv run python bench/history_store_work.py DB_COPY   (another tree)

DB is a store such as ``bench/history_scale.py --fill-only DB`` makes (20,000 results); give each
tree its own copy (a newer tree migrates the file, which an older one then refuses). The method
registry and psutil are imported first: the app has both before it reads the history. Wall-clock
figures on a shared machine: print ``uptime`` beside them and compare trees at the same load.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import psutil  # noqa: F401 - the app imports it before the store is opened

from engines.methods import registry
from engines.store import Store
from qbench_tui.analysis import ResultFilter
from qbench_tui.history import read_view, to_query


def best(call: Callable[[], object], n: int = 5) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return min(times) * 1000


def main(db: str) -> int:
    registry.all_methods()
    store = Store(db)  # migrates an older file once (not timed)
    brief = "brief" in Store.list_runs.__code__.co_varnames  # an older tree reads every run whole
    newest = to_query(ResultFilter(), "when", True)
    out = {
        "open (quick_check, stats, reap)": best(lambda: Store(db).close()),
        "runs for the table": best(lambda: store.list_runs(brief=True) if brief else store.list_runs()),
        "first view (count, choices, page)": best(lambda: read_view(store, newest, choices=True, frontier=False)),
        "model summary (digits-mlp)": best(lambda: store.model_summary("digits-mlp")),
    }
    out["start-up store work, total"] = sum(out.values())
    for text in ("mini", "m", "zzz"):
        query = to_query(ResultFilter(text=text), "when", True)
        out[f"typed filter '{text}' view"] = best(lambda q=query: read_view(store, q, frontier=False))
    view = read_view(store, newest, frontier=False)
    out["sort reversed (when ▲)"] = best(lambda: read_view(store, newest.with_(reverse=False), view, frontier=False))
    out["frontier, all (worker)"] = best(lambda: store.frontier_ids(to_query(ResultFilter(), None, False)))
    for name, ms in out.items():
        print(f"  {name:<36}{ms:8.1f} ms")
    store.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    raise SystemExit(main(sys.argv[1]))
