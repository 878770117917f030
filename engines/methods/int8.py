"""8-bit integer methods: weight-only, dynamic (activation scales at run time) and static (W8A8)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import ClassVar

from engines.methods.configs import (
    ActivationType,
    CalibrationMethod,
    MethodConfig,
    QuantFormat,
    check_block,
    help_text,
)
from engines.methods.registry import Compute, register_method


@register_method("weight-int8", compute=Compute.WEIGHT_ONLY, fallbacks=("dynamic-int8", "fp16"),
                 title="int8 weight-only", bits=8, order=10,
                 description="int8 weights dequantized on the fly; activations stay float (torchao "
                             "Int8WeightOnly, ONNX Runtime MatMulNBits 8-bit).")
@dataclass(frozen=True)
class WeightInt8Config(MethodConfig):
    """int8 weights, float activations: smaller files, speed depends on the runtime's kernels."""

    block_size: int = field(
        default=32,
        metadata=help_text("Weights per scale block (ONNX MatMulNBits); torch uses one scale per channel.",
                           short="b{}"),
    )
    symmetric: bool = field(default=True, metadata=help_text("Symmetric (no zero point) weight ranges.",
                                                             short=("asym", "sym")))
    quantize_embeddings: bool = field(default=True, metadata=help_text(
        "Quantize large embedding tables too (ORT GatherBlockQuantized, torchao on nn.Embedding); "
        "off keeps them float.", short=("float-emb", "q-emb")))

    version = 2  # 2: embedding tables are quantized by default

    def __post_init__(self) -> None:
        check_block(self.block_size, "block_size")


@register_method("dynamic-int8", compute=Compute.INT, fallbacks=("static-int8", "weight-int8"),
                 title="int8 dynamic", bits=8, order=11,
                 description="int8 weights, activations quantized per batch at run time (torchao, ORT "
                             "quantize_dynamic).")
@dataclass(frozen=True)
class DynamicInt8Config(MethodConfig):
    """int8 weights; activation scales computed at run time from each input."""

    version = 2  # 2: ONNX Runtime leaves convolutions float unless quantize_conv
    # Which torch library applies it is the torch runtime's choice (its results' ids are unchanged).
    moved: ClassVar[dict[str, tuple[str, str]]] = {"torch_backend": ("torch", "dynamic_int8")}

    @staticmethod
    def upgrade(data: dict, version: int) -> dict:
        """Version 1 quantized convolutions on ONNX Runtime: stored version-1 settings say so."""
        return {"quantize_conv": True, **data} if version < 2 else data

    per_channel: bool = field(default=True, metadata=help_text("One weight scale per output channel.",
                                                               short=("per-tensor", "per-channel")))
    reduce_range: bool = field(
        default=False,
        metadata=help_text("ONNX Runtime: 7-bit weights, avoiding int16 overflow on x86 CPUs without VNNI.",
                           short=("full-range", "reduce-range")),
    )
    quantize_conv: bool = field(
        default=False,
        metadata=help_text(
            "ONNX Runtime only: quantize convolutions too (ConvInteger, one activation scale per tensor at "
            "run time). Off quantizes MatMul/Gemm, as torch's dynamic quantization does: per-tensor run-time "
            "scales wreck depthwise convolutions (EfficientNet-Lite0: top-1 0.50 with, 1.00 without).",
            short=("linear-only", "q-conv")),
    )


class GeluInputs(str, enum.Enum):
    """What static int8 does with the matmuls that read a GELU's output (FFN down-projections)."""

    INT8 = "int8"  # static like the rest: one calibrated scale for an outlier-heavy tensor
    DYNAMIC = "dynamic"  # dynamic int8: a scale per input at run time
    FLOAT = "float"


@register_method("static-int8", compute=Compute.INT, fallbacks=("dynamic-int8",),
                 title="int8 static (W8A8)", bits=8, needs_calibration=True, order=12,
                 description="int8 weights and activations with ranges from calibration data (torchao PT2E, "
                             "ORT quantize_static).")
@dataclass(frozen=True)
class StaticInt8Config(MethodConfig):
    """W8A8: int8 weights and activations, activation ranges fixed by calibration data."""

    # 2: ONNX Runtime corrects convolution biases for weight rounding unless bias_correction is off
    # 3: torch PT2E corrects them too, and rounds weights to [-127, 127]
    # 4: ONNX Runtime leaves the matmuls fed by a GELU to dynamic int8 (gelu_inputs)
    # 5: ONNX Runtime smooths attention graphs' matmul inputs (smooth_quant_alpha), leaves their outputs float
    version = 5

    @staticmethod
    def upgrade(data: dict, version: int) -> dict:
        """Version 1 quantized convolutions without bias correction, version 2 corrected them on ONNX
        Runtime only, version 3 quantized GELU-fed matmuls statically: stored settings say so."""
        if version < 2:
            data = {"bias_correction": False, **data}
        if version < 3:
            data = {"torch_bias_correction": False, "torch_restricted_weights": False, **data}
        if version < 4:
            data = {"gelu_inputs": "int8", **data}
        return {"smooth_quant_alpha": 0.0, **data} if version < 5 else data

    calibration_method: CalibrationMethod = field(
        default=CalibrationMethod.MINMAX,
        metadata=help_text("How activation ranges are chosen (entropy/percentile: ONNX Runtime only)."),
    )
    calibration_samples: int = field(
        default=256, metadata=help_text("Samples from the calibration split fed through the model.",
                                        short="n{}"),
    )
    per_channel: bool = field(default=True, metadata=help_text("One weight scale per output channel.",
                                                               short=("per-tensor", "per-channel")))
    quant_format: QuantFormat = field(
        default=QuantFormat.QDQ, metadata=help_text("ONNX graph layout of the quantized model.")
    )
    activation_type: ActivationType = field(
        default=ActivationType.UINT8, metadata=help_text("Activation integer type (ONNX Runtime).", short="a-{}")
    )
    bias_correction: bool = field(
        default=True,
        metadata=help_text(
            "Shift each convolution's bias by the mean error its int8 weights add on the calibration data "
            "(empirical bias correction; ONNX Runtime, and torch PT2E unless torch_bias_correction is off). "
            "Depthwise filters with a few large taps round to a systematic offset that deep CNNs amplify "
            "(EfficientNet-Lite0 top-1 without / with: ONNX Runtime 0.83 / 0.89, torch 0.78 / 0.87).",
            short=("no-bias-corr", "bias-corr")),
    )
    torch_bias_correction: bool = field(
        default=True,
        metadata=help_text(
            "torch PT2E only: apply bias_correction there too, on the weights as convert_pt2e rounds them "
            "(results stored before version 3 were made without it).",
            short=("no-torch-bias-corr", "torch-bias-corr")),
    )
    torch_restricted_weights: bool = field(
        default=True,
        metadata=help_text(
            "torch PT2E only: int8 weights in [-127, 127], as ONNX Runtime's. The x86 quantizer's default "
            "[-128, 127] puts a channel's largest weight at 127.5 steps and clips it by half a step, a "
            "systematic error on the one large tap of a depthwise filter (EfficientNet-Lite0: 0.6 dB logit "
            "SQNR). Results stored before version 3 used [-128, 127].",
            short=("torch-w-128", "torch-w-127")),
    )

    gelu_inputs: GeluInputs = field(
        default=GeluInputs.DYNAMIC,
        metadata=help_text(
            "ONNX Runtime only: the matmuls that read a GELU's output (a transformer's FFN down-projection). "
            "Its few outlier channels stretch one per-tensor scale until the rest rounds away "
            "(all-MiniLM-L6-v2: cosine 0.937 static, 0.991 with these 6 left out); dynamic int8 gives "
            "them a scale per input at run time, float keeps them float.",
            short="gelu-{}"),
    )

    smooth_quant_alpha: float = field(
        default=0.5,
        metadata=help_text(
            "ONNX Runtime, attention graphs: SmoothQuant migration strength α (0 turns it off): each weight "
            "matmul's input channel is divided by max|X|^α / max|W|^(1-α) and its weight row multiplied by "
            "it (all-MiniLM-L6-v2 cosine 0.989 → 0.996).", short="sq{}"),
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.smooth_quant_alpha <= 1.0:
            raise ValueError("smooth_quant_alpha must be between 0 and 1")
        if not 1 <= self.calibration_samples <= 100_000:
            raise ValueError("calibration_samples must be between 1 and 100000")
