"""4-bit weight-only methods: block-wise (group-wise) int4."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from engines.methods.configs import MethodConfig, check_block, help_text
from engines.methods.registry import Compute, register_method


class Int4Algorithm(str, enum.Enum):
    """How the 4-bit values and scales are chosen (no calibration data for either)."""

    RTN = "rtn"  # round to nearest within each block's range
    HQQ = "hqq"  # half-quadratic quantization: scales (and zero points) optimised against the weights


@register_method("int4", compute=Compute.WEIGHT_ONLY, fallbacks=("weight-int8", "dynamic-int8"),
                 title="int4 weight-only (block-wise)", bits=4, order=20,
                 description="4-bit weights in blocks with one scale each (ORT MatMulNBits, torchao "
                             "IntxWeightOnly).")
@dataclass(frozen=True)
class Int4Config(MethodConfig):
    """Block-wise weight-only int4 (ONNX Runtime MatMulNBits; torchao Intx on torch)."""

    # 64 as MLX's default: between llama.cpp's 32 (more scales, larger) and ORT's 128 (smaller).
    group_size: int = field(default=64, metadata=help_text("Weights sharing one scale: 32, 64 or 128.",
                                                           short="g{}"))
    symmetric: bool = field(default=True, metadata=help_text("Symmetric (no zero point) weight ranges.",
                                                             short=("asym", "sym")))
    quantize_embeddings: bool = field(default=True, metadata=help_text(
        "Quantize large embedding tables too (ORT GatherBlockQuantized, torchao on nn.Embedding); "
        "off keeps them float.", short=("float-emb", "q-emb")))
    algorithm: Int4Algorithm = field(default=Int4Algorithm.RTN, metadata=help_text(
        "rtn: round to nearest; hqq: half-quadratic quantization (ONNX Runtime's HQQ quantizer, torchao's "
        "scale-only HQQ); embedding tables stay on round to nearest."))

    version = 2  # 2: quantize_embeddings (on by default, as ONNX Runtime already did; torch now too)

    def __post_init__(self) -> None:
        check_block(self.group_size, "group_size")
