"""One variant's child process: start it, talk to it, watch it, end it.

A child lives for the whole sweep where memory allows: it loads its variant once, says
``ready``, then answers ``measure`` commands (one short timing round each) until told to exit,
so the runner can interleave rounds across variants without paying the load again.

How it starts (:func:`launcher`):
- **fork server** (Linux): a server process imports numpy, torch, ONNX Runtime and the engine
  once (:mod:`engines.bench.preload`); each child is a fork of it, ready in tens of
  milliseconds instead of seconds. Each child is still its own process: a crash, a hang or an
  out-of-memory kill ends that child only.
- **spawn** (macOS, where forking a process that loaded Apple's frameworks is unsafe, or with
  ``QBENCH_LAUNCHER=spawn``): ``python -m engines.bench.worker FD``.

The parent waits on the child's socket with ``selectors`` (no busy loop), enforces a deadline
and a memory limit, and reports how the child ended so the runner can record it.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Cancelled(Exception):
    """The sweep's cancel flag was set while the child ran (the child has been killed)."""


def default_memory_limit_mb() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**20 * 0.8


def child_environment(threads: int) -> dict[str, str]:
    """The environment every child measures under (the fork server is started with it).

    ``OMP_WAIT_POLICY=PASSIVE``: torch's OpenMP threads sleep at the end of a parallel region
    instead of spinning for ~200 ms; on a machine where another process holds a core, a
    spinning pool waits for its slowest thread at every barrier (bench/thread_pools.py)."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE",
            "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1"}


def launcher() -> str:
    """``fork`` where the OS allows it (Linux), ``spawn`` elsewhere or when asked."""
    chosen = os.environ.get("QBENCH_LAUNCHER", "")
    if chosen in ("fork", "spawn"):
        return chosen
    return "fork" if sys.platform.startswith("linux") else "spawn"


# --- the fork server -----------------------------------------------------------------------

_server_lock = threading.Lock()
_server_ctx: Any = None


def _fork_context(threads: int):
    """multiprocessing's fork server, preloaded; started once per parent process."""
    global _server_ctx
    with _server_lock:
        if _server_ctx is None:
            import multiprocessing

            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(["engines.bench.preload"])
            # The server inherits the parent's environment when it starts: set what children
            # must see before any library reads it (libgomp reads OMP_* once, at load).
            for key, value in child_environment(threads).items():
                os.environ.setdefault(key, value)
            os.environ["QBENCH_LAUNCHER"] = "fork"
            _server_ctx = ctx
        return _server_ctx


def stop_fork_server(timeout_s: float = 10.0) -> None:
    """End the fork server (and multiprocessing's resource tracker) once a sweep is over: idle, it
    would hold torch's hundreds of MB beside the app. The next sweep starts a fresh one.

    Bounded: multiprocessing's own ``_stop`` waits for each helper forever (and the resource tracker
    leaves only once every process holding its pipe has), so each stop runs in a daemon thread given
    ``timeout_s``; a helper still there then is killed, and an interrupted CLI can always leave."""
    with _server_lock:
        if _server_ctx is None:
            return
        from multiprocessing import forkserver, resource_tracker

        _bounded_stop(forkserver._forkserver, "_forkserver_pid", timeout_s)
        _bounded_stop(resource_tracker._resource_tracker, "_pid", timeout_s)


@contextlib.contextmanager
def held_interrupts():
    """Ctrl-C is ignored while a sweep records its end and stops its helpers (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _bounded_stop(server: Any, pid_attr: str, timeout_s: float) -> None:
    pid = getattr(server, pid_attr, None)

    def stop() -> None:
        with contextlib.suppress(AttributeError, OSError, ChildProcessError):
            server._stop()  # private, present since Python 3.8; joins the process

    stopper = threading.Thread(target=stop, name="stop-fork-server", daemon=True)
    stopper.start()
    stopper.join(timeout_s)
    if stopper.is_alive() and pid is not None:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)  # the stopper's waitpid then returns and it ends
        stopper.join(2.0)


def _forked_child(sock: socket.socket, log_path: str) -> None:
    """The forked child's entry: its own session (the terminal's Ctrl-C goes to the parent, which
    ends the child itself), its output to the log, then the worker's life."""
    os.setsid()
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    from engines.bench import worker

    # SystemExit lets multiprocessing run its exit handlers (os._exit would leave the resource
    # tracker complaining about objects the libraries registered).
    sys.exit(worker.serve(worker.Channel(sock)))


class _Handle:
    """What the parent holds of a running child, whichever way it started."""

    def __init__(self, pid: int, poll: Callable[[], int | None], wait: Callable[[float | None], int | None]):
        self.pid = pid
        self.poll = poll
        self.wait = wait


def _has_fd(stream: Any) -> bool:
    try:
        return stream is not None and stream.fileno() >= 0
    except (AttributeError, OSError, ValueError):
        return False


def _start_fork(job_threads: int, sock: socket.socket, log_path: Path) -> _Handle:
    import types

    ctx = _fork_context(job_threads)
    proc = ctx.Process(target=_forked_child, args=(sock, str(log_path)), daemon=False)
    # multiprocessing re-imports the parent's __main__ in each child (the CLI, pytest, a script):
    # a bare stand-in while the child's start data is written keeps the child to the worker.
    # And its resource tracker passes sys.stderr's descriptor on: an app that captures stderr
    # (Textual) has none, which fails the start ("bad value(s) in fds_to_keep").
    with _server_lock:
        main, stderr = sys.modules["__main__"], sys.stderr
        sys.modules["__main__"] = types.ModuleType("__main__")
        if not _has_fd(stderr):
            sys.stderr = sys.__stderr__ if _has_fd(sys.__stderr__) else open(os.devnull, "w")  # noqa: SIM115
        try:
            proc.start()
        finally:
            sys.modules["__main__"], sys.stderr = main, stderr

    def wait(timeout: float | None) -> int | None:
        proc.join(timeout)
        return proc.exitcode

    return _Handle(proc.pid, lambda: proc.exitcode, wait)


def _start_spawn(threads: int, sock: socket.socket, log_path: Path) -> _Handle:
    env = {**os.environ, **child_environment(threads), "QBENCH_LAUNCHER": "spawn"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engines.bench.worker", str(sock.fileno())],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(sock.fileno(),), env=env,
            # Own process group: the terminal's Ctrl-C reaches the parent, which then ends
            # the child itself and records the run as interrupted.
            start_new_session=True,
        )

    def wait(timeout: float | None) -> int | None:
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    return _Handle(proc.pid, proc.poll, wait)


# --- one child -------------------------------------------------------------------------------


class ChildEnded(Exception):
    """The child ended (or was ended) before the awaited event; ``reason`` is None when it exited
    on its own (then :attr:`WorkerProcess.returncode` and its log say why)."""

    def __init__(self, reason: str | None):
        super().__init__(reason or "the worker exited")
        self.reason = reason


class WorkerProcess:
    """One variant's child. :meth:`kill` may be called from any thread."""

    def __init__(self, cancel: threading.Event, memory_limit_mb: float | None = None):
        self.cancel = cancel
        self.limit_mb = memory_limit_mb or default_memory_limit_mb()
        self._handle: _Handle | None = None
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._pending: list[dict[str, Any]] = []
        self.returncode: int | None = None
        self.log_path: Path | None = None
        self.started_s = 0.0  # seconds from start() to the first event (the launch overhead)
        # The harness's own memory (interpreter, preloaded libraries): the child's first RSS sample
        # (a fork of the preloaded server holds them from its first instant), then the figure the
        # child reports before it loads the model. The limit caps what the variant adds to it.
        self.baseline_mb: float | None = None
        self.device_mb: float | None = None  # the latest device memory the child reported (Metal)

    @property
    def alive(self) -> bool:
        return self._handle is not None and self._handle.poll() is None

    @property
    def pid(self) -> int | None:
        return self._handle.pid if self._handle else None

    def start(self, job: dict[str, Any], log_path: Path, threads: int, how: str | None = None) -> None:
        parent, child = socket.socketpair()
        self.log_path = log_path
        self._t0 = time.perf_counter()
        self.started_s = 0.0
        self.baseline_mb = None
        try:
            start = _start_fork if (how or launcher()) == "fork" else _start_spawn
            self._handle = start(threads, child, log_path)
        finally:
            child.close()
        self._sock = parent
        self._buffer = b""
        self._pending: list[dict[str, Any]] = []
        self.returncode = None
        self.device_mb = None
        self.send(job)

    def send(self, message: dict[str, Any]) -> None:
        assert self._sock is not None
        try:
            self._sock.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            pass  # it has gone; the next wait reports how it ended

    def rss_mb(self) -> float | None:
        import psutil

        try:
            return psutil.Process(self.pid).memory_info().rss / 2**20 if self.pid else None
        except psutil.Error:
            return None

    def wait_for(self, kinds: set[str], handle: Callable[[dict[str, Any]], None], timeout_s: float) -> dict[str, Any]:
        """Pass each event to ``handle`` until one of ``kinds`` arrives, and return it.

        Raises :class:`ChildEnded` when the child exits first (or is killed: timeout, memory),
        :class:`Cancelled` when the sweep's cancel flag is set."""
        assert self._sock is not None
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as sel:
            sel.register(self._sock, selectors.EVENT_READ)
            while True:
                if self.cancel.is_set():
                    self.kill()
                    raise Cancelled
                while self._pending:
                    event = self._pending.pop(0)
                    if event.get("event") == "baseline":
                        self.baseline_mb = float(event["rss_mb"])
                        continue
                    if event.get("event") in kinds:
                        return event
                    handle(event)
                if sel.select(timeout=0.2):
                    chunk = self._sock.recv(1 << 16)
                    if not chunk:  # the child closed its end: it has exited
                        self._reap()
                        raise ChildEnded(None)
                    if not self.started_s:
                        self.started_s = time.perf_counter() - self._t0
                    *lines, self._buffer = (self._buffer + chunk).split(b"\n")
                    events = [json.loads(line) for line in lines if line.strip()]
                    for event in events:  # Metal's allocations are not in the RSS: the worker reports them
                        if event.get("device_mb") is not None:
                            self.device_mb = event["device_mb"]
                    self._pending.extend(events)
                    continue
                if time.monotonic() > deadline:
                    self.kill()
                    raise ChildEnded(f"timed out after {timeout_s:.0f} s (killed)")
                rss = self.rss_mb()
                if rss is not None and self.baseline_mb is None:
                    self.baseline_mb = rss
                if rss is not None:
                    # Metal allocations do not show in the RSS: the device memory the child reports is added.
                    used = rss - self.baseline_mb + (self.device_mb or 0.0)
                    if used > self.limit_mb:
                        self.kill()
                        raise ChildEnded(f"out of memory: the variant used {used:.0f} MB (above the harness's own "
                                         f"{self.baseline_mb:.0f} MB, device memory included), over the "
                                         f"{self.limit_mb:.0f} MB limit (killed)")

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask it to exit (it is idle between rounds), then make sure it has."""
        if self._handle is None:
            return
        self.send({"cmd": "exit"})
        if self._handle.wait(timeout_s) is None:
            self.kill()
        self._reap()

    def _reap(self) -> None:
        if self._handle is not None:
            code = self._handle.wait(30)
            if code is None:
                self._killpg()
                code = self._handle.wait(None)
            self.returncode = code
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._handle = None

    def _killpg(self) -> None:
        handle = self._handle
        if handle is None or handle.poll() is not None:
            return
        try:
            os.killpg(handle.pid, signal.SIGKILL)  # the child leads its own session
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(handle.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        if self._handle is not None:
            self._killpg()
            self._reap()


def exit_reason(returncode: int | None, log_path: Path | None) -> str:
    """Why a child ended without a result, in one line, with the last line of its log."""
    tail = ""
    try:
        lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()] if log_path else []
        tail = lines[-1][:300] if lines else ""
    except OSError:
        pass
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"worker crashed: killed by {name}{hint}" + (f"; last log line: {tail}" if tail else "")
    return f"worker exited with code {returncode}" + (f": {tail}" if tail else "")
