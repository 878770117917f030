"""QAT on ONNX Runtime: the learnt integers as MatMulNBits nodes against the QDQ graph of the same
weights (DequantizeLinear → MatMul) and against fp32, timed side by side in one process.

    uv run python bench/qat_export.py [--model digits-mlp] [--recipe qat-int4:epochs=1]
                                      [--batch-sizes 1,32] [--rounds 5] [--seconds 0.5]

The model is fine-tuned once (the recipe's QAT pass); its learnt integer weights and scales are
written both ways from the same fp32 export, and each graph is opened in ONNX Runtime on the CPU
with the same threads. Each variant's largest difference from the fine-tuned torch module's logits
is printed (MatMulNBits at accuracy level 0 computes in fp32, so it should agree to ~1e-5), then
all variants are timed in interleaved, shuffled rounds. Speedup = median(QDQ) / median(variant),
with a 95 % bootstrap interval; an interval containing 1.0 means no significant difference.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits-mlp")
    parser.add_argument("--recipe", default="qat-int4:epochs=1")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    from engines import catalog
    from engines.bench.measure import MeasureSettings, bootstrap_ratio_ci, measure_interleaved
    from engines.bench.worker import _context, source_artifact
    from engines.core.config import config_from_dict
    from engines.devices import physical_cores
    from engines.methods.recipe import parse_recipe
    from engines.models import load_model, resolve_model
    from engines.passes import get_pass
    from engines.passes.nbits_export import write_matmul_nbits_weights
    from engines.passes.onnx_passes import export_fp32, write_qdq_weights
    from engines.runtimes.ort.session import OnnxSession

    threads = args.threads or physical_cores()
    model = load_model(resolve_model(args.model))
    workdir = Path(tempfile.mkdtemp(prefix="qbench-qat-export-"))
    planned = catalog.plan_variant(parse_recipe(args.recipe), "onnxruntime", "cpu")
    step = planned.passes[0].to_dict()
    spec = get_pass(step["pass"])
    ctx = _context(model, workdir, "onnxruntime", "cpu", threads)
    tuned = spec.fn(ctx, source_artifact(model, workdir), config_from_dict(spec.config_class, step["config"]))
    fp32_path = export_fp32(model, workdir, tuned.payload)
    graphs = {"fp32 (fine-tuned)": fp32_path}
    for name, write, kwargs in (("QDQ", write_qdq_weights, {}),
                                ("MatMulNBits", write_matmul_nbits_weights, {}),
                                ("MatMulNBits fp32", write_matmul_nbits_weights, {"accuracy_level": 0})):
        graphs[name] = workdir / f"{name.replace(' ', '-')}.onnx"
        write(fp32_path, graphs[name], tuned.facts["qdq"], **kwargs)

    inputs = model.eval_inputs
    with torch.no_grad():
        reference = tuned.payload(*(torch.from_numpy(inputs[n]) for n in model.input_names)).numpy()
    sessions = {name: OnnxSession(path, "cpu", threads) for name, path in graphs.items()}
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    fns = {(name, bs): s.bind(model.example_inputs(bs)) for name, s in sessions.items() for bs in batch_sizes}
    settings = MeasureSettings(warmup_reps=3, warmup_s=0.1, min_reps=10, min_time_s=args.seconds,
                               max_time_s=max(args.seconds * 4, 2.0))
    samples = measure_interleaved(fns, settings, args.rounds)

    print(f"{args.model} {args.recipe} on ONNX Runtime CPU, {threads} threads, {args.rounds} interleaved rounds "
          f"of {args.seconds} s; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    header = f"{'graph':<18} {'bs':>3} {'p50 ms':>8} {'vs QDQ':>7}  {'95% CI':<14} {'max |diff|':>10} {'size KB':>8}"
    print(header)
    print("-" * len(header))
    for name, session in sessions.items():
        diff = float(np.abs(session.run(inputs) - reference).max())
        for bs in batch_sizes:
            ms = np.asarray(samples[(name, bs)]) / 1e6
            ratio, lo, hi = bootstrap_ratio_ci(np.asarray(samples[("QDQ", bs)]) / 1e6, ms)
            verdict = "  (no significant difference)" if lo <= 1.0 <= hi and name != "QDQ" else ""
            print(f"{name:<18} {bs:>3} {np.median(ms):8.3f} {ratio:6.2f}x  [{lo:.2f}, {hi:.2f}]  {diff:10.2e} "
                  f"{graphs[name].stat().st_size / 1024:8.0f}{verdict}")


if __name__ == "__main__":
    main()
