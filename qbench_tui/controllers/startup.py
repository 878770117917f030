"""Start-up loading, in a thread started with the app, while Textual composes the panes: open the
store, list the models, read the history, take the meters' first reading. Each step ends as a
message; what is read by the time the panes are mounted is handled before the first frame
(:class:`StartupLoad`). The runner's import is warmed later (:func:`warm_runner`), once the panes
are painted."""

from __future__ import annotations

import threading
import time
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

            with store.reading():  # a test (or the app's exit) may close the store meanwhile
                runs = {r["id"]: r for r in store.list_runs(brief=True)}  # the detail reads its run whole
                # The first page only, in the table's first order (newest first): the rest is read
                # as it is scrolled to, so the start costs the same at 20 results or 20,000.
                view = read_view(store, to_query(ResultFilter(), "when", True), choices=True, frontier=False)
                # Read here rather than on the UI thread when the browser shows it (70 ms at 20,000).
                summary = store.model_summary(model) if model else None
        except Exception as exc:  # noqa: BLE001 - shown as the store's error
            post(messages.StoreOpened(None, f"reading the store failed: {describe_error(exc)}"))
    post(messages.HistoryLoaded(view, runs, model, summary))


class StartupLoad:
    """:func:`load_startup` and the first device sample, in a thread started at once.

    Until :meth:`take` the messages are kept; ``take`` waits a moment for the thread, returns what
    it kept (the screen handles those before its first frame) and from then on the thread posts
    what comes later. The first sample is taken once ``first_sample_at`` (monotonic) has passed:
    psutil's CPU counters were primed at the process's start, so it is a true reading over the
    start-up. The thread takes it only if ``take`` has not been called yet; ``take`` says whether
    a sample (or its failure) is still to come from it, else the screen starts sampling itself.
    """

    def __init__(self, store: Any | None, db_path: Path | None, system: SystemProbe, model: str | None,
                 first_sample_at: float):
        self._system = system
        self._args = (store, db_path, system)
        self._model = model
        self._first_sample_at = first_sample_at
        self._lock = threading.Lock()
        self._kept: list[Message] = []
        self._post: Callable[[Message], Any] | None = None
        self._sampling = False  # the thread took on the first sample (it delivers it, or its failure)
        self._done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="qbench-startup", daemon=True)
        self.thread.start()

    def _emit(self, message: Message) -> None:
        with self._lock:
            post = self._post
            if post is None:
                self._kept.append(message)
                return
        post(message)

    def _run(self) -> None:
        try:
            load_startup(*self._args, self._emit, self._model)
            with self._lock:
                self._sampling = self._post is None
            if self._sampling:
                time.sleep(max(0.0, self._first_sample_at - self._system.monotonic()))
                try:
                    sample = self._system.sample()
                except Exception as exc:  # noqa: BLE001 - the screen samples again later
                    self._emit(messages.DeviceSampled(None, describe_error(exc)))
                else:
                    self._emit(messages.DeviceSampled(sample))
        finally:
            self._done.set()

    def take(self, timeout: float, post: Callable[[Message], Any]) -> tuple[list[Message], bool]:
        """Wait up to ``timeout`` s; return the messages kept and whether the first sample is still
        to come from the thread. Later messages go to ``post``."""
        self._done.wait(timeout)
        with self._lock:
            kept, self._kept = self._kept, []
            self._post = post
            sampling = self._sampling
        got_sample = any(isinstance(m, messages.DeviceSampled) for m in kept)
        return kept, sampling and not got_sample

    @property
    def done(self) -> bool:
        return self._done.is_set()


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
