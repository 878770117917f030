"""Where the app's first frame goes, step by step: CPU and wall time at each step of a real start.

Run:  .venv/bin/python bench/first_frame_trace.py [--runs 5] [--size 120x40] [--root TREE ...]

Starts ``qbench`` (the same entry point as ``python -m qbench_tui``) in a tmux terminal ``--runs``
times with an empty store, each start traced from inside: the process's CPU time and the wall time
since the interpreter was up at each step (Textual imported, the app imported, the main screen
composed and mounted, its first layout, each write to the terminal), until the first write that
holds the whole first screen (the models, the welcome, a CPU reading, the footer's keys).
The same is done, alternating, for the hello-world Textual app (../shared/tools/hello_textual.py,
where it is found), and for each ``--root`` checkout given (another tree's qbench, run by this
``.venv``). Prints the medians per step and, for each step, its CPU cost: what a
first frame costs by component. CPU time is what a loaded machine changes least; read wall
times with ``uptime`` (printed) and compare trees side by side only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT.parent.parent / "shared" / "tools" / "hello_textual.py"
WHOLE = ("1.1M", "Welcome to qbench", "% on average", "q Quit")


def child(log_path: str, target: str) -> None:
    """Run the app (or hello-world) with its steps logged to ``log_path`` as JSON lines;
    ``target``: ``hello``, or the checkout whose app is run."""
    t0, c0 = time.perf_counter(), time.process_time()
    if target != "hello":
        sys.path.insert(0, target)
    log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - open for the process's life

    def mark(step: str) -> None:
        log.write(json.dumps([step, time.perf_counter() - t0, time.process_time() - c0]) + "\n")
        log.flush()

    import re

    if target != "hello":  # as the entry point does, before Textual's import (its second call: a no-op)
        from qbench_tui import cpu_clock

        cpu_clock.prime()
        cpu_clock.prime = lambda: None
        try:
            from qbench_tui import gc_pause  # a tree that pauses the collector from its entry point
        except ImportError:
            pass
        else:
            gc_pause.pause()
    import textual.app  # noqa: F401
    from textual.drivers.linux_driver import LinuxDriver
    from textual.screen import Screen

    mark("Textual imported")
    write, refresh_layout = LinuxDriver.write, Screen._refresh_layout
    expected = ("hello baseline ready",) if target == "hello" else WHOLE
    done = [False]
    seen: set[str] = set()  # the expected texts written so far (a later frame may add the rest)

    def traced_write(self, data: str) -> None:
        write(self, data)
        if not done[0]:
            plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", data)
            seen.update(text for text in expected if text in plain)
            if len(seen) == len(expected):
                done[0] = True
                mark("whole first screen written")

    layouts = [0]

    def traced_layout(self, *args, **kwargs):
        if not done[0]:
            layouts[0] += 1
            mark(f"layout and render {layouts[0]} start")
        return refresh_layout(self, *args, **kwargs)

    LinuxDriver.write = traced_write  # type: ignore[method-assign]
    Screen._refresh_layout = traced_layout  # type: ignore[method-assign]
    if target == "hello":
        sys.path.insert(0, str(HELLO.parent))
        from hello_textual import Hello

        mark("app imported")
        Hello().run()
        return
    from qbench_tui.screens.main import MainScreen

    import qbench_tui.app  # noqa: F401

    mark("app imported")
    compose, on_mount = MainScreen.compose, MainScreen.on_mount

    def traced_compose(self):
        mark("screen composing")
        yield from compose(self)

    def traced_on_mount(self) -> None:
        mark("screen's widgets mounted and styled")
        on_mount(self)
        mark("start-up reads shown")

    MainScreen.compose = traced_compose  # type: ignore[method-assign]
    MainScreen.on_mount = traced_on_mount  # type: ignore[method-assign]
    from qbench_tui.cli import main

    sys.argv = ["qbench"]
    main()


def one_start(target: str, size: str, home: Path) -> list[tuple[str, float, float]]:
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as f:
        log_path = f.name
    session = "fft" + uuid.uuid4().hex[:8]
    width, height = size.split("x")
    cmd = f"env QBENCH_HOME={home} {sys.executable} {Path(__file__).resolve()} --child {target} {log_path}"
    for attempt in range(3):  # a tmux server still exiting after the last session refuses a new one
        started = subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", width, "-y", height,
                                  "-c", str(ROOT), cmd], capture_output=True)
        if started.returncode == 0:
            break
        time.sleep(0.5)
    else:
        raise SystemExit(f"tmux did not start: {started.stderr.decode().strip()}")
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "whole first screen written" in Path(log_path).read_text(encoding="utf-8"):
                break
            time.sleep(0.05)
        else:
            raise SystemExit(f"{target}: no whole first screen within 60 s")
    finally:
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], capture_output=True)
        time.sleep(0.3)
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        time.sleep(0.2)
    steps = [tuple(json.loads(line)) for line in Path(log_path).read_text(encoding="utf-8").splitlines()]
    os.unlink(log_path)
    first: dict[str, tuple[str, float, float]] = {}
    for step in steps:
        first.setdefault(step[0], step)  # each step's first time
    return list(first.values())


def report(name: str, runs: list[list[tuple[str, float, float]]]) -> float:
    order = [step for step, _, _ in runs[0]]
    print(f"\n{name} (medians of {len(runs)} starts; seconds since the interpreter was up)")
    print(f"  {'step':38s} {'wall':>7s} {'CPU':>7s} {'CPU of the step':>16s}")
    last_cpu = 0.0
    for step in order:
        walls = [t for run in runs for s, t, _ in run if s == step]
        cpus = [c for run in runs for s, _, c in run if s == step]
        wall, cpu = statistics.median(walls), statistics.median(cpus)
        print(f"  {step:38s} {wall:7.3f} {cpu:7.3f} {cpu - last_cpu:+16.3f}")
        last_cpu = cpu
    return last_cpu


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[3], sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", default="120x40")
    parser.add_argument("--root", type=Path, nargs="*", default=[], help="other checkouts to trace alongside")
    args = parser.parse_args()
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    with tempfile.TemporaryDirectory(prefix="qbench-fft-") as home_dir:
        home = Path(home_dir)
        targets = [str(ROOT), *(str(r.resolve()) for r in args.root)] + (["hello"] if HELLO.exists() else [])
        for target in targets:
            one_start(target, args.size, home)  # warm the page cache (and the store's creation)
        runs: dict[str, list] = {t: [] for t in targets}
        for _ in range(args.runs):
            for target in targets:
                runs[target].append(one_start(target, args.size, home))
    cpu = {target: report("hello-world Textual" if target == "hello" else f"qbench in {target}", runs[target])
           for target in targets}
    print()
    for target in targets:
        ratio = f", {cpu[target] / cpu['hello']:.2f}× hello-world" if "hello" in cpu else ""
        print(f"CPU to the whole first screen: {cpu[target]:.3f} s  {target}{ratio}")
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
