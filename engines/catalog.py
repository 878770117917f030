"""The static catalog: every method and runtime, described by light metadata.

Listing, filtering and the support matrix need no heavy import (in the spirit of Olive's
``olive_config.json``); the module named in ``module`` is imported only in the child process
that runs a job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engines.devices import detect_devices, device_info, package_installed
from engines.methods import configs


@dataclass(frozen=True)
class RuntimeSpec:
    name: str
    title: str
    module: str  # engines module with the runtime's code, imported in the child only
    python_module: str  # the third-party package it needs
    devices: tuple[str, ...]
    extra: str | None = None  # pip extra that installs it, when optional

    def installed(self) -> bool:
        return package_installed(self.python_module)


@dataclass(frozen=True)
class MethodSpec:
    name: str
    title: str
    bits: int
    config_class: type[configs.MethodConfig]
    description: str
    needs_calibration: bool = False
    # runtime -> {device: None when supported, else the reason it is not}
    support: dict[str, dict[str, str | None]] = field(default_factory=dict)

    def default_config(self) -> configs.MethodConfig:
        return self.config_class()


RUNTIMES: dict[str, RuntimeSpec] = {
    spec.name: spec
    for spec in (
        RuntimeSpec("torch", "PyTorch (eager, torchao)", "engines.runtimes.torch_runtime", "torch",
                    ("cpu", "cuda", "mps")),
        RuntimeSpec("onnxruntime", "ONNX Runtime", "engines.runtimes.onnx_runtime", "onnxruntime",
                    ("cpu", "cuda")),
    )
}

_NO_MPS_INT = "torchao integer kernels do not run on MPS"
_ORT_CPU_ONLY = "ONNX Runtime's int8 quantized operators run on the CPU execution provider only"

METHODS: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "fp32", "float32 (reference)", 32, configs.Fp32Config,
            "The unmodified float model; every other variant is compared with it.",
            support={"torch": {"cpu": None, "cuda": None, "mps": None},
                     "onnxruntime": {"cpu": None, "cuda": None}},
        ),
        MethodSpec(
            "fp16", "float16 cast", 16, configs.Fp16Config,
            "Weights and activations in float16: half the size, a baseline for the integer methods.",
            support={"torch": {"cpu": None, "cuda": None, "mps": None},
                     "onnxruntime": {"cpu": None, "cuda": None}},
        ),
        MethodSpec(
            "weight-int8", "int8 weight-only", 8, configs.WeightInt8Config,
            "int8 weights dequantized on the fly; activations stay float (torchao Int8WeightOnly, "
            "ONNX Runtime MatMulNBits 8-bit).",
            support={"torch": {"cpu": None, "cuda": None, "mps": _NO_MPS_INT},
                     "onnxruntime": {"cpu": None, "cuda": "MatMulNBits 8-bit has no CUDA kernel"}},
        ),
        MethodSpec(
            "dynamic-int8", "int8 dynamic", 8, configs.DynamicInt8Config,
            "int8 weights, activations quantized per batch at run time (torchao, ORT quantize_dynamic).",
            support={"torch": {"cpu": None, "cuda": None, "mps": _NO_MPS_INT},
                     "onnxruntime": {"cpu": None, "cuda": _ORT_CPU_ONLY}},
        ),
        MethodSpec(
            "static-int8", "int8 static (W8A8)", 8, configs.StaticInt8Config,
            "int8 weights and activations with ranges from calibration data (torchao PT2E, "
            "ORT quantize_static).",
            needs_calibration=True,
            support={"torch": {"cpu": None, "cuda": "the x86 PT2E quantizer targets CPUs",
                               "mps": _NO_MPS_INT},
                     "onnxruntime": {"cpu": None, "cuda": _ORT_CPU_ONLY}},
        ),
        MethodSpec(
            "int4", "int4 weight-only (block-wise)", 4, configs.Int4Config,
            "4-bit weights in blocks with one scale each (ORT MatMulNBits, torchao IntxWeightOnly).",
            support={"torch": {"cpu": None, "cuda": None, "mps": _NO_MPS_INT},
                     "onnxruntime": {"cpu": None, "cuda": None}},
        ),
    )
}


def method_names() -> list[str]:
    return list(METHODS)


def runtime_names() -> list[str]:
    return list(RUNTIMES)


def unsupported_reason(method: str, runtime: str, device: str) -> str | None:
    """Why ``method`` cannot run on ``runtime`` × ``device`` on this machine, or None if it can."""
    spec = METHODS[method]
    rt = RUNTIMES[runtime]
    if device not in rt.devices:
        return f"{rt.title} has no {device} backend"
    info = device_info(device)
    if info is None or not info.present:
        return f"device {device} is not present: {info.detail if info else 'unknown device'}"
    if not rt.installed():
        hint = f" (pip install 'qbench[{rt.extra}]')" if rt.extra else ""
        return f"{rt.python_module} is not installed{hint}"
    by_device = spec.support.get(runtime)
    if by_device is None:
        return f"{spec.title} is not implemented for {rt.title}"
    if device not in by_device:
        return f"{spec.title} is not implemented for {rt.title} on {device}"
    return by_device[device]


def support_matrix(device: str = "cpu") -> dict[tuple[str, str], str | None]:
    """(method, runtime) -> reason or None, for one device."""
    return {(m, r): unsupported_reason(m, r, device) for m in METHODS for r in RUNTIMES}


__all__ = [
    "METHODS", "RUNTIMES", "MethodSpec", "RuntimeSpec", "detect_devices", "method_names",
    "runtime_names", "support_matrix", "unsupported_reason",
]
