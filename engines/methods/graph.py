"""Graph methods: rewrites that keep the model's numbers (float) and change how its graph computes them.

``fuse`` is ONNX Runtime's transformer optimizer: Attention, SkipLayerNormalization,
EmbedLayerNormalization and BiasGelu/FastGelu fused operators, after its offline graph
optimization level. It chains before any ONNX quantization (``fuse+dynamic-int8``: the fused
Attention becomes QAttention), the way Optimum's O1–O3 and Olive's transformer optimization do.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from engines.methods.configs import MethodConfig, help_text
from engines.methods.registry import Compute, register_method


class FuseModelType(str, enum.Enum):
    """Which of ONNX Runtime's optimizer classes looks for fusions (``model_type``)."""

    AUTO = "auto"  # the Hugging Face config's model type where the optimizer knows it, else bert
    BERT = "bert"
    GPT2 = "gpt2"
    VIT = "vit"
    SWIN = "swin"
    CLIP = "clip"


FUSE_OPT_LEVELS = (0, 1, 2, 99)


@register_method("fuse", compute=Compute.FLOAT,
                 title="graph fusion (ONNX Runtime)", bits=32, order=5,
                 description="ONNX Runtime's transformer optimizer: Attention, SkipLayerNorm, EmbedLayerNorm, "
                             "BiasGelu fused operators, offline; chains before int8 (fuse+dynamic-int8).")
@dataclass(frozen=True)
class FuseConfig(MethodConfig):
    """Fuse transformer subgraphs into ONNX Runtime's contrib operators (same numbers, fewer nodes)."""

    model_type: FuseModelType = field(
        default=FuseModelType.AUTO,
        metadata=help_text("Optimizer class (onnxruntime.transformers.optimizer model_type); auto reads the "
                           "model's config."))
    opt_level: int = field(
        default=1,
        metadata=help_text("ONNX Runtime graph optimization level applied offline before the fusions "
                           "(0: fusions only, 1: basic, 2: extended, 99: all; 2 and 99 are CPU-specific).",
                           short="O{}"))
    gelu_approximation: bool = field(
        default=False,
        metadata=help_text("Replace Gelu by the tanh approximation (FastGelu): faster, not bit-identical.",
                           short=("erf-gelu", "fast-gelu")))

    def __post_init__(self) -> None:
        if self.opt_level not in FUSE_OPT_LEVELS:
            raise ValueError(f"opt_level must be one of {', '.join(map(str, FUSE_OPT_LEVELS))} (got {self.opt_level})")
