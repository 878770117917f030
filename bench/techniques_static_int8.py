"""Static int8 recipes side by side: MiniLM (default) or EfficientNet-Lite0 (``--cnn``).

    uv run python bench/techniques_static_int8.py [--batch-sizes 1,8] [--rounds 5] [--seconds 0.5]
    uv run python bench/techniques_static_int8.py --cnn [--runtimes onnxruntime,torch] [--images 200]

``--cnn``: one ``qbench run`` of EfficientNet-Lite0 (its 200 held-out photo views by default) with
the CNN recipes (the default static int8, each calibration method, per-tensor weights, no bias
correction, the sensitivity-planned ``mixed`` on a static-int8 base, weight-only and QAT int8
beside), its rounds interleaved (``--repeat 3``); it prints each variant's agreement with fp32 on
all views, on the views fp32 is confident of (with their count), top-5 containment, output SQNR,
p50 and speedup over fp32 on the same runtime (docs/models.md has the figures).

It is ``bench/minilm_speedup.py`` (one process, every variant quantized once, interleaved shuffled
rounds, speedup = median(fp32)/median(variant) with a 95 % bootstrap interval, cosine and top-5
neighbours against fp32) with the static-int8 recipes, and a last column: the variant's speed over
dynamic int8's (median over median, same batch size). The CPU line says which int8 instructions
this machine has (``avx512_vnni``, ``amx_int8``): ONNX Runtime's MLAS uses VNNI for its u8s8 GEMMs.

The recipes: the default (SmoothQuant α 0.5 on the static matmuls' inputs, MinMax, per-channel,
QDQ, matmul outputs float and fused with their bias, GELU-fed matmuls dynamic), the same without
SmoothQuant, with a stronger α, with Percentile calibration, and with the GELU-fed matmuls static
too (the outlier case SmoothQuant alone does not cure: their outliers are per token, not per channel).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RECIPES = (
    "fp32", "dynamic-int8",
    "static-int8",
    "static-int8:smooth_quant_alpha=0",
    "static-int8:smooth_quant_alpha=0.75",
    "static-int8:calibration_method=percentile",
    "static-int8:gelu_inputs=int8",
)


def versus_dynamic(lines: list[str]) -> list[str]:
    """Append "× dynamic" to each row of minilm_speedup's table (p50 of dynamic-int8 / the row's p50)."""
    rows = {}
    for line in lines:
        parts = line.split()
        if len(parts) > 3 and parts[1].isdigit() and parts[2].replace(".", "", 1).isdigit():
            rows[(parts[0], parts[1])] = float(parts[2])
    out = []
    for line in lines:
        parts = line.split()
        key = (parts[0], parts[1]) if len(parts) > 3 else None
        dynamic = rows.get(("dynamic-int8", parts[1])) if key in rows else None
        if line.lstrip().startswith("method "):
            line += "   × dynamic"
        elif dynamic:
            line += f"   {dynamic / rows[key]:8.2f}x"
        out.append(line)
    return out


CNN_RECIPES = (
    "fp32", "weight-int8", "qat-int8",
    "static-int8",
    "static-int8:calibration_method=entropy",
    "static-int8:calibration_method=percentile",
    "static-int8:per_channel=false",
    "static-int8:bias_correction=false",
    "mixed:base=static-int8",
)


def cnn_table(payload: dict) -> list[str]:
    """One row per variant: agreement three ways, SQNR, p50 and speedup over fp32 (same runtime)."""
    rows = [r for r in payload["results"] if r["status"] == "ok"]
    fp32 = {r["runtime"]: r["latency_ms"]["p50"] for r in rows if r["method"] == "fp32"}
    header = (f"{'recipe':44} {'runtime':12} {'top1':>6} {'top1 conf':>9} {'n conf':>6} {'top5':>6} "
              f"{'SQNR dB':>8} {'p50 ms':>8} {'× fp32':>7}")
    out = [header]
    for r in rows:
        a, p50 = r.get("agreement") or {}, r["latency_ms"]["p50"]
        conf = a.get("top1_confident")
        out.append(f"{r['label'][:44]:44} {r['runtime']:12} {a.get('top1', float('nan')):6.3f} "
                   f"{(conf if conf is not None else float('nan')):9.3f} {a.get('confident_views', 0):6d} "
                   f"{a.get('top5', float('nan')):6.3f} {(a.get('sqnr_db') or float('inf')):8.1f} {p50:8.2f} "
                   f"{fp32.get(r['runtime'], float('nan')) / p50:7.2f}")
    failed = [f"{r['label']} ({r['runtime']}): {r['status']}: {(r.get('error') or '')[:120]}"
              for r in payload["results"] if r["status"] != "ok"]
    return out + failed


def run_cnn(args: list[str]) -> int:
    import json
    import tempfile

    def option(name: str, default: str) -> list[str]:
        return [] if name in args else [name, default]

    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "qbench_tui", "run", "--model", "efficientnet-lite0",
                   *option("--methods", ",".join(CNN_RECIPES)), *option("--runtimes", "onnxruntime"),
                   *option("--repeat", "3"), *option("--min-time", "0.5"), *option("--db", f"{folder}/q.db"),
                   *args, "--json", "-"]
        done = subprocess.run(command, check=False, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0 or not done.stdout.strip():
            print(done.stdout[-4000:])
            return done.returncode or 1
        payload = json.loads(done.stdout)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"efficientnet-lite0, run {payload.get('run_id')}; load average after the run: {load}")
    print("\n".join(cnn_table(payload)))
    return 0


if __name__ == "__main__":
    if "--cnn" in sys.argv:
        sys.exit(run_cnn([a for a in sys.argv[1:] if a != "--cnn"]))
    script = Path(__file__).with_name("minilm_speedup.py")
    args = sys.argv[1:]
    if "--methods" not in args:
        args += ["--methods", ",".join(RECIPES)]
    if "--runtimes" not in args:
        args += ["--runtimes", "onnxruntime"]
    done = subprocess.run([sys.executable, str(script), *args], check=False, stdout=subprocess.PIPE, text=True)
    print("\n".join(versus_dynamic(done.stdout.splitlines())))
    sys.exit(done.returncode)
