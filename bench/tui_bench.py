"""What the terminal app costs: time to first paint, its CPU use while it shows a running sweep,
and how much having it open changes the latencies a sweep measures.

Run:  uv run python bench/tui_bench.py [--rounds 2] [--paint-runs 5] [--size 120x40] [--root PATH]
      [--skip-sweeps] [--compare PATH] [--long-min-time S]

The real ``qbench`` program runs in a pseudo-terminal (120x40 unless --size) with a temporary
QBENCH_HOME; ``--root`` runs another checkout's program (before/after from one script):

* first paint — from process start to the first frame (the pane frames' titles), to "all four
  panes" (each pane's content drawn: the models listed, the methods, the meters' first CPU
  reading, the results pane's welcome) and to "interactive" (models listed). Measured
  with a warm bytecode cache (what an installed qbench sees from its second start on) and cold
  (no cache at all, as in a fresh checkout with PYTHONDONTWRITEBYTECODE set);
* CPU — the app process's own CPU time (children excluded: the benchmark worker is not the
  app; the runner thread waiting on it is) divided by wall time, while a sweep runs and idle;
* interference — the same sweep (digits-mlp, fp32 and dynamic-int8 on ONNX Runtime, 1 s
  minimum per measurement) run headless by ``qbench run`` and from the open app, alternating,
  and the ratio of the p50 latencies (app / headless) printed side by side.

``--compare PATH [PATH…]`` times the first paint (warm cache) and the app's CPU while it shows the running
sweep, of ``--root``'s tree and each PATH's in turn, run by run, so that a busy machine's load weighs on
before and after alike (``--skip-sweeps``: first paint only; ``--paint-runs 0``: the sweep only).

The sweep is short and dense (about 12 s: two digits-mlp variants, 1 s minimum per measurement,
an event about every second, a fresh store), so the one-off redraws of a sweep's start and end
weigh a lot in it. ``--long-min-time S`` also measures the app's CPU during the same sweep with S
seconds minimum per measurement (5: about a minute), closer to a real sweep's minutes per variant;
both are reported, each with its own label.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
TREE = ROOT  # the checkout whose program is measured (--root)
QBENCH = [sys.executable, "-m", "qbench_tui"]
COLS, ROWS = 120, 40
METHODS = ("fp32", "dynamic-int8")


class PtyApp:
    """The program in a pseudo-terminal; its output is drained continuously (as a terminal would)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path = ROOT,
                 size: tuple[int, int] | None = None):
        cols, rows = size or (COLS, ROWS)
        self.start = time.perf_counter()
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            os.chdir(cwd)
            os.execvpe(argv[0], argv, env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.output = b""
        self.output_total = bytearray()  # everything, for markers that must appear after a key
        self.seen: dict[bytes, float] = {}
        self.watch: list[bytes] = []
        self._stop = False
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while not self._stop:
            ready, _, _ = select.select([self.fd], [], [], 0.02)
            if not ready:
                continue
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            now = time.perf_counter() - self.start
            self.output = (self.output + chunk)[-200_000:]
            self.output_total += chunk
            for marker in self.watch:
                if marker not in self.seen and marker in self.output:
                    self.seen[marker] = now

    def wait_for(self, marker: bytes, timeout: float) -> float:
        if marker not in self.watch:
            self.watch.append(marker)
            if marker in self.output:
                self.seen.setdefault(marker, time.perf_counter() - self.start)
        deadline = time.monotonic() + timeout
        while marker not in self.seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{marker!r} not seen in {timeout} s")
            time.sleep(0.01)
        return self.seen[marker]

    def wait_after(self, offset: int, marker: bytes, timeout: float) -> float:
        """Seconds from start until ``marker`` appeared in the output after byte ``offset``."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.perf_counter() - self.start
            if self.output_total.find(marker, max(0, offset - len(marker))) >= 0:
                return now
            if time.monotonic() > deadline:
                raise TimeoutError(f"{marker!r} not seen in {timeout} s")
            time.sleep(0.005)

    def send(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return times.user + times.system  # the app's own threads; the worker processes are children

    def close(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        self._stop = True
        os.close(self.fd)


def base_env(home: Path, bytecode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "PYTHONDONTWRITEBYTECODE")}
    env.update(QBENCH_HOME=str(home), TERM="xterm-256color", PYTHONPATH=str(TREE))
    if bytecode == "warm":
        env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPYCACHEPREFIX"] = str(home / "no-pycache")  # empty and never written
    return env


def first_paint(home: Path, bytecode: str, runs: int, fill_cache: bool = True) -> dict[str, list[float]]:
    marks = {"first frame": b"Sweep setup", "full screen": b"Methods", "interactive": b"digits-mlp"}
    # one per pane (the meters' with their first CPU reading)
    panes = (b"digits-mlp", b"Methods", b"% on average", b"Welcome to qbench")
    times: dict[str, list[float]] = {k: [] for k in [*marks, "all four panes"]}
    db = home / "paint.db"
    fill_cache = fill_cache and bytecode == "warm"
    for i in range(runs + (1 if fill_cache else 0)):
        app = PtyApp([*QBENCH, "--db", str(db)], base_env(home, bytecode), cwd=TREE)
        try:
            got = {name: app.wait_for(marker, 30) for name, marker in marks.items()}
            got["all four panes"] = max(app.wait_for(marker, 30) for marker in panes)
        finally:
            app.send("q")
            app.close()
        if fill_cache and i == 0:
            continue  # this run fills the bytecode cache
        for name, value in got.items():
            times[name].append(value)
    return times


def run_status(db: Path) -> str | None:
    from engines.store import Store

    if not db.exists():
        return None
    store = Store(db)
    try:
        run_id = store.latest_run_id()
        return store.get_run(run_id)["status"] if run_id else None
    finally:
        store.close()


def p50s(db: Path) -> dict[str, float]:
    from engines.store import Store

    store = Store(db)
    try:
        results = store.results(store.latest_run_id())
    finally:
        store.close()
    return {r["method"]: r["latency_ms"]["p50"] for r in results if r["status"] == "ok"}


def sweep_headless(home: Path, db: Path) -> dict[str, float]:
    env = base_env(home, "warm")
    subprocess.run([*QBENCH, "--db", str(db), "run", "--model", "digits-mlp", "--methods", ",".join(METHODS),
                    "--runtimes", "onnxruntime", "--min-time", "1", "--min-reps", "30"],
                   cwd=TREE, env=env, check=True, capture_output=True)
    return p50s(db)


def sweep_in_app(home: Path, db: Path, min_time: float = 1.0) -> tuple[dict[str, float], float, float]:
    """Returns (p50 per method, app CPU % during the sweep, app CPU % idle: 10 s from 5 s after it)."""
    env = {**base_env(home, "warm"), "QBENCH_MEASURE_MIN_TIME": str(min_time), "QBENCH_MEASURE_MIN_REPS": "30"}
    app = PtyApp([*QBENCH, "--db", str(db)], env, cwd=TREE)
    try:
        app.wait_for(b"digits-mlp", 30)
        time.sleep(1.0)  # let start-up settle before measuring
        cpu0, wall0 = app.cpu_seconds(), time.perf_counter()
        app.send("r")
        deadline = time.monotonic() + 600
        while run_status(db) in (None, "running"):
            if time.monotonic() > deadline:
                raise TimeoutError("the sweep in the app did not finish")
            time.sleep(0.5)
        cpu1, wall1 = app.cpu_seconds(), time.perf_counter()
        time.sleep(5.0)  # the end of a sweep redraws the table and shows a notification
        cpu2, wall2 = app.cpu_seconds(), time.perf_counter()
        time.sleep(10.0)
        cpu3, wall3 = app.cpu_seconds(), time.perf_counter()
        app.send("q")
    finally:
        app.close()
    return p50s(db), 100 * (cpu1 - cpu0) / (wall1 - wall0), 100 * (cpu3 - cpu2) / (wall3 - wall2)


def compare_paint(trees: list[Path], home: Path, runs: int) -> None:
    """First paint of each tree with a warm bytecode cache, one run of each in turn (the load of a
    shared machine then weighs on all alike), and the medians side by side."""
    global TREE
    homes = {tree: home / f"tree-{i}" for i, tree in enumerate(trees)}
    for tree in trees:
        homes[tree].mkdir(parents=True, exist_ok=True)
        TREE = tree
        first_paint(homes[tree], "warm", 0)  # fills the bytecode cache
    times: dict[Path, dict[str, list[float]]] = {tree: {} for tree in trees}
    for _ in range(runs):
        for tree in trees:
            TREE = tree
            for name, values in first_paint(homes[tree], "warm", 1, fill_cache=False).items():
                times[tree].setdefault(name, []).extend(values)
    print(f"\n== time to first paint ({COLS}x{ROWS}, warm bytecode cache, median of {runs}, alternating; "
          f"load average {os.getloadavg()[0]:.1f}) ==")
    names = list(times[trees[0]])
    print(f"{'tree':<28}" + "".join(f"{n:>17}" for n in names))
    for tree in trees:
        print(f"{str(tree)[-28:]:<28}" + "".join(f"{statistics.median(times[tree][n]):>15.2f} s" for n in names))
    print("spread (min-max):")
    for tree in trees:
        print(f"{str(tree)[-28:]:<28}" + "".join(f"{min(times[tree][n]):>9.2f}-{max(times[tree][n]):.2f} s"
                                                  for n in names))
    base = times[trees[0]]["all four panes"]
    for tree in trees[1:]:
        ratio = statistics.median(times[tree]["all four panes"]) / statistics.median(base)
        print(f"all four panes, {str(tree)[-28:]} / {str(trees[0])[-28:]}: {ratio:.2f}")


def sweep_label(min_time: float) -> str:
    return (f"short dense sweep ({min_time:g} s per measurement)" if min_time <= 1
            else f"longer sweep ({min_time:g} s per measurement)")


def compare_sweep(trees: list[Path], home: Path, rounds: int, min_time: float = 1.0) -> None:
    """The app's CPU while it shows the running sweep (and idle after it), each tree's app in turn
    for ``rounds`` rounds, medians side by side."""
    global TREE
    print(f"\n-- {sweep_label(min_time)} --", flush=True)
    busy: dict[Path, list[float]] = {tree: [] for tree in trees}
    idle: dict[Path, list[float]] = {tree: [] for tree in trees}
    for i in range(rounds):
        for j, tree in enumerate(trees):
            TREE = tree
            _, cpu_busy, cpu_idle = sweep_in_app(home, home / f"compare-{min_time:g}-{j}-{i}.db", min_time)
            busy[tree].append(cpu_busy)
            idle[tree].append(cpu_idle)
        print(f"  round {i + 1}: " + ", ".join(f"{str(t)[-28:]} {busy[t][-1]:.1f} %" for t in trees)
              + f" (load average {os.getloadavg()[0]:.1f})", flush=True)
    print(f"\n== app CPU while showing the running {sweep_label(min_time)}, % of one core (median of {rounds}, "
          f"alternating; load average {os.getloadavg()[0]:.1f}) ==")
    print(f"{'tree':<28}{'sweep':>10}{'idle':>10}   rounds (min–max)")
    for tree in trees:
        print(f"{str(tree)[-28:]:<28}{statistics.median(busy[tree]):>9.1f}%{statistics.median(idle[tree]):>9.1f}%   "
              + ", ".join(f"{b:.1f}" for b in busy[tree]) + f" ({min(busy[tree]):.1f}–{max(busy[tree]):.1f})")
    base = statistics.median(busy[trees[0]])
    for tree in trees[1:]:
        print(f"sweep CPU, {str(tree)[-28:]} / {str(trees[0])[-28:]}: {statistics.median(busy[tree]) / base:.2f}")


def main() -> int:
    global COLS, ROWS, TREE
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="headless/app sweep pairs (alternating)")
    parser.add_argument("--paint-runs", type=int, default=5)
    parser.add_argument("--size", default=f"{COLS}x{ROWS}", help="terminal COLSxROWS (default 120x40)")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout to measure")
    parser.add_argument("--skip-sweeps", action="store_true", help="first paint only")
    parser.add_argument("--compare", type=Path, metavar="PATH", nargs="+",
                        help="also measure each PATH's first paint and sweep CPU, run for run alternating with "
                             "--root's (before/after)")
    parser.add_argument("--long-min-time", type=float, default=0, metavar="S",
                        help="also measure the app's CPU during a longer sweep, S seconds per measurement "
                             "(5: about a minute); reported apart from the short dense one")
    args = parser.parse_args()
    COLS, ROWS = (int(v) for v in args.size.lower().split("x"))
    TREE = args.root.resolve()
    sys.path.insert(0, str(TREE))  # this script reads the stores with the measured tree's engines (its schema)
    home = Path(tempfile.mkdtemp(prefix="qbench-tui-bench-"))
    print(f"machine: {psutil.cpu_count(logical=False)} cores, load average {os.getloadavg()[0]:.1f} at start; "
          f"QBENCH_HOME={home}")
    print("warming up: training digits-mlp once (not timed)…", flush=True)
    if not args.skip_sweeps:
        sweep_headless(home, home / "warmup.db")

    if args.compare:
        trees = [TREE, *(path.resolve() for path in args.compare)]
        if args.paint_runs:
            compare_paint(trees, home, args.paint_runs)
        if not args.skip_sweeps:
            compare_sweep(trees, home, args.rounds)
            if args.long_min_time:
                compare_sweep(trees, home, args.rounds, args.long_min_time)
        return 0
    print(f"\n== time to first paint ({COLS}x{ROWS}, median of {args.paint_runs}; tree {TREE}) ==")
    for bytecode in ("warm", "cold"):
        times = first_paint(home, bytecode, args.paint_runs)
        cells = "  ".join(f"{name} {statistics.median(v):.2f} s (min {min(v):.2f})" for name, v in times.items())
        print(f"bytecode cache {bytecode:<4}: {cells}")

    if args.skip_sweeps:
        return 0
    print(f"\n== the same sweep headless and in the open app ({args.rounds} rounds, alternating) ==")
    headless: dict[str, list[float]] = {m: [] for m in METHODS}
    in_app: dict[str, list[float]] = {m: [] for m in METHODS}
    busy, idle = [], []
    for i in range(args.rounds):
        for m, v in sweep_headless(home, home / f"headless-{i}.db").items():
            headless[m].append(v)
        p50, cpu_busy, cpu_idle = sweep_in_app(home, home / f"app-{i}.db")
        for m, v in p50.items():
            in_app[m].append(v)
        busy.append(cpu_busy)
        idle.append(cpu_idle)
        print(f"  round {i + 1}: headless { {m: round(v[-1], 4) for m, v in headless.items()} } ms, "
              f"app { {m: round(v[-1], 4) for m, v in in_app.items()} } ms", flush=True)
    print(f"\n{'method':<14}{'headless p50 ms':>17}{'in app p50 ms':>15}{'app/headless':>14}")
    for m in METHODS:
        h, a = statistics.median(headless[m]), statistics.median(in_app[m])
        print(f"{m:<14}{h:>17.4f}{a:>15.4f}{a / h:>14.3f}")
    print(f"\napp CPU while showing the running sweep: {statistics.median(busy):.1f} % of one core "
          f"(rounds: {', '.join(f'{b:.1f}' for b in busy)})")
    print(f"app CPU idle (10 s, from 5 s after the sweep): {statistics.median(idle):.1f} % of one core")
    if args.long_min_time:
        long_busy = [sweep_in_app(home, home / f"app-long-{i}.db", args.long_min_time)[1] for i in range(args.rounds)]
        print(f"app CPU while showing the running {sweep_label(args.long_min_time)}: "
              f"{statistics.median(long_busy):.1f} % of one core (rounds: {', '.join(f'{b:.1f}' for b in long_busy)})")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
