"""This machine's roofline: measured peak compute and memory bandwidth, and what a result's figures
mean against them.

Measured once per machine (``measure`` runs in a child process: numpy's BLAS for fp32 GEMM
throughput, a large array copy for the bandwidth DRAM gives) and stored in the store's
``machine_profiles`` table. ``diagnose`` then places a variant on the roofline from an estimate of
its work (2 × parameters × tokens × batch FLOPs) and its weight bytes (its size on disk): a model
whose arithmetic intensity is above the ridge point is compute-bound (fewer weight bytes do not buy
time, int8 arithmetic can), below it memory-bound (weight compression can pay), and one far slower
than both bounds is overhead-bound (per-call dispatch, quantize/dequantize nodes dominate).

The analysis side is plain Python (the app reads profiles); only ``measure`` imports numpy.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from typing import Any

# A variant this many times slower than its roofline bound spends its time on something else than
# arithmetic or weight traffic (dispatch, small kernels, Q/DQ nodes).
OVERHEAD_FACTOR = 20.0


def measure(seconds: float = 1.0) -> dict[str, Any]:
    """Peak fp32 GEMM GFLOP/s and copy bandwidth (GB/s, read + write) of this machine, best of
    several short trials (the best is the least disturbed). Imports numpy: call in a child."""
    import numpy as np

    n = 1024
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b  # warm the BLAS pool
    best_flops = 0.0
    deadline = time.perf_counter() + seconds / 2
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        a @ b
        best_flops = max(best_flops, 2 * n**3 / (time.perf_counter() - t0))
    size = 64 * 2**20 // 4  # 64 MiB of float32: well beyond the caches
    src = np.ones(size, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best_bw = 0.0
    deadline = time.perf_counter() + seconds / 2
    while time.perf_counter() < deadline:
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best_bw = max(best_bw, 2 * src.nbytes / (time.perf_counter() - t0))
    return {"host": platform.node(), "peak_gflops": best_flops / 1e9, "bandwidth_gbs": best_bw / 1e9,
            "method": f"numpy {np.__version__}: fp32 GEMM {n}x{n}; copy of 64 MiB (read + write)",
            "machine": platform.machine(), "processor": platform.processor() or platform.machine()}


def measure_in_child(seconds: float = 1.0, timeout: float = 60.0) -> dict[str, Any]:
    """:func:`measure` in a fresh interpreter, so the caller (the CLI) never imports numpy."""
    out = subprocess.run([sys.executable, "-m", "engines.analysis.roofline", str(seconds)], capture_output=True,
                         text=True, timeout=timeout, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def stored(store: Any, host: str | None = None) -> dict[str, Any] | None:
    """The latest profile of ``host`` (default: this machine) in the store, or None."""
    from engines.store.profiles import machine_profile

    return machine_profile(store, host or platform.node())


def ensure(store: Any, remeasure: bool = False) -> dict[str, Any]:
    """This machine's stored profile, measured (and stored) first when there is none."""
    profile = None if remeasure else stored(store)
    if profile is None:
        from engines.store.profiles import save_machine_profile

        figures = measure_in_child()
        save_machine_profile(store, figures)
        profile = stored(store, figures["host"])
    return profile


def work(result: dict[str, Any], facts: dict[str, Any]) -> tuple[float | None, float | None]:
    """(FLOPs, weight bytes) of one call of a result: 2 × params × tokens × batch, and its size."""
    params = facts.get("params")
    flops = 2.0 * params * (facts.get("tokens") or 1) * result["batch_size"] if params else None
    size = result.get("size_mb")
    weight_bytes = size * 1e6 if size else (params * 4.0 if params else None)
    return flops, weight_bytes


def place(result: dict[str, Any], facts: dict[str, Any], profile: dict[str, Any] | None) -> dict[str, Any]:
    """Where a result sits against the roofline: intensity, bound, achieved fractions, regime."""
    flops, weight_bytes = work(result, facts)
    p50 = (result.get("latency_ms") or {}).get("p50")
    out: dict[str, Any] = {"flops": flops, "weight_bytes": weight_bytes}
    if not (profile and flops and weight_bytes and p50):
        return out
    peak, bandwidth = profile["peak_gflops"] * 1e9, profile["bandwidth_gbs"] * 1e9
    ridge = peak / bandwidth
    intensity = flops / weight_bytes
    bound_s = max(flops / peak, weight_bytes / bandwidth)
    seconds = p50 / 1000
    out.update({
        "intensity": intensity, "ridge": ridge, "bound_ms": bound_s * 1000,
        "compute_fraction": flops / seconds / peak, "bandwidth_fraction": weight_bytes / seconds / bandwidth,
        # Weights read faster than DRAM allows come from the CPU caches: bytes are not what limits.
        "regime": ("overhead-bound" if seconds > OVERHEAD_FACTOR * bound_s
                   else "cache-resident" if weight_bytes / seconds > bandwidth
                   else "compute-bound" if intensity >= ridge else "memory-bound"),
    })
    return out


def diagnose(variant: dict[str, Any], reference: dict[str, Any] | None, facts: dict[str, Any],
             profile: dict[str, Any] | None, speedup: float | None) -> str:
    """Why ``variant`` is as fast as it is against fp32, in words, from the measured figures."""
    where = place(variant, facts, profile)
    method = variant["method"]
    regime = where.get("regime")
    if regime is None:
        if profile is None:
            return "no roofline measured on this machine yet (`qbench insights` measures it)"
        return "not enough figures to place it on the roofline (parameters or size unknown)"
    facts_text = (f"~{where['intensity']:.1f} FLOP/byte against a ridge of {where['ridge']:.1f}; "
                  f"{where['compute_fraction'] * 100:.1f}% of fp32 peak compute, "
                  f"{where['bandwidth_fraction'] * 100:.1f}% of peak bandwidth")
    family = facts.get("family", "model")
    ref = place(reference, facts, profile) if reference is not None else {}
    slower = speedup is not None and speedup < 1
    from engines.methods.registry import Compute, find_method

    compute = spec.compute if (spec := find_method(method)) is not None else None  # what it computes in
    weight_only, int_compute = compute is Compute.WEIGHT_ONLY, compute is Compute.INT
    if regime == "overhead-bound":
        why = (f"this {family} is overhead-bound (p50 {variant['latency_ms']['p50']:.3f} ms against a roofline "
               f"bound of {where['bound_ms']:.4f} ms): dispatch and the quantize/dequantize steps cost more than "
               "the arithmetic they save")
    elif regime == "compute-bound" and weight_only:
        why = (f"{family}s at this sequence length are compute-bound: {method} cuts weight bytes, not arithmetic, "
               "and dequantizes its weights in each call")
    elif regime == "compute-bound":
        why = (f"compute-bound: int8 arithmetic is where {method} can win" if int_compute
               else "compute-bound: the arithmetic sets the time")
    elif weight_only and (regime == "cache-resident" or ref.get("regime") == "cache-resident"):
        weights = (reference or {}).get("size_mb") or 0
        why = (f"the fp32 weights ({weights:.1f} MB) are read at {ref.get('bandwidth_fraction', 0):.1f}× the DRAM "
               "bandwidth measured: they sit in the CPU caches, so fewer weight bytes buy little"
               + (f" and {method}'s per-call dequantization costs more" if slower else ""))
    elif regime == "cache-resident":
        why = ("cache-resident: the weights come from the CPU caches, so the arithmetic and the kernels' "
               "quality set the time" + ("; this one's int8 kernels do better" if not slower and int_compute
                                         else ""))
    elif slower and weight_only:
        why = (f"memory-bound, so fewer weight bytes should pay, but {variant['runtime']}'s {method} kernel spends "
               f"more unpacking and dequantizing than it saves in traffic: it moves its weights at "
               f"{where['bandwidth_fraction'] * 100:.0f}% of peak bandwidth against fp32's "
               f"{ref.get('bandwidth_fraction', 0) * 100:.0f}%")
    elif slower and method == "dynamic-int8":
        why = (f"dynamic int8 quantizes the activations on every call; at ~{where['intensity']:.1f} FLOP/byte "
               f"(below the ridge) this {family} has too little arithmetic for int8 kernels to repay that"
               + (" (convolutions become ConvInteger, which has no fast int8 path on most CPUs)"
                  if family == "cnn" else ""))
    elif slower and int_compute:
        why = ("the Q/DQ nodes around each op cost more than the int8 kernels save at this size; "
               "check which ops actually run in int8")
    elif weight_only:
        why = f"memory-bound: {method}'s fewer weight bytes are what pays here"
    elif int_compute:
        why = "memory-bound: fewer bytes (int8 weights) more than int8 arithmetic set the gain"
    else:
        why = "memory-bound"
    return f"{why} ({facts_text})"


if __name__ == "__main__":  # the child of measure_in_child
    print(json.dumps(measure(float(sys.argv[1]) if len(sys.argv) > 1 else 1.0)))
