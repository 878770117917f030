"""Float baselines: the fp32 reference and the fp16 cast."""

from __future__ import annotations

from dataclasses import dataclass, field

from engines.methods.configs import MethodConfig, help_text
from engines.methods.registry import Compute, register_method


@register_method("fp32", compute=Compute.FLOAT,
                 title="float32 (reference)", bits=32, is_reference=True, order=0,
                 description="The unmodified float model; every other variant is compared with it.")
@dataclass(frozen=True)
class Fp32Config(MethodConfig):
    """The float reference every other variant is compared with."""


@register_method("fp16", compute=Compute.FLOAT, fallbacks=("fp32",),
                 title="float16 cast", bits=16, order=1,
                 description="Weights and activations in float16: half the size, a baseline for the integer "
                             "methods.")
@dataclass(frozen=True)
class Fp16Config(MethodConfig):
    """Cast weights and activations to float16 (a baseline, not a quantization)."""

    keep_io_types: bool = field(
        default=True, metadata=help_text("Keep float32 model inputs/outputs (ONNX); cast inside the graph.",
                                         short=("float-io", "fp16-io")),
    )


@register_method("bf16", compute=Compute.FLOAT, fallbacks=("fp16", "fp32"),
                 title="bfloat16 cast", bits=16, order=2,
                 description="Weights and activations in bfloat16 (torch): fp32's range with 8 mantissa bits; "
                             "oneDNN runs it on AVX512_BF16 or AMX tiles where the CPU has them.")
@dataclass(frozen=True)
class Bf16Config(MethodConfig):
    """Cast weights and activations to bfloat16 (torch; ONNX Runtime's CPU MatMul has no bf16 kernel)."""
