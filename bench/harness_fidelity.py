"""Does qbench time an ONNX file as ONNX Runtime itself would? Side by side, interleaved.

    python bench/harness_fidelity.py [--model digits-mlp] [--rounds 20] [--seconds 0.25] [--batch-size 1]

The same fp32 ONNX file is timed two ways in this one process, in shuffled interleaved rounds:
- **qbench**: exactly the child's path — ``engines.runtimes.ort.session.open_session`` → ``bind`` →
  ``engines.bench.measure.measure_latency`` (one ``perf_counter_ns`` pair around each call);
- **direct**: an ``onnxruntime.InferenceSession`` with the same thread settings, called in a bare
  loop with the same clock.
It prints each one's median, the ratio qbench / direct as the median of per-round ratios with
the range over rounds, and a 95 % bootstrap interval over the pooled samples. The goal: qbench's
p50 within 5 % of the direct figure.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from engines.bench.measure import MeasureSettings, bootstrap_ratio_ci, measure_latency
from engines.devices import physical_cores
from engines.models import ModelSpec, load_model, resolve_model
from engines.models.onnx_cache import SOURCE_FORMAT


def direct_loop(run, names, feed, seconds: float, min_reps: int) -> list[int]:
    clock = time.perf_counter_ns
    samples: list[int] = []
    end = clock() + seconds * 1e9
    while clock() < end or len(samples) < min_reps:
        t0 = clock()
        run(names, feed)
        samples.append(clock() - t0)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-mlp")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=0.25, help="timing per variant per round")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=physical_cores())
    args = parser.parse_args()

    import onnxruntime as ort

    from engines.passes.onnx_passes import export_fp32
    from engines.runtimes.base import Artifact
    from engines.runtimes.ort import OrtRuntimeConfig
    from engines.runtimes.ort.session import open_session

    spec = resolve_model(args.model)
    spec = ModelSpec(**{**spec.to_dict(), "extra": {**spec.extra, SOURCE_FORMAT: "onnx"}})
    model = load_model(spec)
    workdir = Path(tempfile.mkdtemp(prefix="qbench-fidelity-"))
    path = export_fp32(model, workdir)  # the file both sides open
    inputs = model.example_inputs(args.batch_size)

    session = open_session(Artifact(path, format="onnx"), model, "cpu", args.threads, OrtRuntimeConfig())
    qbench_fn = session.bind(inputs)

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    direct = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {i.name: np.ascontiguousarray(inputs[i.name]) for i in direct.get_inputs()}
    names = [direct.get_outputs()[0].name]

    settings = MeasureSettings(warmup_reps=20, warmup_s=0.05, min_reps=20, min_time_s=args.seconds,
                               max_time_s=max(args.seconds * 4, 1.0), repeat=1)
    for _ in range(200):  # both warm before the first round
        qbench_fn()
        direct.run(names, feed)
    pooled: dict[str, list[int]] = {"qbench": [], "direct": []}
    per_round: list[float] = []
    for index in range(args.rounds):
        order = ["qbench", "direct"]
        random.Random(index).shuffle(order)
        medians = {}
        for side in order:
            if side == "qbench":
                got: list[int] = []
                measure_latency(qbench_fn, settings, keep_samples_ns=got)
            else:
                got = direct_loop(direct.run, names, feed, args.seconds, settings.min_reps)
            pooled[side].extend(got)
            medians[side] = statistics.median(got)
        per_round.append(medians["qbench"] / medians["direct"])

    q = np.asarray(pooled["qbench"]) / 1e6
    d = np.asarray(pooled["direct"]) / 1e6
    ratio, lo, hi = bootstrap_ratio_ci(q, d)  # median(q) / median(d)
    print(f"model {args.model}, batch {args.batch_size}, {args.threads} threads, {args.rounds} rounds × "
          f"{args.seconds}s each")
    print(f"{'':8} {'p50 ms':>9} {'samples':>8}")
    print(f"{'qbench':8} {np.median(q):9.4f} {len(q):8d}")
    print(f"{'direct':8} {np.median(d):9.4f} {len(d):8d}")
    print(f"qbench / direct p50: {statistics.median(per_round):.3f} (median of per-round ratios; rounds "
          f"{min(per_round):.3f}–{max(per_round):.3f}); pooled {ratio:.3f}, 95 % CI [{lo:.3f}, {hi:.3f}]")
    print("within 5 %" if abs(statistics.median(per_round) - 1) <= 0.05 else "OUTSIDE 5 %")


if __name__ == "__main__":
    main()
