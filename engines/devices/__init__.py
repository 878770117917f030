"""Which compute devices this machine has, found without importing torch or any engine.

Each device is reported with the reason it is missing, so the UI and CLI can say *why* a
variant cannot run ("Core ML prediction needs macOS") rather than silently skipping it.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
from dataclasses import dataclass
from functools import cache

from engines.devices.isa import CpuFeatures, cpu_features  # noqa: F401 - re-exported


@dataclass(frozen=True)
class DeviceInfo:
    name: str  # the CLI name: cpu, cuda, mps, gpu, ane
    title: str
    present: bool
    detail: str  # model / memory when present, the reason when not
    kind: str = ""  # cpu, gpu or npu: what the per-device strategies key on
    features: tuple[str, ...] = ()  # the CPU's int8-relevant instruction sets (cpu only)
    memory_gb: float | None = None  # the memory the device computes from (unified on a Mac)


def is_apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def cpu_model() -> str:
    """A readable CPU name (the kernel's, not the generic ``platform.processor()``)."""
    if platform.system() == "Linux":
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                for line in fh:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
    if platform.system() == "Darwin":
        import subprocess

        try:
            out = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=2
            )
            if out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine()


def _cuda_present() -> tuple[bool, str]:
    # nvidia-smi or the kernel driver tells us without importing torch (which takes seconds).
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False, "CUDA_VISIBLE_DEVICES is empty"
    if os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi"):
        return True, "NVIDIA driver found"
    return False, "no NVIDIA driver (nvidia-smi not found)"


def _apple_silicon_reason() -> str | None:
    """None on macOS on Apple Silicon, else why the Apple devices are absent."""
    if is_apple_silicon():
        return None
    if platform.system() == "Darwin":
        return "needs Apple Silicon; this Mac has an Intel CPU"
    return f"needs macOS on Apple Silicon; this machine is {platform.system()} {platform.machine()}"


@cache
def detect_devices() -> tuple[DeviceInfo, ...]:
    """Every device qbench knows, present or with the reason it is not (light: no torch, no mlx)."""
    import psutil

    cores = psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
    mem_gib = psutil.virtual_memory().total / 2**30
    isa = cpu_features()
    amx = " + AMX" if isa.has("amx_int8") else ""
    isa_text = f"; int8 ISA {isa.family}{amx}" if isa.features else f"; ISA unknown ({isa.source})"
    devices = [DeviceInfo("cpu", "CPU", True, f"{cpu_model()}, {cores} cores, {mem_gib:.0f} GiB{isa_text}",
                          kind="cpu", features=isa.features, memory_gb=round(mem_gib, 1))]
    cuda, why = _cuda_present()
    devices.append(DeviceInfo("cuda", "NVIDIA GPU (CUDA)", cuda, why, kind="gpu"))
    apple = _apple_silicon_reason()
    # One pool of memory for CPU, GPU and Neural Engine on Apple Silicon: the same figure for each.
    unified = f"unified memory {mem_gib:.0f} GiB shared with the CPU"
    for name, title, via in (
        ("mps", "Apple GPU (Metal) for PyTorch", "torch on Metal (MPS)"),
        ("gpu", "Apple GPU (Metal) for MLX and Core ML",
         "MLX on Metal; Core ML CPU_AND_GPU; ONNX Runtime's Core ML EP (CPUAndGPU)"),
        ("ane", "Apple Neural Engine",
         "Core ML CPU_AND_NE (placement per op: see the compute plan); ONNX Runtime's Core ML EP (CPUAndNeuralEngine)"),
    ):
        kind = "npu" if name == "ane" else "gpu"
        if apple is None:
            devices.append(DeviceInfo(name, title, True, f"{via}; {unified}", kind=kind,
                                      memory_gb=round(mem_gib, 1)))
        else:
            devices.append(DeviceInfo(name, title, False, apple, kind=kind))
    return tuple(devices)


def device_names() -> list[str]:
    return [d.name for d in detect_devices()]


def device_info(name: str) -> DeviceInfo | None:
    return next((d for d in detect_devices() if d.name == name), None)


def package_installed(module: str) -> bool:
    """True when ``module`` can be imported, checked without importing it (``a.b``: False when ``a``
    itself is missing)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
