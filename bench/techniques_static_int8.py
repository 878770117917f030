"""MiniLM on ONNX Runtime: static int8 recipes (calibration method, per-channel, ``mixed`` keeping the
sensitive nodes in float) against dynamic int8 and fp32, side by side with intervals.

    PYTHONPATH=. python bench/techniques_static_int8.py [--batch-sizes 1,8] [--rounds 5] [--seconds 0.5]

It is ``bench/minilm_speedup.py`` (one process, every variant quantized once, interleaved shuffled
rounds, speedup = median(fp32)/median(variant) with a 95 % bootstrap interval, cosine and top-5
neighbours against fp32) with the static-int8 recipes. The CPU line printed first says
which int8 instructions this machine has (``avx512_vnni``, ``amx_int8``): ONNX Runtime's MLAS uses
VNNI for its u8s8 GEMMs; without it int8 gains little over fp32.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

RECIPES = (
    "fp32", "dynamic-int8",
    "static-int8",  # MinMax, per-channel, QDQ (the default)
    "static-int8:calibration_method=percentile",
    "static-int8:calibration_method=entropy",
    # mixed: layers ranked by weight SQNR (a layer-at-a-time ranking costs one quantize_static per node),
    # the fewest kept in float so that cosine to fp32 on the calibration sentences is ≥ 0.99
    "mixed:base=static-int8:budget=agreement:sensitivity=sqnr:calibration_samples=64",
    "mixed:base=static-int8:budget=agreement:sensitivity=sqnr:calibration_samples=64:calibration_method=percentile",
)

if __name__ == "__main__":
    script = Path(__file__).with_name("minilm_speedup.py")
    args = sys.argv[1:]
    if "--methods" not in args:
        args += ["--methods", ",".join(RECIPES)]
    if "--runtimes" not in args:
        args += ["--runtimes", "onnxruntime"]
    sys.exit(subprocess.call([sys.executable, str(script), *args]))
