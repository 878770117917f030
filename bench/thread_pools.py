"""Thread pools on a shared machine: spinning vs sleeping workers, with and without a busy neighbour.

    python bench/thread_pools.py [--model digits-mlp] [--seconds 2] [--threads N]

For torch (OpenMP: ``OMP_WAIT_POLICY`` ACTIVE vs PASSIVE, set before torch loads, so each case
runs in a fresh process) and ONNX Runtime (``session.intra_op.allow_spinning`` 1 vs 0), it times
the model's fp32 forward at batch 1 with all physical cores, first alone, then while a neighbour
process burns one core. A spinning pool waits at every barrier for a thread the neighbour has
descheduled; a sleeping one yields. Prints p50/p90 per case and the slowdown the neighbour causes.
qbench's children use OMP passive wait (engines.bench.child.child_environment).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time

CASE = r"""
import json, os, sys, time, statistics
import numpy as np
kind, setting, threads, seconds, model_name = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
from engines.models import load_model, resolve_model
model = load_model(resolve_model(model_name))
x = model.example_inputs(1)
if kind == "torch":
    import torch
    torch.set_num_threads(threads)
    args = tuple(torch.from_numpy(x[n]) for n in model.input_names)
    def fn():
        with torch.inference_mode():
            model.module(*args)
else:
    import onnxruntime as ort, tempfile
    from pathlib import Path
    from engines.passes.onnx_passes import export_fp32
    path = export_fp32(model, Path(tempfile.mkdtemp()))
    o = ort.SessionOptions(); o.intra_op_num_threads = threads; o.inter_op_num_threads = 1
    o.add_session_config_entry("session.intra_op.allow_spinning", setting)
    s = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
    feed = {i.name: x[i.name] for i in s.get_inputs()}
    fn = lambda: s.run(None, feed)
for _ in range(50): fn()
ts = []
end = time.perf_counter() + seconds
while time.perf_counter() < end:
    t = time.perf_counter_ns(); fn(); ts.append(time.perf_counter_ns() - t)
ts = np.asarray(ts) / 1e6
print(json.dumps({"p50": float(np.median(ts)), "p90": float(np.percentile(ts, 90)), "n": len(ts)}))
"""


def burn(stop) -> None:
    while not stop.is_set():
        sum(range(10_000))


def run_case(kind: str, setting: str, threads: int, seconds: float, model: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if kind == "torch":
        env["OMP_WAIT_POLICY"] = setting
    out = subprocess.run([sys.executable, "-c", CASE, kind, setting, str(threads), str(seconds), model],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(lines[-1])


def main() -> None:
    from engines.devices import physical_cores

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-mlp")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=physical_cores())
    args = parser.parse_args()
    cases = [("torch", "ACTIVE"), ("torch", "PASSIVE"), ("onnxruntime", "1"), ("onnxruntime", "0")]
    print(f"{args.model}, batch 1, {args.threads} threads, {args.seconds}s per case")
    print(f"{'runtime':12} {'setting':22} {'alone p50':>10} {'busy p50':>10} {'busy p90':>10} {'slowdown':>9}")
    for kind, setting in cases:
        alone = run_case(kind, setting, args.threads, args.seconds, args.model)
        stop = multiprocessing.Event()
        neighbour = multiprocessing.Process(target=burn, args=(stop,))
        neighbour.start()
        time.sleep(0.2)
        try:
            busy = run_case(kind, setting, args.threads, args.seconds, args.model)
        finally:
            stop.set()
            neighbour.join()
        name = f"OMP_WAIT_POLICY={setting}" if kind == "torch" else f"allow_spinning={setting}"
        print(f"{kind:12} {name:22} {alone['p50']:10.3f} {busy['p50']:10.3f} {busy['p90']:10.3f} "
              f"{busy['p50'] / alone['p50']:8.2f}×")


if __name__ == "__main__":
    main()
