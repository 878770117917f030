"""TFLite (LiteRT) passes: torch → ``.tflite`` with ``litert-torch``, int8 through its PT2E quantizer or
``ai-edge-quantizer`` recipes on the converted flatbuffer.

``export-tflite`` (float32); ``tflite-dynamic-int8`` (``ai-edge-quantizer``: int8 weights, activation
ranges at run time); ``tflite-static-int8`` (PT2E with calibration: int8 weights and activations, int8 input and
output tensors); ``tflite-weight-int8`` (``ai-edge-quantizer`` weight-only, per channel) and
``tflite-int4`` (4-bit weights in blocks of 32, 64 or 128, activations quantized at run time).
The graphs have a fixed batch of 1 (the shape a phone runs); the passes serve ``litert``, which
``qbench export`` plans for: no sweep runtime opens them yet.
Heavy imports (litert-torch takes ~7 s after torch) happen inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engines.methods.configs import CalibrationMethod
from engines.methods.int4 import Int4Algorithm, Int4Config
from engines.methods.int8 import DynamicInt8Config, StaticInt8Config, WeightInt8Config
from engines.passes import Format, PassContext, register_pass
from engines.runtimes.base import Artifact, UnsupportedVariant

_LITERT = ("litert",)
BLOCKS = (32, 64, 128)


def _quiet() -> None:
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _sample(ctx: PassContext) -> tuple[Any, ...]:
    import torch

    example = ctx.model.example_inputs(1)
    return tuple(torch.from_numpy(example[name]) for name in ctx.model.input_names)


def _module(ctx: PassContext, artifact: Artifact):
    if artifact.payload is None:
        raise UnsupportedVariant("TFLite conversion needs the model as a torch module (an ONNX file cannot be converted)")
    return artifact.payload


def _convert(ctx: PassContext, module, name: str, quant_config=None) -> Path:
    _quiet()
    import litert_torch

    litert_torch.config.show_progress = False
    path = ctx.workdir / f"model.{name}.tflite"
    try:
        edge = litert_torch.convert(module, _sample(ctx), quant_config=quant_config)
    except Exception as exc:  # noqa: BLE001 - an op litert-torch cannot lower is this variant's answer
        raise UnsupportedVariant(f"litert-torch cannot convert this model: {type(exc).__name__}: {str(exc)[:200]}") \
            from None
    edge.export(str(path))
    return path


def _artifact(path: Path, notes: list[str], quantization: str) -> Artifact:
    return Artifact(path, notes=notes, format=Format.TFLITE.value,
                    facts={"quantization": quantization, "batch": 1})


@register_pass("export-tflite", config=None, input=Format.TORCH, output=Format.TFLITE, runtimes=_LITERT)
def export_tflite(ctx: PassContext, artifact: Artifact, config: None) -> Artifact:
    """litert-torch: torch.export → LiteRT flatbuffer, float32, batch 1."""
    path = _convert(ctx, _module(ctx, artifact), "fp32")
    return _artifact(path, ["converted with litert-torch (float32, batch 1)"], "float32")


def _pt2e(ctx: PassContext, artifact: Artifact, dynamic: bool, per_channel: bool, rows: int) -> Any:
    import torch
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    module = _module(ctx, artifact)
    quantizer = PT2EQuantizer().set_global(
        get_symmetric_quantization_config(is_per_channel=per_channel, is_dynamic=dynamic))
    prepared = prepare_pt2e(torch.export.export(module, _sample(ctx)).module(), quantizer)
    with torch.no_grad():
        # Calibration (static) or a trace through the observers (dynamic): rows one at a time,
        # since the exported graph has the batch of its sample.
        for batch in ctx.model.calibration_batches(max(rows, 1), batch_size=1):
            prepared(*(torch.from_numpy(batch[n]) for n in ctx.model.input_names))
    converted = convert_pt2e(prepared, fold_quantize=False)
    return converted, QuantConfig(pt2e_quantizer=quantizer)


@register_pass("tflite-dynamic-int8", config=DynamicInt8Config, input=Format.TFLITE, output=Format.TFLITE,
               runtimes=_LITERT)
def tflite_dynamic_int8(ctx: PassContext, artifact: Artifact, config: DynamicInt8Config) -> Artifact:
    """int8 weights, activations quantized at run time (ai-edge-quantizer dynamic recipe on the flatbuffer)."""
    # litert-torch's PT2E dynamic path also quantizes embedding tables with a zero point, which
    # LiteRT's EMBEDDING_LOOKUP kernel refuses (MiniLM); the after-conversion recipe keeps them valid.
    granularity = "CHANNELWISE" if config.per_channel else "TENSORWISE"
    path = _aeq(ctx, artifact, "dynamic-int8", 8, granularity, dynamic=True)
    notes = [f"ai-edge-quantizer dynamic-range int8 ({'per-channel' if config.per_channel else 'per-tensor'} weights)"]
    if config.reduce_range:
        notes.append("reduce_range has no LiteRT equivalent: full int8 range used")
    return _artifact(path, notes, "dynamic-range int8 (int8 weights, float activations quantized at run time)")


@register_pass("tflite-static-int8", config=StaticInt8Config, input=Format.TORCH, output=Format.TFLITE,
               runtimes=_LITERT)
def tflite_static_int8(ctx: PassContext, artifact: Artifact, config: StaticInt8Config) -> Artifact:
    """Full int8 (weights, activations, int8 input / output) calibrated with litert-torch PT2E."""
    rows = min(config.calibration_samples, 128)
    module, quant = _pt2e(ctx, artifact, False, config.per_channel, rows)
    path = _convert(ctx, module, "static-int8", quant)
    notes = [f"litert-torch PT2E static int8, calibrated on {rows} rows (MinMax observers)"]
    if config.calibration_method is not CalibrationMethod.MINMAX:
        notes.append(f"calibration {config.calibration_method.value} is not offered by LiteRT's PT2E quantizer: "
                     "MinMax used")
    return _artifact(path, notes, "full int8 (int8 weights and activations, int8 input / output tensors)")


def _aeq(ctx: PassContext, artifact: Artifact, name: str, bits: int, granularity: str, dynamic: bool = False) -> Path:
    _quiet()
    from ai_edge_quantizer import qtyping, quantizer, recipe_manager

    manager = recipe_manager.RecipeManager()
    add = manager.add_dynamic_config if dynamic else manager.add_weight_only_config
    add(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=bits,
        granularity=qtyping.QuantGranularity(granularity))
    q = quantizer.Quantizer(str(artifact.path))
    q.load_quantization_recipe(manager.get_quantization_recipe())
    path = ctx.workdir / f"model.{name}.tflite"
    q.quantize(None).export_model(str(path), overwrite=True)
    if path.stat().st_size > 0.9 * artifact.path.stat().st_size:
        # the recipe matched no weight (it happens silently: weight-only blocks are not applied)
        raise UnsupportedVariant(f"ai-edge-quantizer left this model's weights float ({name})")
    return path


@register_pass("tflite-weight-int8", config=WeightInt8Config, input=Format.TFLITE, output=Format.TFLITE,
               runtimes=_LITERT)
def tflite_weight_int8(ctx: PassContext, artifact: Artifact, config: WeightInt8Config) -> Artifact:
    """int8 weights per channel, dequantized before float compute (ai-edge-quantizer weight-only)."""
    path = _aeq(ctx, artifact, "weight-int8", 8, "CHANNELWISE")
    return _artifact(path, ["ai-edge-quantizer weight-only int8, per channel (the block size has no TFLite "
                            "equivalent at 8 bits)"], "weight-only int8 (per channel)")


def _int4_refusal(config: Int4Config) -> str | None:
    if config.group_size not in BLOCKS:
        return f"ai-edge-quantizer quantizes 4-bit weights in blocks of 32, 64 or 128 (got {config.group_size})"
    if config.algorithm is not Int4Algorithm.RTN:
        return f"ai-edge-quantizer rounds to nearest; {config.algorithm.value} has no TFLite path"
    return None


@register_pass("tflite-int4", config=Int4Config, input=Format.TFLITE, output=Format.TFLITE, runtimes=_LITERT,
               check=_int4_refusal)
def tflite_int4(ctx: PassContext, artifact: Artifact, config: Int4Config) -> Artifact:
    """4-bit weights in blocks (ai-edge-quantizer, BLOCKWISE_<group>, activations quantized at run time)."""
    # ai-edge-quantizer 0.10 applies blocks only with its dynamic recipe (its weight-only recipe
    # leaves the weights float): activations are quantized on the fly, as ONNX Runtime's
    # MatMulNBits does with its int8 compute type.
    path = _aeq(ctx, artifact, "int4", 4, f"BLOCKWISE_{config.group_size}", dynamic=True)
    notes = [f"ai-edge-quantizer int4 weights in blocks of {config.group_size}, activations quantized at run time"]
    if not config.symmetric:
        notes.append("asymmetric ranges have no TFLite block-wise form: symmetric used")
    return _artifact(path, notes, f"int4 weights in blocks of {config.group_size} (dynamic-range activations)")
