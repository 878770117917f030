"""One typed, versioned config dataclass per quantization method.

Configs are stored as JSON in SQLite and edited by a form the TUI generates from the fields, so:
every field has a default and ``help`` metadata, choices are enums, ``__post_init__`` validates,
and :func:`config_to_dict` / :func:`config_from_dict` round-trip exactly.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


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


class ComputeType(str, enum.Enum):
    """What a weight-only kernel computes in (ONNX Runtime MatMulNBits ``accuracy_level``)."""

    INT8 = "int8"  # activations quantized on the fly: the fast CPU kernels (accuracy_level 4)
    FP32 = "fp32"  # weights dequantized to float: exact activations, slow on CPU (accuracy_level 1)


class TorchDynamicBackend(str, enum.Enum):
    """Which PyTorch library applies dynamic int8."""

    TORCH_AO = "torch.ao"  # quantize_dynamic: fbgemm/qnnpack kernels, fast in eager mode
    TORCHAO = "torchao"  # Int8DynamicActivationInt8Weight: built for torch.compile


@dataclass(frozen=True)
class MethodConfig:
    """Base of every method config. ``version`` changes when a field's meaning changes."""

    version: ClassVar[int] = 1

    def describe(self) -> str:
        """Short human text of the non-default settings, for tables."""
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                parts.append(f"{f.name}={_plain(value)}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Fp32Config(MethodConfig):
    """The float reference every other variant is compared with."""


@dataclass(frozen=True)
class Fp16Config(MethodConfig):
    """Cast weights and activations to float16 (a baseline, not a quantization)."""

    keep_io_types: bool = field(
        default=True, metadata=_help("Keep float32 model inputs/outputs (ONNX); cast inside the graph.")
    )


@dataclass(frozen=True)
class WeightInt8Config(MethodConfig):
    """int8 weights, float activations: smaller files, speed depends on the runtime's kernels."""

    block_size: int = field(
        default=32,
        metadata=_help("Weights per scale block (ONNX MatMulNBits); torch uses one scale per channel."),
    )
    symmetric: bool = field(default=True, metadata=_help("Symmetric (no zero point) weight ranges."))
    compute: ComputeType = field(
        default=ComputeType.INT8,
        metadata=_help("ONNX Runtime kernel compute type: int8 (fast) or fp32 (dequantize weights)."),
    )

    def __post_init__(self) -> None:
        _check_block(self.block_size, "block_size")


@dataclass(frozen=True)
class DynamicInt8Config(MethodConfig):
    """int8 weights; activation scales computed at run time from each input."""

    per_channel: bool = field(default=True, metadata=_help("One weight scale per output channel."))
    reduce_range: bool = field(
        default=False,
        metadata=_help("7-bit weights: avoids int16 overflow on x86 CPUs without VNNI."),
    )
    torch_backend: TorchDynamicBackend = field(
        default=TorchDynamicBackend.TORCH_AO,
        metadata=_help(
            "torch only: torch.ao quantize_dynamic (fast eager kernels; deprecated upstream) "
            "or torchao (eager path is slow on CPU; meant for torch.compile)."
        ),
    )


@dataclass(frozen=True)
class StaticInt8Config(MethodConfig):
    """W8A8: int8 weights and activations, activation ranges fixed by calibration data."""

    calibration_method: CalibrationMethod = field(
        default=CalibrationMethod.MINMAX,
        metadata=_help("How activation ranges are chosen (entropy/percentile: ONNX Runtime only)."),
    )
    calibration_samples: int = field(
        default=256, metadata=_help("Samples from the calibration split fed through the model.")
    )
    per_channel: bool = field(default=True, metadata=_help("One weight scale per output channel."))
    quant_format: QuantFormat = field(
        default=QuantFormat.QDQ, metadata=_help("ONNX graph layout of the quantized model.")
    )
    activation_type: ActivationType = field(
        default=ActivationType.UINT8, metadata=_help("Activation integer type (ONNX Runtime).")
    )
    compile: bool = field(
        default=False,
        metadata=_help(
            "torch: lower the PT2E graph with torch.compile to real int8 kernels "
            "(slow first call, needs a C++ compiler); off: eager Q/DQ simulation."
        ),
    )

    def __post_init__(self) -> None:
        if not 1 <= self.calibration_samples <= 100_000:
            raise ValueError("calibration_samples must be between 1 and 100000")


@dataclass(frozen=True)
class Int4Config(MethodConfig):
    """Block-wise weight-only int4 (ONNX Runtime MatMulNBits; torchao Intx on torch)."""

    group_size: int = field(default=32, metadata=_help("Weights sharing one scale: 32, 64 or 128."))
    symmetric: bool = field(default=True, metadata=_help("Symmetric (no zero point) weight ranges."))
    compute: ComputeType = field(
        default=ComputeType.INT8,
        metadata=_help("ONNX Runtime kernel compute type: int8 (fast) or fp32 (dequantize weights)."),
    )

    def __post_init__(self) -> None:
        _check_block(self.group_size, "group_size")


def _check_block(value: int, name: str) -> None:
    if value not in (16, 32, 64, 128, 256):
        raise ValueError(f"{name} must be one of 16, 32, 64, 128, 256 (got {value})")


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def config_to_dict(config: MethodConfig) -> dict[str, Any]:
    """Plain JSON-able dict, with the config's version."""
    data = {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
    data["version"] = config.version
    return data


def config_from_dict(cls: type[MethodConfig], data: dict[str, Any] | None) -> MethodConfig:
    """Build ``cls`` from a dict; unknown keys are an error (typos must not pass silently)."""
    data = dict(data or {})
    data.pop("version", None)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown setting(s) for {cls.__name__}: {', '.join(sorted(unknown))}")
    kwargs = {name: coerce_field(hints[name], value) for name, value in data.items()}
    return cls(**kwargs)


def coerce_field(annotation: Any, value: Any) -> Any:
    """Convert a JSON or text value to the field's declared type."""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            return annotation(value)
        except ValueError:
            choices = ", ".join(m.value for m in annotation)
            raise ValueError(f"{value!r} is not one of: {choices}") from None
    if annotation is bool:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{value!r} is not a boolean")
        return bool(value)
    if annotation is int:
        return int(value)
    if annotation is float:
        return float(value)
    return value


def field_specs(cls: type[MethodConfig]) -> list[dict[str, Any]]:
    """Description of each field for generated forms: name, type, default, help, choices."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        choices = [m.value for m in annotation] if isinstance(annotation, type) and issubclass(
            annotation, enum.Enum
        ) else None
        specs.append(
            {
                "name": f.name,
                "type": annotation,
                "default": _plain(f.default),
                "help": f.metadata.get("help", ""),
                "choices": choices,
            }
        )
    return specs
