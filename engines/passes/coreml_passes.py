"""Core ML passes: conversion from torch (float32 on the CPU, float16 compute for ``ane`` and ``gpu``;
float16; W8A8) and ``coremltools.optimize`` weight
compression (int8 per channel, int4 per block, k-means palettization).

Each pass saves an ``.mlpackage`` and records its op histogram and how many ops carry compressed
weights (``constexpr_*``) or quantized activations (``quantize``/``dequantize``): the proof,
readable on Linux, that compression happened. Heavy imports happen inside the functions.
"""

from __future__ import annotations

from typing import Any

from engines.methods.floats import Fp16Config
from engines.methods.int4 import Int4Config
from engines.methods.int8 import StaticInt8Config, WeightInt8Config
from engines.methods.palettize import PaletteGranularity, PalettizeConfig
from engines.passes import Format, PassContext, register_pass
from engines.runtimes.base import Artifact

_COREML = ("coreml",)


def _artifact(mlmodel: Any, ctx: PassContext, name: str, notes: list[str]) -> Artifact:
    from engines.runtimes.coreml.convert import save

    path = ctx.workdir / f"model.{name}.mlpackage"
    figures = save(mlmodel, path)
    precision, batch = figures["coreml_precision"], figures["coreml_batch_input"]
    notes = notes + [
        f"{figures['coreml_compressed_ops']} of {figures['coreml_op_total']} ops compressed",
        f"program computes in {precision['compute']} (weights {precision['weights']}; read from the package's spec)",
        f"batch input {batch['kind']}: {', '.join(map(str, batch['batch_sizes']))}"]
    artifact = Artifact(path, notes=notes, format=Format.COREML.value, facts={"mlmodel": mlmodel})
    artifact.metrics.update(figures)
    return artifact


@register_pass("export-coreml", config=None, input=Format.TORCH, output=Format.COREML, runtimes=_COREML)
def export_coreml(ctx: PassContext, artifact: Artifact, config: None) -> Artifact:
    """coremltools.convert of the traced module: an ML program computing in float32 for the CPU, in
    float16 for the Neural Engine (the only precision it computes in) and the GPU."""
    from engines.runtimes.coreml.convert import convert, precision_for

    precision = precision_for(ctx.device)
    note = f"converted with coremltools ({precision} compute" + (
        f": {ctx.device} programs compute in float16)" if precision == "float16" else ")")
    mlmodel = convert(artifact.payload, ctx.model, precision, ctx.batch_sizes)
    return _artifact(mlmodel, ctx, "fp32" if precision == "float32" else "fp32-fp16compute", [note])


@register_pass("coreml-float16", config=Fp16Config, input=Format.TORCH, output=Format.COREML, runtimes=_COREML)
def coreml_float16(ctx: PassContext, artifact: Artifact, config: Fp16Config) -> Artifact:
    """coremltools.convert with compute_precision=FLOAT16 (Core ML's default; what the ANE runs)."""
    from engines.runtimes.coreml.convert import convert

    mlmodel = convert(artifact.payload, ctx.model, "float16", ctx.batch_sizes)
    return _artifact(mlmodel, ctx, "fp16", ["converted with coremltools (float16 weights and compute)"])


def _mlmodel(artifact: Artifact) -> Any:
    from engines.runtimes.coreml.convert import load

    return artifact.facts.get("mlmodel") or load(artifact.path)


@register_pass("coreml-weight-int8", config=WeightInt8Config, input=Format.COREML, output=Format.COREML,
               runtimes=_COREML)
def coreml_weight_int8(ctx: PassContext, artifact: Artifact, config: WeightInt8Config) -> Artifact:
    """linear_quantize_weights int8, one scale per output channel."""
    from engines.runtimes.coreml.convert import linear_quantize

    mlmodel = linear_quantize(_mlmodel(artifact), "int8", "per_channel", None, config.symmetric)
    return _artifact(mlmodel, ctx, "weight-int8", ["coremltools int8 weights, per channel (block_size not used)"])


@register_pass("coreml-int4", config=Int4Config, input=Format.COREML, output=Format.COREML, runtimes=_COREML)
def coreml_int4(ctx: PassContext, artifact: Artifact, config: Int4Config) -> Artifact:
    """linear_quantize_weights int4 per block of group_size input channels (iOS18/macOS15 ops)."""
    from engines.runtimes.coreml.convert import linear_quantize

    mlmodel = linear_quantize(_mlmodel(artifact), "int4", "per_block", config.group_size, config.symmetric)
    return _artifact(mlmodel, ctx, "int4", [f"coremltools int4 weights, blocks of {config.group_size}"])


@register_pass("coreml-palettize", config=PalettizeConfig, input=Format.COREML, output=Format.COREML,
               runtimes=_COREML)
def coreml_palettize(ctx: PassContext, artifact: Artifact, config: PalettizeConfig) -> Artifact:
    """palettize_weights k-means: nbits-bit indices into per-tensor or per-channel-group tables."""
    from engines.runtimes.coreml.convert import palettize

    grouped = config.granularity is PaletteGranularity.PER_GROUPED_CHANNEL
    mlmodel = palettize(_mlmodel(artifact), config.nbits, config.granularity.value, config.group_size)
    where = f"per {config.group_size} output channels" if grouped else "per tensor"
    return _artifact(mlmodel, ctx, f"palettize{config.nbits}", [f"coremltools k-means {config.nbits}-bit palette {where}"])


def _w8a8_refusal(config: StaticInt8Config) -> str | None:
    if config.calibration_method.value != "minmax":
        return "Core ML W8A8 calibrates with coremltools' LinearQuantizer observers (minmax) only"
    return None


@register_pass("coreml-w8a8", config=StaticInt8Config, input=Format.TORCH, output=Format.COREML, runtimes=_COREML,
               check=_w8a8_refusal)
def coreml_w8a8(ctx: PassContext, artifact: Artifact, config: StaticInt8Config) -> Artifact:
    """W8A8: coremltools.optimize.torch LinearQuantizer calibrated in torch (eval mode), then converted
    (float16 compute for the Neural Engine and the GPU)."""
    from engines.runtimes.coreml.convert import convert, precision_for, w8a8_module

    module = w8a8_module(artifact.payload, ctx.model, config.calibration_samples)
    mlmodel = convert(module, ctx.model, precision_for(ctx.device), ctx.batch_sizes)
    note = f"coremltools LinearQuantizer W8A8, calibrated on {config.calibration_samples} samples in torch (eval mode)"
    return _artifact(mlmodel, ctx, "w8a8", [note])
