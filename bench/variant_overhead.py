"""What each variant pays before it measures: its child's start-up, spawned vs forked.

    python bench/variant_overhead.py [--model digits-mlp] [--method fp32] [--runtime onnxruntime] [--tries 5]

Starts the same variant's child with each launcher, alternating (spawn, fork, spawn, …), and
reports per launcher the median of
- **start → first event**: the interpreter and the engine's imports (a forked child inherits them);
- **start → ready**: everything before timing (imports not yet done, load, quantize, open, evaluate):
  the per-variant cost. The variant's own work is the same under both launchers, so the difference
  is the launch overhead saved per variant.
The fork server starts once (its preload is paid once per sweep, shown as "server start").
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from engines.bench.child import WorkerProcess, _fork_context
from engines.bench.measure import MeasureSettings
from engines.bench.request import SweepRequest, plan_variants
from engines.bench.runner import SweepRunner
from engines.methods.recipe import parse_recipes
from engines.store import Store


def one(slot_job: dict, how: str, threads: int) -> dict[str, float]:
    child = WorkerProcess(threading.Event())
    log = Path(tempfile.mkdtemp()) / "worker.log"
    t0 = time.perf_counter()
    child.start(slot_job, log, threads, how=how)
    child.wait_for({"ready"}, lambda event: None, 600)
    ready = time.perf_counter() - t0
    child.stop()
    return {"first_event": child.started_s, "ready": ready}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-mlp")
    parser.add_argument("--method", default="fp32")
    parser.add_argument("--runtime", default="onnxruntime")
    parser.add_argument("--tries", type=int, default=5)
    args = parser.parse_args()

    store = Store(Path(tempfile.mkdtemp()) / "q.db")
    request = SweepRequest(model=args.model, methods=parse_recipes((args.method,)), runtimes=(args.runtime,),
                           measure=MeasureSettings(repeat=1))
    runner = SweepRunner(store)
    from engines.models import resolve_model

    spec = resolve_model(request.model)
    variant = plan_variants(request)[0]
    slot = runner._plan("overhead", spec, request, variant, [1], 0, 1)
    assert slot is not None, "the variant cannot run here"
    threads = request.effective_threads

    t0 = time.perf_counter()
    _fork_context(threads)
    one(slot.job, "fork", threads)  # starts the server (its preload) and warms the export cache
    server = time.perf_counter() - t0

    figures: dict[str, list[dict[str, float]]] = {"spawn": [], "fork": []}
    for _ in range(args.tries):
        for how in ("spawn", "fork"):
            figures[how].append(one(slot.job, how, threads))

    print(f"{args.model} · {args.method} · {args.runtime}, {args.tries} tries each, alternating; "
          f"fork server start (once per sweep): {server:.2f} s")
    print(f"{'launcher':9} {'start→first event':>18} {'start→ready':>12}")
    med = {how: {k: statistics.median(f[k] for f in runs) for k in ("first_event", "ready")}
           for how, runs in figures.items()}
    for how, m in med.items():
        print(f"{how:9} {m['first_event']:17.3f}s {m['ready']:11.3f}s")
    print(f"fork / spawn start→ready: {med['fork']['ready'] / med['spawn']['ready']:.2f}×; saved per variant: "
          f"{med['spawn']['ready'] - med['fork']['ready']:.2f} s")


if __name__ == "__main__":
    main()
