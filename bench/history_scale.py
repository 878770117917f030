"""The app and the CLI with months of history: a store of 20,000 realistic results.

Run:  python bench/history_scale.py [--results 20000] [--rounds 3] [--root PATH] [--compare PATH]

A store is filled (1,000 runs of 20 results over 90 days: four models, six recipes, two
runtimes, two batch sizes, some failed and unsupported), then, each round:

* the real ``qbench`` program starts in a real terminal (a tmux pane, 120x40, as
  ``../shared/tools/paint_ratio.py`` measures) on that store and the time to its first page of
  results is taken (the command's start to the results' status line on the screen tmux shows),
  alternating with the same program on an empty store (the ratio's baseline); then a four-letter
  filter is typed (``/`` then ``mini``, sent at once: time from the keys to the final filtered
  count on screen), a sort is reversed (``S``: time to the sort arrow flipping) and the app's
  resident memory is read;
* ``qbench results --format json``, ``qbench results`` (table), ``qbench runs`` and, where the
  tree has them, ``--limit 50`` variants are timed end to end.

``--root`` points at another checkout (e.g. ``git archive main | tar -x -C /tmp/before``) so
before and after are measured by the same script (``--compare PATH`` runs the app rounds of
both trees in turn): the store is filled by that tree's own
``engines`` (its schema), and the program run is that tree's ``qbench``. Medians of the rounds
are printed; the machine is shared, so read them with the load average printed beside them.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent

SIZE = (120, 40)


class TmuxApp:
    """The program in a tmux pane (a real terminal, as a user over SSH has): what counts is what
    tmux shows (``capture-pane``), polled every 10 ms, as ``paint_ratio.py`` does. One tmux server
    of its own (``-L``) for the whole bench, so the other sessions on the machine are not touched."""

    socket = f"qbench-history-{os.getpid()}"

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, size: tuple[int, int] = SIZE):
        import shlex
        import uuid

        self.name = "h" + uuid.uuid4().hex[:8]
        unset = " ".join(f"-u {k}" for k in ("COLUMNS", "LINES", "PYTHONDONTWRITEBYTECODE"))
        sets = " ".join(shlex.quote(f"{k}={v}") for k, v in env.items())
        command = f"cd {shlex.quote(str(cwd))} && exec env {unset} {sets} {shlex.join(argv)}"
        self.start = time.perf_counter()
        self._tmux("new-session", "-d", "-s", self.name, "-x", str(size[0]), "-y", str(size[1]), command)
        self.pid = int(self._tmux("display-message", "-p", "-t", self.name, "#{pane_pid}").strip())

    @classmethod
    def _tmux(cls, *args: str) -> str:
        return subprocess.run(["tmux", "-L", cls.socket, *args], capture_output=True, text=True, check=False).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.name)

    def wait_for(self, text: str, timeout: float, since: float | None = None) -> float:
        """Seconds from ``since`` (perf_counter; default: the start) until ``text`` is on the screen."""
        since = self.start if since is None else since
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            now = time.perf_counter()
            if text in screen:
                return now - since
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not on the screen after {timeout} s:\n{screen}")
            time.sleep(0.01)

    def send(self, keys: str) -> float:
        """Type ``keys`` (literally); returns the time they were sent."""
        t0 = time.perf_counter()
        self._tmux("send-keys", "-t", self.name, "-l", keys)
        return t0

    def key(self, name: str) -> None:
        self._tmux("send-keys", "-t", self.name, name)

    def close(self, timeout: float = 20) -> None:
        self.key("q")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and psutil.pid_exists(self.pid):
            time.sleep(0.05)
        self._tmux("kill-session", "-t", self.name)

    @classmethod
    def shutdown(cls) -> None:
        cls._tmux("kill-server")

MODELS = {"digits-mlp": (0.05, 0.9), "digits-cnn": (0.4, 0.3), "tiny-lm": (3.0, 12.0),
          "all-MiniLM-L6-v2": (9.0, 90.0)}  # fp32 p50 ms, fp32 size MB
RECIPES = [("fp32", {}, 1.0, 1.0), ("fp16", {}, 0.9, 0.5), ("dynamic-int8", {}, 0.6, 0.27),
           ("weight-int8", {}, 0.8, 0.27), ("int4", {"group_size": 128}, 0.7, 0.16),
           ("static-int8", {}, 0.55, 0.27)]  # method, config, latency factor, size factor
RUNTIMES = ("onnxruntime", "torch")
BATCHES = (1, 8)


def fill(db: Path, total: int, seed: int = 7) -> None:
    """Fill ``db`` with ``total`` results, in runs of up to 24, with the tree's own Store."""
    from engines.core.schema import Result
    from engines.store import Store
    from engines.store.migrations import legacy_recipe

    rng = random.Random(seed)
    store = Store(db)
    recipes = [(m, cfg, lf, sf, *legacy_recipe(m, __import__("json").dumps(cfg))) for m, cfg, lf, sf in RECIPES]
    start = datetime(2026, 3, 1, tzinfo=UTC)
    per_run = len(recipes) * 2  # six recipes on one runtime or both, one batch size or two
    runs = max(1, -(-total // per_run))
    written = 0
    environment = {"python": "3.11.7", "os": "Linux", "cpu": "Xeon", "physical_cores": 8,
                   "packages": {"torch": "2.13.0", "onnxruntime": "1.32.0"}}
    with store.db.conn:
        for i in range(runs):
            when = start + timedelta(minutes=i * 90 * 24 * 60 / runs)
            run_id = when.strftime("%Y%m%d-%H%M%S-") + f"{i:04x}"
            model = rng.choice(list(MODELS))
            base_ms, base_mb = MODELS[model]
            rows = []
            for method, cfg, lf, sf, recipe_id, label, steps in recipes:
                for runtime, batch in ((RUNTIMES[0], 1), (RUNTIMES[1 if i % 2 else 0], BATCHES[1])):
                    if written + len(rows) >= total:
                        break
                    status, error, notes = "ok", None, []
                    roll = rng.random()
                    if runtime == "torch" and method == "static-int8":
                        status, error = "unsupported", "static-int8 on torch needs a calibration pass"
                    elif roll < 0.04:
                        status, error = "failed", "the benchmark process ran out of memory (RSS 6,144 MB)"
                    elif roll < 0.08:
                        notes = ["IQR above 10 % of the median: the machine was busy"]
                    p50 = base_ms * lf * batch ** 0.7 * rng.uniform(0.9, 1.15)
                    ok = status == "ok"
                    r = Result(
                        model=model, method=method, runtime=runtime, device="cpu", batch_size=batch,
                        recipe_id=recipe_id, label=label, recipe=__import__("json").loads(steps), config=cfg,
                        status=status, error=error, notes=notes,
                        latency_ms={"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.3, "mean": p50 * 1.02,
                                    "std": p50 * 0.05, "iqr": p50 * 0.04, "min": p50 * 0.9, "max": p50 * 1.6,
                                    "samples": 200} if ok else None,
                        throughput_per_s=1000 * batch / p50 if ok else None, load_s=rng.uniform(0.5, 4),
                        peak_rss_mb=rng.uniform(200, 900), size_mb=base_mb * sf if ok else None,
                        accuracy=rng.uniform(0.85, 0.97) if ok and model.startswith("digits") else None,
                        agreement={"top1": 1.0 if method == "fp32" else rng.uniform(0.9, 1.0),
                                   "sqnr_db": float("inf") if method == "fp32" else rng.uniform(15, 45),
                                   "cosine": rng.uniform(0.97, 1.0)} if ok else None,
                        started_at=when.isoformat(timespec="seconds"),
                        finished_at=(when + timedelta(seconds=30)).isoformat(timespec="seconds"),
                    )
                    rows.append({**r.to_row(), "run_id": run_id})
            store.db["runs"].insert({
                "id": run_id, "created_at": when.isoformat(timespec="seconds"),
                "finished_at": (when + timedelta(minutes=10)).isoformat(timespec="seconds"),
                "status": "finished", "model": model,
                "request": __import__("json").dumps({"model": model, "methods": [m for m, *_ in RECIPES],
                                                     "runtimes": list(RUNTIMES), "devices": ["cpu"],
                                                     "batch_sizes": list(BATCHES)}),
                "environment": __import__("json").dumps(environment), "pid": 1, "host": "bench",
                "source": "cli", "message": None})
            store.db["results"].insert_all(rows)
            written += len(rows)
            if written >= total:
                break
    store.close()


FILTER = "mini"  # matches the MiniLM rows only (no other field of these results holds it)


def filtered_count(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM results WHERE model = 'all-MiniLM-L6-v2'").fetchone()[0]


def _app_env(root: Path, home: Path) -> dict[str, str]:
    return {"QBENCH_HOME": str(home), "PYTHONPATH": str(root), "PYTHONPYCACHEPREFIX": str(home / "pycache")}


def app_round(root: Path, db: Path, home: Path) -> dict[str, float]:
    app = TmuxApp([sys.executable, "-m", "qbench_tui", "--db", str(db)], _app_env(root, home), root)
    out: dict[str, float] = {}
    filtered = filtered_count(db)
    try:
        out["first page s"] = app.wait_for("results  ·", 120)
        app.wait_for("digits-mlp", 60)
        app.wait_for("run         ▼", 60)  # the filter selects, mounted after the first page
        time.sleep(2)  # let start-up settle: a key sent earlier may meet the focus still moving
        for attempt in range(3):  # "/" then the word; again if the focus moved away meanwhile
            app.send("/")
            time.sleep(0.5)
            t0 = app.send(FILTER)  # four keys at once, as typed fast: applied once, as one filter
            try:
                out["filter s"] = app.wait_for(f"{filtered} of ", 20, since=t0)
                break
            except TimeoutError:
                if attempt == 2:
                    raise
                print(f"  the filter was not typed into the filter box (attempt {attempt + 1}); again", flush=True)
                app.key("Escape")
        time.sleep(1.0)
        app.key("Enter")  # back to the table, so S is a key and not text
        time.sleep(0.5)
        t0 = app.send("S")
        out["sort s"] = app.wait_for("when ▲", 60, since=t0)
        time.sleep(1.0)
        out["RSS MB"] = psutil.Process(app.pid).memory_info().rss / 2**20
    finally:
        app.close()
    return out


def empty_round(root: Path, home: Path) -> float:
    """The command's start to the results' status line on an empty store (the ratio's baseline).
    The store is made by the first (uncounted) round and kept: the later ones open it, as a user's
    second start does (making the file and its schema is not what the ratio compares)."""
    db = home / "empty.db"
    app = TmuxApp([sys.executable, "-m", "qbench_tui", "--db", str(db)], _app_env(root, home), root)
    try:
        return app.wait_for("results  ·", 120)
    finally:
        app.close()


def cli_round(root: Path, db: Path, home: Path, limit_flags: bool) -> dict[str, float]:
    env = {**os.environ, "QBENCH_HOME": str(home), "PYTHONPATH": str(root),
           "PYTHONPYCACHEPREFIX": str(home / "pycache")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    commands = {"results --format json": ["results", "--format", "json"], "results (table)": ["results"],
                "runs": ["runs"], "runs --json": ["runs", "--json"]}
    if limit_flags:
        commands.update({"results --limit 50": ["results", "--limit", "50"],
                         "results --model tiny-lm --status failed": ["results", "--model", "tiny-lm",
                                                                      "--status", "failed"],
                         "runs --limit 20": ["runs", "--limit", "20"]})
    out = {}
    for name, args in commands.items():
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "qbench_tui", "--db", str(db), *args], cwd=root, env=env, check=False,
                              capture_output=True, timeout=300)
        out[name] = time.perf_counter() - t0
        if proc.returncode:
            raise RuntimeError(f"qbench {' '.join(args)} failed: {proc.stderr.decode()[-500:]}")
    return out


def compare_apps(trees: list[Path], results: int, rounds: int) -> int:
    """Each tree's app on its own store (filled by that tree), one round of each in turn, so that
    a busy machine's load weighs on all alike; the medians side by side."""
    stores = {}
    for tree in trees:
        home = Path(tempfile.mkdtemp(prefix="qbench-history-"))
        env = {**os.environ, "PYTHONPATH": str(tree), "QBENCH_HOME": str(home)}
        subprocess.run([sys.executable, __file__, "--results", str(results), "--fill-only", str(home / "history.db")],
                       env=env, check=True, cwd=tree)
        stores[tree] = (home / "history.db", home)
        empty_round(tree, home)  # fills the bytecode cache and makes the empty store (not counted)
        app_round(tree, *stores[tree])
    got: dict[Path, list[dict[str, float]]] = {tree: [] for tree in trees}
    for i in range(rounds):
        for tree in trees:
            empty = empty_round(tree, stores[tree][1])
            got[tree].append({"empty s": empty, **app_round(tree, *stores[tree])})
            got[tree][-1]["first page / empty"] = got[tree][-1]["first page s"] / empty
        print(f"  round {i + 1}: " + "; ".join(f"{str(t)[-20:]} " + ", ".join(f"{k} {v:.2f}" for k, v in got[t][-1].items())
                                              for t in trees), flush=True)
    print(f"\n== {results} results, the app, median of {rounds} alternating rounds (load average now "
          f"{os.getloadavg()[0]:.1f}) ==")
    keys = list(got[trees[0]][0])
    widths = [max(14, len(k) + 2) for k in keys]
    print(f"{'tree':<32}" + "".join(f"{k:>{w}}" for k, w in zip(keys, widths, strict=True)))
    for tree in trees:
        print(f"{str(tree)[-32:]:<32}" + "".join(f"{statistics.median(r[k] for r in got[tree]):>{w}.2f}"
                                                 for k, w in zip(keys, widths, strict=True)))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--root", type=Path, default=HERE.parent, help="the checkout to measure")
    parser.add_argument("--fill-only", type=Path, metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument("--skip-app", action="store_true")
    parser.add_argument("--skip-cli", action="store_true", help="the app's rounds only")
    parser.add_argument("--compare", type=Path, metavar="PATH",
                        help="the app rounds only, of --root's tree and PATH's in turn (before/after)")
    args = parser.parse_args()
    if args.fill_only:  # run by the parent with PYTHONPATH set to the measured tree
        fill(args.fill_only, args.results)
        return 0
    try:
        return measure(args)
    finally:
        TmuxApp.shutdown()


def measure(args: argparse.Namespace) -> int:
    if args.compare:
        return compare_apps([args.root.resolve(), args.compare.resolve()], args.results, args.rounds)
    root = args.root.resolve()
    home = Path(tempfile.mkdtemp(prefix="qbench-history-"))
    db = home / "history.db"
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(root), "QBENCH_HOME": str(home)}
    subprocess.run([sys.executable, __file__, "--results", str(args.results), "--fill-only", str(db)],
                   env=env, check=True, cwd=root)
    print(f"tree: {root}; store: {db} ({db.stat().st_size / 2**20:.1f} MB, {args.results} results, "
          f"filled in {time.perf_counter() - t0:.1f} s); load average {os.getloadavg()[0]:.1f}", flush=True)
    limit_flags = "--limit" in subprocess.run([sys.executable, "-m", "qbench_tui", "results", "--help"], check=False, cwd=root,
                                              env=env, capture_output=True, text=True).stdout
    app_rounds: list[dict[str, float]] = []
    cli_rounds: list[dict[str, float]] = []
    for i in range(args.rounds):
        if not args.skip_app:
            if i == 0:
                empty_round(root, home)  # fills the bytecode cache (not counted)
            # The same app on an empty store, just before: the target is a ratio to it.
            app_rounds.append({"empty store: first page s": empty_round(root, home), **app_round(root, db, home)})
            app_rounds[-1]["first page / empty"] = app_rounds[-1]["first page s"] / app_rounds[-1][
                "empty store: first page s"]
        cli_rounds.append({} if args.skip_cli else cli_round(root, db, home, limit_flags))
        print(f"  round {i + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in {**(app_rounds[-1] if app_rounds else {}),
                                                                          **cli_rounds[-1]}.items()), flush=True)
    print(f"\n== {args.results} results, median of {args.rounds} rounds (load average now "
          f"{os.getloadavg()[0]:.1f}) ==")
    for rounds in (app_rounds, cli_rounds):
        for key in (rounds[0] if rounds else {}):
            values = [r[key] for r in rounds]
            unit = " s" if key.endswith(" s") else ""
            print(f"{key:<44}{statistics.median(values):>9.2f}{unit}   (rounds: "
                  f"{', '.join(f'{v:.2f}' for v in values)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
