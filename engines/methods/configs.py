"""The base of every method config, the choices methods share, and the config codecs.

Method config classes live in their family's module (``floats``, ``int8``, ``int4``, …) and are
registered by name (:mod:`engines.methods.registry`). The codecs are re-exported here because
forms and the CLI parse method settings through this module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from engines.core.config import (  # noqa: F401 - the codecs, re-exported
    Config,
    coerce_field,
    config_from_dict,
    config_to_dict,
    field_specs,
    help_text,
    moved_message,
    plain,
)


@dataclass(frozen=True)
class MethodConfig(Config):
    """Base of every method config: what is done to the model, never how a runtime runs it."""


class CalibrationMethod(str, enum.Enum):
    """How static quantization picks activation ranges from calibration data."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class QuantFormat(str, enum.Enum):
    """ONNX layout of a statically quantized graph."""

    QDQ = "qdq"  # QuantizeLinear/DequantizeLinear pairs around float ops (portable; TensorRT, QNN)
    QOPERATOR = "qoperator"  # fused integer operators (QLinearConv, QLinearMatMul)


class ActivationType(str, enum.Enum):
    UINT8 = "uint8"
    INT8 = "int8"


def check_block(value: int, name: str) -> None:
    if value not in (16, 32, 64, 128, 256):
        raise ValueError(f"{name} must be one of 16, 32, 64, 128, 256 (got {value})")
