"""Start-up loading, run in a thread worker after the first paint: open the store, list the
models, read the history. Each step ends as a message. The runner's import is warmed later
(:func:`warm_runner`), once the panes are painted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.message import Message

from qbench_tui import messages
from qbench_tui.controllers.sweep import describe_error
from qbench_tui.system import SystemProbe


def load_startup(store: Any | None, db_path: Path | None, system: SystemProbe,
                 post: Callable[[Message], Any], model: str | None = None) -> None:
    """Post StoreOpened, ModelsListed and HistoryLoaded (with ``model``'s history), whatever
    fails on the way."""
    if store is None:
        store = _open_store(db_path, post)
    else:
        post(messages.StoreOpened(store, path=str(store.path)))
    try:
        post(messages.ModelsListed(system.list_models()))
    except Exception as exc:  # noqa: BLE001 - a broken model plugin must not stop the app
        post(messages.ModelsListed([], describe_error(exc)))
    view = None
    runs: dict[str, dict[str, Any]] = {}
    summary = None
    if store is not None:
        try:
            from qbench_tui.analysis import ResultFilter
            from qbench_tui.history import read_view, to_query

            runs = {r["id"]: r for r in store.list_runs()}
            # The first page only, in the table's first order (newest first): the rest is read
            # as it is scrolled to, so the start costs the same at 20 results or 20,000.
            view = read_view(store, to_query(ResultFilter(), "when", True), choices=True)
            # Read here rather than on the UI thread when the browser shows it (70 ms at 20,000).
            summary = store.model_summary(model) if model else None
        except Exception as exc:  # noqa: BLE001 - shown as the store's error
            post(messages.StoreOpened(None, f"reading the store failed: {describe_error(exc)}"))
    post(messages.HistoryLoaded(view, runs, model, summary))


def warm_runner() -> None:
    """Import the sweep runner (numpy among it), so the first `r` starts at once. Run in a worker
    a moment after the panes are painted: imported right after the history, it held the GIL
    while the main thread drew the first full frame (about 0.1 s later on two cores)."""
    try:
        import engines.bench.runner  # noqa: F401
    except ImportError:
        pass


def _open_store(db_path: Path | None, post: Callable[[Message], Any]) -> Any | None:
    path = db_path
    try:
        from engines.paths import default_db_path
        from engines.store import Store, StoreError

        path = db_path or default_db_path()
        try:
            store = Store(path)
        except StoreError as exc:
            post(messages.StoreOpened(None, str(exc), path=str(path)))
            return None
    except Exception as exc:  # noqa: BLE001 - any failure becomes a message
        post(messages.StoreOpened(None, describe_error(exc), path=str(path) if path else None))
        return None
    post(messages.StoreOpened(store, path=str(path)))
    return store
