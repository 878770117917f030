"""all-MiniLM-L6-v2 on this machine: each method's speedup over fp32 with its spread, the
cosine it keeps, and its size, measured side by side in one run.

    uv run python bench/minilm_speedup.py [--runtimes onnxruntime,torch] [--batch-sizes 1,8]
                                          [--rounds 5] [--seconds 0.5] [--seq-len 128]

Each runtime is measured in a process of its own, one after the other (torch's OpenMP pool and
ONNX Runtime's spinning threads would disturb each other). In that process the model is loaded
once and every method quantized once; each variant embeds the 100 sentences that ship with
qbench, and its embeddings are compared with that runtime's fp32 embeddings (cosine, and the
top-5 neighbours of every sentence). Then all variants are timed in interleaved rounds
(shuffled each round), so the slow drift of a shared machine hits all of them alike.
Speedup = median(fp32) / median(variant) on the same runtime and batch size, with a 95 %
bootstrap interval over the pooled samples; an interval that contains 1.0 is reported as "no
significant difference". The size is the artifact on disk over fp32's on the same runtime.

Published reference: int8 dynamic quantization of BERT-class encoders runs about 1.8-2.2x
faster than fp32 on x86 CPUs with VNNI/AMX, losing < 1 point of accuracy; CPUs with AVX2 only
(no int8 dot-product instructions) gain less.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from engines import catalog
from engines.methods.recipe import parse_recipe
from engines.bench.evaluate import cosine_rows, retrieval_agreement
from engines.bench.measure import MeasureSettings, bootstrap_ratio_ci, measure_interleaved
from engines.bench.worker import open_recipe
from engines.devices import physical_cores
from engines.models import load_model, resolve_model
from engines.models.base import iter_batches
from engines.runtimes.base import UnsupportedVariant

METHODS = "fp32,dynamic-int8,static-int8,weight-int8,int4"


def cpu_summary() -> str:
    model, flags = "?", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    int8 = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return f"{model} ({', '.join(int8) or 'no AVX2'})"


def embed(session, data: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([session.run(batch) for batch in iter_batches(data, 32)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--runtimes", default="onnxruntime,torch")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="measuring time per variant per round")
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="default: physical cores")
    args = parser.parse_args()
    runtimes = args.runtimes.split(",")
    if len(runtimes) > 1:  # one process per runtime, one after the other
        print(f"CPU: {cpu_summary()}; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for runtime in runtimes:
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--runtimes", runtime], check=True)
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        return
    (runtime,) = runtimes
    threads = args.threads or physical_cores()
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    methods = args.methods.split(",")
    if "fp32" not in methods:
        methods.insert(0, "fp32")

    model = load_model(resolve_model(args.model, {"seq_len": args.seq_len}))
    workdir = Path(tempfile.mkdtemp(prefix="qbench-minilm-"))
    fns, quality, sizes, skipped = {}, {}, {}, {}
    reference = None
    for method in methods:
        reason = catalog.unsupported_reason(parse_recipe(method), runtime, "cpu")
        if reason:
            skipped[method] = reason
            continue
        folder = workdir / method
        folder.mkdir()
        try:
            artifact, session = open_recipe(model, method, runtime, "cpu", threads, folder)
        except UnsupportedVariant as exc:
            skipped[method] = str(exc)
            continue
        out = embed(session, model.eval_inputs)
        if reference is None:  # fp32 comes first: the runtime's own float reference
            reference = out
        cos = cosine_rows(reference, out)
        top5 = retrieval_agreement(reference, out)["retrieval_top5_overlap"]
        quality[method] = (float(cos.mean()), float(cos.min()), top5)
        sizes[method] = artifact.size_bytes / 2**20
        for bs in batch_sizes:
            fns[(method, bs)] = session.bind(model.example_inputs(bs))

    per_round = MeasureSettings(warmup_reps=3, warmup_s=0.1, min_reps=10, min_time_s=args.seconds,
                                max_time_s=max(args.seconds * 4, 2.0))
    samples = measure_interleaved(fns, per_round, args.rounds)

    print(f"\n{args.model} on {runtime}: seq {args.seq_len}, {threads} threads, {args.rounds} interleaved "
          f"rounds of {args.seconds} s per variant")
    header = (f"{'method':<13} {'bs':>3} {'p50 ms':>9} {'IQR/p50':>8} {'speedup':>8}  {'95% CI':<14} "
              f"{'cosine':>7} {'min cos':>7} {'top5':>5} {'size MB':>8} {'size':>6}")
    print(header)
    print("-" * len(header))
    for method in methods:
        if method in skipped:
            print(f"{method:<13} skipped: {skipped[method]}")
            continue
        for bs in batch_sizes:
            ms = np.asarray(samples[(method, bs)]) / 1e6
            p25, p50, p75 = np.percentile(ms, [25, 50, 75])
            ratio, lo, hi = bootstrap_ratio_ci(np.asarray(samples[("fp32", bs)]) / 1e6, ms)
            verdict = "  (no significant difference)" if lo <= 1.0 <= hi and method != "fp32" else ""
            cos, cos_min, top5 = quality[method]
            print(f"{method:<13} {bs:>3} {p50:9.2f} {(p75 - p25) / p50:8.1%} {ratio:7.2f}x  "
                  f"[{lo:.2f}, {hi:.2f}]   {cos:7.4f} {cos_min:7.4f} {top5:5.2f} {sizes[method]:8.1f} "
                  f"{sizes[method] / sizes['fp32']:5.2f}x{verdict}")


if __name__ == "__main__":
    main()
