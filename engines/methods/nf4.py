"""bitsandbytes methods: 4-bit NormalFloat (NF4) and LLM.int8() weights, on the devices bitsandbytes runs on."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from engines.methods.configs import MethodConfig, help_text
from engines.methods.registry import Compute, register_method


class ComputeDtype(str, enum.Enum):
    FLOAT32 = "float32"
    BFLOAT16 = "bfloat16"


@register_method("nf4", compute=Compute.WEIGHT_ONLY, fallbacks=("int4", "weight-int8"),
                 title="NF4 (bitsandbytes)", bits=4, order=25,
                 description="4-bit NormalFloat weights in blocks (QLoRA's format) via bitsandbytes Linear4bit; "
                             "activations in the compute dtype.")
@dataclass(frozen=True)
class Nf4Config(MethodConfig):
    """bitsandbytes ``Linear4bit(quant_type="nf4")`` for every Linear layer."""

    block_size: int = field(default=64, metadata=help_text("Weights per absmax block: 64 or 128.", short="b{}"))
    double_quant: bool = field(default=False, metadata=help_text(
        "Quantize the block scales too (QLoRA's double quantization): ~0.4 bit/weight smaller.",
        short=("single-q", "double-q")))
    compute_dtype: ComputeDtype = field(default=ComputeDtype.FLOAT32, metadata=help_text(
        "dtype of the matmul after dequantizing the weights."))

    def __post_init__(self) -> None:
        if self.block_size not in (64, 128):
            raise ValueError("block_size must be 64 or 128")


@register_method("bnb-int8", compute=Compute.INT, fallbacks=("weight-int8", "dynamic-int8"),
                 title="int8 LLM.int8() (bitsandbytes)", bits=8, order=26,
                 description="bitsandbytes Linear8bitLt: int8 row-wise weights; outlier activation columns in "
                             "float above the threshold.")
@dataclass(frozen=True)
class BnbInt8Config(MethodConfig):
    """bitsandbytes ``Linear8bitLt`` (LLM.int8()) for every Linear layer."""

    threshold: float = field(default=0.0, metadata=help_text(
        "Outlier threshold: activation columns above it run in float (6.0 in LLM.int8(); 0: none).",
        short="t{}"))

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError("threshold must be ≥ 0")
