"""Microscaling float formats for weights: 4-bit floats sharing one power-of-two (MX) or fp8 (NV) scale."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from engines.methods.configs import MethodConfig, help_text
from engines.methods.registry import Compute, register_method


class Fp4Format(str, enum.Enum):
    MXFP4 = "mxfp4"  # OCP microscaling: E2M1 values, one E8M0 scale per 32 weights
    NVFP4 = "nvfp4"  # NVIDIA: E2M1 values, one FP8 (E4M3) scale per 16 weights


@register_method("fp4", compute=Compute.WEIGHT_ONLY, fallbacks=("int4", "weight-int8"),
                 title="fp4 weight-only (microscaling)", bits=4, order=22,
                 description="4-bit float weights (E2M1) in small blocks with a shared scale: MLX mxfp4 / nvfp4.")
@dataclass(frozen=True)
class Fp4Config(MethodConfig):
    """Weight-only 4-bit floats with block scales (the block size is fixed by the format)."""

    format: Fp4Format = field(default=Fp4Format.MXFP4,
                              metadata=help_text("mxfp4: 32 weights per power-of-two scale; nvfp4: 16 per fp8 scale."))
