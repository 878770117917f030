"""Harness overhead and each method's speedup over fp32 on this machine, side by side.

    uv run python bench/core_speedup.py [--model digits-mlp] [--rounds 5] [--seconds 0.3]

1. Harness overhead: a no-op timed through exactly the path variants use
   (``engines.bench.measure.measure_latency`` around a bound zero-argument call), reported per call
   and as a share of each variant's median latency.
2. Speedups: every method on both runtimes is quantized once, then all variants are measured
   in interleaved rounds (A/B/C…, shuffled each round) in this one process, so slow drift of a
   shared machine hits all of them alike. Speedup = median(fp32) / median(variant) on the same
   runtime and batch size, with a 95 % bootstrap interval over the pooled samples; an interval
   that contains 1.0 is reported as "no significant difference". Each runtime is measured in a
   process of its own (as the runner does): torch's OpenMP pool and ONNX Runtime's spinning
   threads would otherwise disturb each other's timings.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from engines import catalog
from engines.methods.recipe import parse_recipe
from engines.bench.measure import MeasureSettings, bootstrap_ratio_ci, measure_interleaved, measure_latency
from engines.bench.worker import open_recipe
from engines.devices import physical_cores
from engines.models import load_model, resolve_model
from engines.runtimes.base import UnsupportedVariant


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-mlp")
    parser.add_argument("--methods", default=",".join(catalog.METHODS))
    parser.add_argument("--runtimes", default="onnxruntime,torch")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.3, help="measuring time per variant per round")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: physical cores); on a "
                        "shared machine torch's spinning OpenMP pool can stall, so compare with 1")
    parser.add_argument("--no-overhead", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    runtimes = args.runtimes.split(",")
    if len(runtimes) > 1:  # one process per runtime, one after the other
        forwarded = sys.argv[1:]
        for index, runtime in enumerate(runtimes):
            extra = ["--runtimes", runtime] + ([] if index == 0 else ["--no-overhead"])
            subprocess.run([sys.executable, __file__, *forwarded, *extra], check=True)
        return
    threads = args.threads or physical_cores()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]

    # 1. the harness measured on a no-op
    settings = MeasureSettings(warmup_reps=1000, warmup_s=0.1, min_reps=100_000, min_time_s=1.0, max_time_s=2.0)
    noop = measure_latency(lambda: None, settings)
    overhead_us = noop.p50 * 1000
    if not args.no_overhead:
        print(f"harness overhead (no-op through measure_latency): p50 {overhead_us:.3f} µs, "
              f"mean {noop.mean * 1000:.3f} µs per call over {noop.samples:,} calls")

    # 2. variants
    model = load_model(resolve_model(args.model))
    workdir = Path(tempfile.mkdtemp(prefix="qbench-bench-"))
    fns, skipped = {}, {}
    for runtime in runtimes:
        for method in args.methods.split(","):
            reason = catalog.unsupported_reason(parse_recipe(method), runtime, "cpu")
            if reason:
                skipped[(method, runtime)] = reason
                continue
            folder = workdir / f"{method}-{runtime}"
            folder.mkdir()
            try:
                artifact, session = open_recipe(model, method, runtime, "cpu", threads, folder)
            except UnsupportedVariant as exc:
                skipped[(method, runtime)] = str(exc)
                continue
            for bs in batch_sizes:
                fns[(method, runtime, bs)] = session.bind(model.example_inputs(bs))
    per_round = MeasureSettings(warmup_reps=3, warmup_s=0.05, min_reps=10, min_time_s=args.seconds,
                                max_time_s=max(args.seconds * 4, 2.0))
    samples = measure_interleaved(fns, per_round, args.rounds)

    print(f"\nmodel {args.model}, {' '.join(runtimes)}, {threads} threads, {args.rounds} interleaved rounds "
          f"of {args.seconds} s each\n")
    header = f"{'method':<13} {'runtime':<12} {'bs':>3} {'p50 ms':>9} {'IQR/p50':>8} {'speedup':>8}  {'95% CI':<15} {'overhead':>8}"
    print(header)
    print("-" * len(header))
    for runtime in runtimes:
        for bs in batch_sizes:
            base = samples.get(("fp32", runtime, bs))
            for method in args.methods.split(","):
                key = (method, runtime, bs)
                if key not in samples:
                    if bs == batch_sizes[0]:
                        print(f"{method:<13} {runtime:<12} {'':>3} skipped: {skipped.get((method, runtime), '?')}")
                    continue
                ms = np.asarray(samples[key]) / 1e6
                p25, p50, p75 = np.percentile(ms, [25, 50, 75])
                if base is not None:
                    ratio, lo, hi = bootstrap_ratio_ci(np.asarray(base) / 1e6, ms)
                    verdict = "" if not lo <= 1.0 <= hi else "  no significant difference"
                    speed = f"{ratio:7.2f}x  [{lo:.2f}, {hi:.2f}]{verdict}"
                else:
                    speed = "   –"
                print(f"{method:<13} {runtime:<12} {bs:>3} {p50:9.4f} {(p75 - p25) / p50:8.1%} {speed:<44}"
                      f" {overhead_us / (p50 * 1000):7.2%}")


if __name__ == "__main__":
    main()
