"""MiniLM on ONNX Runtime: static int8 recipes side by side with dynamic int8 and fp32.

    uv run python bench/techniques_static_int8.py [--batch-sizes 1,8] [--rounds 5] [--seconds 0.5]

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


if __name__ == "__main__":
    script = Path(__file__).with_name("minilm_speedup.py")
    args = sys.argv[1:]
    if "--methods" not in args:
        args += ["--methods", ",".join(RECIPES)]
    if "--runtimes" not in args:
        args += ["--runtimes", "onnxruntime"]
    done = subprocess.run([sys.executable, str(script), *args], check=False, stdout=subprocess.PIPE, text=True)
    print("\n".join(versus_dynamic(done.stdout.splitlines())))
    sys.exit(done.returncode)
