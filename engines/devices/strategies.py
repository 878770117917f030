"""Per-device strategies: the recipes that suit a device, from what it is (light: no heavy import).

``--methods auto`` (and the app's "auto" choice) expands into these for each chosen device. On a
CPU the instruction set decides the int8 flavour, the way published int8 files come in avx2 /
avx512_vnni / arm64 builds and ONNX Runtime's quantization guide advises:

* x86 with VNNI (AVX512_VNNI or AVX_VNNI): ``vpdpbusd`` multiplies u8 × s8 into s32 without the
  int16 saturation of AVX2's ``vpmaddubsw``, so full-range weights are safe; dynamic int8 at full
  range, on the plain and on the fused graph (``fuse+dynamic-int8``), per-channel static int8 with
  unsigned (u8) activations (MLAS's U8S8 path; S8S8 ran slower than fp32), weight-only int8.
* x86 without VNNI: AVX2/AVX-512 int8 goes through int16 pairs that can saturate: dynamic int8
  with ``reduce_range`` (7-bit weights), static int8 with unsigned (u8) activations.
* arm64 with the dot-product extension (every Apple M-series core): ``sdot`` is s8 × s8, so
  signed activations; i8mm (M2 and later) speeds up the 4-bit block kernels.
* Apple GPU (MPS, MLX): float16 first, then weight-only int8/int4 (MLX), fp4 where MLX has it.
* Neural Engine: float16 activations with 8-bit or palettized weights (the ANE computes in fp16;
  compressed weights cut memory traffic, they do not make it compute in int8).
* CUDA: float16, weight-only int8 and int4.
"""

from __future__ import annotations

from dataclasses import dataclass

from engines.devices import DeviceInfo, cpu_features, detect_devices
from engines.devices.isa import CpuFeatures

AUTO = "auto"


@dataclass(frozen=True)
class Strategy:
    """One proposed recipe for a device and why it suits it."""

    spec: str  # a recipe spec as --methods takes it
    device: str
    why: str


def cpu_strategies(isa: CpuFeatures) -> list[Strategy]:
    found = ", ".join(isa.features) or "none read"
    out = [Strategy("fp32", "cpu", "the reference")]
    if isa.arch == "arm64":
        dot = "sdot (dot-product) present: signed s8 activations" if isa.has("dotprod") else \
            "no dot-product extension: NEON widening multiplies"
        out += [
            Strategy("dynamic-int8", "cpu", f"arm64 ({found}): {dot}"),
            Strategy("static-int8:activation_type=int8", "cpu", f"arm64: {dot}; per-channel QDQ"),
            Strategy("int4", "cpu", "i8mm present: 4-bit block kernels use smmla" if isa.has("i8mm")
                     else "4-bit blocks (no i8mm: dot-product kernels)"),
        ]
    elif isa.vnni:
        vnni = "AVX512_VNNI" if isa.has("avx512_vnni") else "AVX_VNNI"
        amx = "; AMX int8 tiles present (oneDNN/torch use them for int8 GEMMs)" if isa.has("amx_int8") else ""
        out += [
            Strategy("fuse", "cpu", "fused fp32 (ONNX Runtime's transformer optimizer offline): the reference "
                                    "for the fused int8 recipe; no faster where the runtime fuses online"),
            Strategy("dynamic-int8", "cpu", f"{vnni}: u8×s8 without int16 saturation, full-range weights{amx}"),
            Strategy("fuse+dynamic-int8", "cpu", f"{vnni}: fused graph, then dynamic int8: Attention → QAttention, "
                                                 f"EmbedLayerNorm → QEmbedLayerNorm (ONNX Runtime only)"),
            Strategy("static-int8:per_channel=true", "cpu",
                     f"{vnni}: per-channel static int8 with u8 activations (QDQ): MLAS's fast path is U8S8; "
                     f"s8 activations (S8S8) measured slower than fp32 here{amx}"),
            Strategy("weight-int8", "cpu", f"{vnni}: the quality-first choice: 8-bit weight blocks with int8 "
                                           "compute on ONNX Runtime (MatMulNBits accuracy level 4, ~1.1× fp32 on "
                                           "MiniLM); torch's weight-only int8 dequantizes in eager and runs slower "
                                           "than fp32 (0.45×): measured, not a speed-up; int4 left out: torch's CPU "
                                           "int4 runs at 0.17× fp32 and an encoder is compute-bound"),
        ]
        if isa.has("amx_bf16") or isa.has("avx512_bf16"):
            unit = "AMX bf16 tiles" if isa.has("amx_bf16") else "AVX512_BF16 (vdpbf16ps)"
            out.append(Strategy("bf16", "cpu", f"{unit}: torch with bf16 weights and activations through oneDNN "
                                               "(fp32's range, 8 mantissa bits; torch only)"))
    elif isa.has("avx2") or isa.has("avx512f"):
        simd = "AVX-512" if isa.has("avx512f") else "AVX2"
        out += [
            Strategy("dynamic-int8:reduce_range=true", "cpu",
                     f"{simd} without VNNI: vpmaddubsw sums pairs in int16 and can saturate: 7-bit weights"),
            Strategy("static-int8:activation_type=uint8:per_channel=true", "cpu",
                     f"{simd} without VNNI: u8 activations × s8 weights (U8S8)"),
            Strategy("weight-int8", "cpu", f"{simd}: weight-only int8 shrinks the file whatever the kernels"),
        ]
    else:
        out += [Strategy("weight-int8", "cpu", f"no int8 SIMD found ({isa.source}): weight-only int8 for size")]
    return out


# Recipes auto leaves out on a CPU, and why (measured: a user asking for them still gets them).
CPU_LEFT_OUT = {
    "int4": "torch's CPU int4 (torchao, one value per byte, dequantized in eager) ran at 0.17× fp32 and an "
            "encoder is compute-bound: 4-bit weights pay off on memory-bound decoding (llama.cpp, MLX)",
    "static-int8:activation_type=int8:per_channel=true": "s8 activations (MLAS S8S8) ran slower than fp32 on "
                                                           "x86; the u8 (U8S8) form is the candidate",
}
# Of those, the ones that are slow on one runtime only (the standardized sweeps keep them elsewhere).
CPU_LEFT_OUT_RUNTIMES = {"int4": ("torch",)}


def cpu_left_out(spec: str, runtime: str, device: str) -> str | None:
    """Why auto leaves ``spec`` on ``runtime`` out on this CPU (measured slower than fp32), or None."""
    if device != "cpu":
        return None
    key = spec if spec in CPU_LEFT_OUT else spec.split(":")[0]
    if key not in CPU_LEFT_OUT or runtime not in CPU_LEFT_OUT_RUNTIMES.get(key, (runtime,)):
        return None
    return CPU_LEFT_OUT[key]


def session_settings(cores: int | None = None) -> list[dict[str, object]]:
    """ONNX Runtime session settings auto screens on its best ONNX Runtime candidate (each against
    the default session: all threads spinning, sequential, every graph optimization)."""
    import os

    cores = cores or os.cpu_count() or 1
    out: list[dict[str, object]] = [
        {"spinning": False},  # a loaded machine: spinning threads steal the cores others wait for
        {"graph_level": "extended"},  # fusions without the NCHWc layout transforms (which suit CNNs)
        {"execution_mode": "parallel"},  # independent branches at once (wide graphs)
    ]
    if cores > 1:
        out.append({"threads": max(1, cores // 2)})  # fewer threads than cores: less contention
    return out


def device_strategies(device: DeviceInfo, isa: CpuFeatures | None = None) -> list[Strategy]:
    """The recipes that suit ``device`` (present or not: the planner refuses what cannot run)."""
    name = device.name
    if name == "cpu":
        return cpu_strategies(isa or cpu_features())
    if name == "mps":
        return [Strategy("fp32", name, "the reference"),
                Strategy("fp16", name, "MPS computes fp16 at twice the fp32 rate; bf16 needs macOS 14+")]
    if name == "gpu":
        return [Strategy("fp32", name, "the reference"),
                Strategy("fp16", name, "Metal: half the memory traffic"),
                Strategy("weight-int8", name, "MLX quantized matmul: int8 weights, fp16/fp32 activations"),
                Strategy("int4", name, "MLX quantized matmul, 4-bit groups of 64 (memory-bound decoding)"),
                Strategy("fp4", name, "MLX mxfp4 weights")]
    if name == "ane":
        return [Strategy("fp16", name, "the Neural Engine computes in fp16"),
                Strategy("weight-int8", name, "fp16 activations, 8-bit weights (less memory traffic, same compute)"),
                Strategy("palettize:nbits=6", name, "6-bit k-means palette: the ANE's compressed weight format"),
                Strategy("palettize", name, "4-bit k-means palette per 16 channels")]
    if name == "cuda":
        return [Strategy("fp32", name, "the reference"), Strategy("fp16", name, "tensor cores"),
                Strategy("weight-int8", name, "weight-only int8"), Strategy("int4", name, "4-bit blocks")]
    return [Strategy("fp32", name, "the reference")]


def expand_devices(devices: tuple[str, ...] | list[str], runtimes_devices: set[str] | None = None) -> list[str]:
    """``auto`` → every present device (that one of the chosen runtimes has a backend for)."""
    if AUTO not in devices:
        return list(devices)
    present = [d.name for d in detect_devices() if d.present
               and (runtimes_devices is None or d.name in runtimes_devices)]
    out = [d for d in devices if d != AUTO]
    return out + [d for d in present if d not in out]


def expand_methods(methods: tuple[str, ...] | list[str], devices: list[str]) -> tuple[list[str], list[Strategy]]:
    """``auto`` → the union, in order, of each device's strategies; (specs, the strategies used)."""
    if AUTO not in methods:
        return list(methods), []
    infos = {d.name: d for d in detect_devices()}
    chosen: list[Strategy] = []
    for name in devices:
        if name in infos:
            chosen += device_strategies(infos[name])
    specs: list[str] = []
    for m in methods:
        for spec in ([s.spec for s in chosen] if m == AUTO else [m]):
            if spec not in specs:
                specs.append(spec)
    return specs, chosen


def isa_notes(device: str, configs: list[dict]) -> list[str]:
    """What the CPU's instruction set means for an integer recipe: found, and used by these settings."""
    if device != "cpu" or not configs:
        return []
    isa = cpu_features()
    found = f"CPU int8 ISA: {isa.family} ({', '.join(isa.features) or isa.source})"
    used = []
    for config in configs:
        if not config:
            continue
        if config.get("reduce_range") is False and "reduce_range" in config:
            used.append("full-range weights " + ("(VNNI: no int16 saturation)" if isa.vnni else
                                                 "(no VNNI here: int16 pairs may saturate; reduce_range advised)"))
        elif config.get("reduce_range"):
            used.append("7-bit weights (reduce_range)" + ("; not needed with VNNI" if isa.vnni else ""))
        if config.get("activation_type") == "int8":
            used.append("s8 activations" + (" (VNNI/dot-product)" if isa.int8_dot else " (no int8 dot product found)"))
        elif config.get("activation_type") == "uint8":
            used.append("u8 activations (U8S8)")
    return [found + (f"; used: {', '.join(used)}" if used else "")]
