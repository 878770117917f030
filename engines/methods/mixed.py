"""Mixed precision from layer sensitivity: keep the fewest, most sensitive layers in float so that
the rest can be quantized within an accuracy budget."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from engines.methods.configs import CalibrationMethod, MethodConfig, check_block, help_text
from engines.methods.registry import Compute, register_method

PIN_SEPARATORS = r"[/;\s]+"  # commas separate recipes on the command line, so pins use '/'
PIN_PRECISIONS = ("fp32", "quant")


class MixedBase(str, enum.Enum):
    """What the layers that are not kept are quantized to."""

    DYNAMIC_INT8 = "dynamic-int8"  # int8 weights, activations at run time (torch.ao, ORT quantize_dynamic)
    STATIC_INT8 = "static-int8"  # W8A8 with calibrated activations (ONNX Runtime quantize_static)
    INT4 = "int4"  # block-wise int4 weights (torchao Intx, ORT MatMulNBits)


class KeepPrecision(str, enum.Enum):
    """The float precision the kept (most sensitive) layers are held in."""

    FP32 = "fp32"
    FP16 = "fp16"  # torch: the layer in half with its inputs cast; ONNX Runtime: the node in float16 between Casts
    BF16 = "bf16"  # torch and MLX (ONNX Runtime's CPU MatMul has no bfloat16 kernel)
    INT8 = "int8"  # MLX only, int4 base: the kept layers as 8-bit weights, the rest at 4 bits


class SensitivityMeasure(str, enum.Enum):
    """How layers are ranked before the search."""

    LAYER = "layer"  # quantize one layer at a time, compare the model's output with fp32
    SQNR = "sqnr"  # each layer's weight SQNR after quantization: no model run, cruder


class BudgetKind(str, enum.Enum):
    """Which figure the budget bounds."""

    AUTO = "auto"  # accuracy where the calibration rows have labels, agreement otherwise
    ACCURACY = "accuracy"
    AGREEMENT = "agreement"


def parse_pins(text: str) -> dict[str, str]:
    """``"fc1=fp32/blocks.0.qkv=quant"`` → ``{"fc1": "fp32", "blocks.0.qkv": "quant"}``."""
    pins: dict[str, str] = {}
    for part in re.split(PIN_SEPARATORS, text.strip()):
        if not part:
            continue
        layer, sep, precision = part.partition("=")
        if not sep or not layer or precision not in PIN_PRECISIONS:
            raise ValueError(f"pin {part!r}: expected LAYER=fp32 or LAYER=quant, joined by '/'")
        pins[layer] = precision
    return pins


@register_method("mixed", compute=Compute.MIXED, fallbacks=("static-int8", "dynamic-int8"),
                 title="mixed precision (sensitivity)", bits=8, needs_calibration=True, order=40,
                 description="Rank layers by sensitivity, keep the fewest most sensitive ones in float so the "
                             "accuracy budget holds, quantize the rest (int8 dynamic/static or int4).")
@dataclass(frozen=True)
class MixedConfig(MethodConfig):
    """The plan (layer → precision) is chosen from the calibration rows at quantization time and stored with
    the result (``metrics.mixed_plan``, ``metrics.sensitivity``)."""

    base: MixedBase = field(default=MixedBase.DYNAMIC_INT8,
                            metadata=help_text("What the layers that are not kept are quantized to."))
    keep: KeepPrecision = field(default=KeepPrecision.FP32, metadata=help_text(
        "Precision of the kept layers (pins to fp32 included): fp32, fp16, bf16 (torch, MLX) or int8 (MLX with "
        "the int4 base); the budget is met with the kept layers in this precision.", short="keep-{}"))
    budget: BudgetKind = field(default=BudgetKind.AUTO, metadata=help_text(
        "What the budget bounds: accuracy points (needs labels), agreement with fp32, or auto."))
    max_accuracy_drop: float = field(default=1.0, metadata=help_text(
        "Budget where labels exist: at most this many accuracy points below fp32 (calibration rows).",
        short="drop{}"))
    min_agreement: float = field(default=0.99, metadata=help_text(
        "Budget without labels: top-1 agreement (cosine for embeddings) with fp32 of at least this.",
        short="agree{}"))
    max_kept_fraction: float = field(default=0.5, metadata=help_text(
        "Most layers that may stay float; a budget needing more is reported as impossible.", short="keep{}"))
    sensitivity: SensitivityMeasure = field(default=SensitivityMeasure.LAYER,
                                            metadata=help_text("How layers are ranked."))
    pins: str = field(default="", metadata=help_text(
        "Layers pinned to a precision whatever the search finds: LAYER=fp32 or LAYER=quant, joined by '/'.",
        short="pins={}"))
    group_size: int = field(default=32, metadata=help_text("int4 base: weights sharing one scale.", short="g{}"))
    calibration_samples: int = field(default=128, metadata=help_text(
        "Calibration rows the sensitivity and the budget are measured on.", short="n{}"))
    calibration_method: CalibrationMethod = field(default=CalibrationMethod.MINMAX, metadata=help_text(
        "static-int8 base: how activation ranges are chosen (ONNX Runtime)."))

    def __post_init__(self) -> None:
        if not 0 <= self.max_accuracy_drop <= 100:
            raise ValueError("max_accuracy_drop is in accuracy points: 0 to 100")
        if not 0 <= self.min_agreement <= 1:
            raise ValueError("min_agreement must be between 0 and 1")
        if not 0 <= self.max_kept_fraction <= 1:
            raise ValueError("max_kept_fraction must be between 0 and 1")
        if not 1 <= self.calibration_samples <= 100_000:
            raise ValueError("calibration_samples must be between 1 and 100000")
        check_block(self.group_size, "group_size")
        parse_pins(self.pins)
