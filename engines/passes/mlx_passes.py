"""MLX passes: torch → MLX conversion, then float16 and ``mlx.nn.quantize`` weight quantization.

The module is converted and quantized in memory, the way an MLX application does it; each pass
saves the weights (safetensors) so the artifact's size on disk can be measured. Heavy imports
happen inside the functions (the child process only).
"""

from __future__ import annotations

from typing import Any

from engines.methods.floats import Fp16Config
from engines.methods.int4 import Int4Config
from engines.methods.int8 import WeightInt8Config
from engines.methods.microscaling import Fp4Config
from engines.passes import Format, PassContext, register_pass
from engines.runtimes.base import Artifact

_MLX = ("mlx",)


def _groups_refusal(group: int, what: str) -> str | None:
    if group not in (32, 64, 128):
        return f"MLX quantizes {what} in groups of 32, 64 or 128 weights (got {group})"
    return None


def save_mlx(module: Any, ctx: PassContext, name: str, notes: list[str], **facts: Any) -> Artifact:
    """The MLX module as an artifact: in memory for the runtime, its weights on disk for the size."""
    path = ctx.workdir / f"model.mlx-{name}.safetensors"
    module.save_weights(str(path))
    return Artifact(path, notes=notes, payload=module, format=Format.MLX.value, facts=facts)


@register_pass("export-mlx", config=None, input=Format.TORCH, output=Format.MLX, runtimes=_MLX)
def export_mlx(ctx: PassContext, artifact: Artifact, config: None) -> Artifact:
    """Rebuild the torch module in MLX with the same weights (MLP/CNN stacks, tiny-lm, BERT encoders,
    mlx-lm causal LMs)."""
    from engines.runtimes.mlx.convert import to_mlx

    module, family = to_mlx(artifact.payload)
    return save_mlx(module, ctx, "fp32", [f"converted to MLX ({family})"])


@register_pass("mlx-float16", config=Fp16Config, input=Format.MLX, output=Format.MLX, runtimes=_MLX)
def mlx_float16(ctx: PassContext, artifact: Artifact, config: Fp16Config) -> Artifact:
    """Cast every parameter to float16 (inputs are cast when it runs)."""
    import mlx.core as mx

    module = artifact.payload
    module.set_dtype(mx.float16)
    return save_mlx(module, ctx, "fp16", [], half_inputs=True)


def _quantized(ctx: PassContext, artifact: Artifact, bits: int, group: int, name: str, mode: str = "affine",
               symmetric: bool = False) -> Artifact:
    from engines.runtimes.mlx.convert import quantize

    notes = quantize(artifact.payload, bits, group, mode)
    if symmetric and mode == "affine":
        notes.append("MLX's affine mode keeps a bias (zero point) per group: the symmetric setting does not apply")
    return save_mlx(artifact.payload, ctx, name, notes, **artifact.facts)


@register_pass("mlx-quantize-int8", config=WeightInt8Config, input=Format.MLX, output=Format.MLX, runtimes=_MLX,
               check=lambda c: _groups_refusal(c.block_size, "8-bit weights"))
def mlx_quantize_int8(ctx: PassContext, artifact: Artifact, config: WeightInt8Config) -> Artifact:
    """mlx.nn.quantize, 8 bits, one scale and bias per block_size weights."""
    return _quantized(ctx, artifact, 8, config.block_size, "weight-int8", symmetric=config.symmetric)


@register_pass("mlx-quantize-int4", config=Int4Config, input=Format.MLX, output=Format.MLX, runtimes=_MLX,
               check=lambda c: _groups_refusal(c.group_size, "4-bit weights"))
def mlx_quantize_int4(ctx: PassContext, artifact: Artifact, config: Int4Config) -> Artifact:
    """mlx.nn.quantize, 4 bits, one scale and bias per group_size weights."""
    return _quantized(ctx, artifact, 4, config.group_size, "int4", symmetric=config.symmetric)


@register_pass("mlx-quantize-fp4", config=Fp4Config, input=Format.MLX, output=Format.MLX, runtimes=_MLX)
def mlx_quantize_fp4(ctx: PassContext, artifact: Artifact, config: Fp4Config) -> Artifact:
    """mlx.nn.quantize in mxfp4 (32 per scale) or nvfp4 (16 per scale) mode."""
    import mlx.core as mx

    try:  # the modes arrived in MLX 0.29/0.30: an older install says so instead of failing
        mx.quantize(mx.zeros((1, 32)), mode=config.format.value)
    except (ValueError, TypeError) as exc:
        from engines.runtimes.base import UnsupportedVariant

        raise UnsupportedVariant(f"this MLX ({mx.__version__}) has no {config.format.value} mode: {exc}") from None
    group = 32 if config.format.value == "mxfp4" else 16
    return _quantized(ctx, artifact, 4, group, config.format.value, mode=config.format.value)
