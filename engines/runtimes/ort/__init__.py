"""ONNX Runtime on the CPU, its CUDA execution provider where onnxruntime-gpu is installed, and its
Core ML execution provider (devices ``gpu`` and ``ane``) on macOS (engines.runtimes.ort.providers)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from engines.core.config import help_text
from engines.core.formats import Format
from engines.runtimes import RuntimeConfig, RuntimeSpec
from engines.runtimes.ort.providers import host_refusal


class NBitsCompute(str, enum.Enum):
    """What MatMulNBits kernels compute in (the node's ``accuracy_level``)."""

    INT8 = "int8"  # activations quantized on the fly: the fast CPU kernels (accuracy_level 4)
    FP32 = "fp32"  # weights dequantized to float: exact activations, slow on CPU (accuracy_level 1)


class ExecutionMode(str, enum.Enum):
    """Whether independent branches of the graph run at once (``inter_op`` threads)."""

    SEQUENTIAL = "sequential"
    PARALLEL = "parallel"


class GraphLevel(str, enum.Enum):
    """ONNX Runtime's online graph optimization level (applied when the session opens)."""

    ALL = "all"  # ORT_ENABLE_ALL: layout optimizations too (the default)
    EXTENDED = "extended"  # fusions (Attention, Gelu, LayerNorm…) without layout changes
    BASIC = "basic"  # constant folding, redundant nodes
    DISABLED = "disabled"


@dataclass(frozen=True)
class OrtRuntimeConfig(RuntimeConfig):
    nbits_compute: NBitsCompute = field(
        default=NBitsCompute.INT8,
        metadata=help_text("Kernel compute type of block-quantized MatMuls (weight-int8, int4): int8 "
                           "(fast) or fp32 (dequantize weights)."),
    )
    spinning: bool = field(
        default=True,
        metadata=help_text("Intra-op threads spin between calls (ONNX Runtime's default): fastest on an idle "
                           "machine, costs a loaded one its cores.", short=("nospin", "spin")),
    )
    execution_mode: ExecutionMode = field(
        default=ExecutionMode.SEQUENTIAL,
        metadata=help_text("sequential (default) or parallel: independent graph branches at once.", short="{}"),
    )
    graph_level: GraphLevel = field(
        default=GraphLevel.ALL,
        metadata=help_text("Online graph optimization level: all (default), extended, basic, disabled.",
                           short="opt-{}"),
    )


SPEC = RuntimeSpec(
    name="onnxruntime", title="ONNX Runtime", formats=(Format.ONNX,), devices=("cpu", "cuda", "gpu", "ane"),
    package="onnxruntime", session="engines.runtimes.ort.session", config_class=OrtRuntimeConfig, order=20,
    refusal=host_refusal,
)
