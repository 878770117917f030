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


@dataclass(frozen=True)
class DeviceInfo:
    name: str  # the CLI name: cpu, cuda, mps, ane
    title: str
    present: bool
    detail: str  # model / memory when present, the reason when not


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


@cache
def detect_devices() -> tuple[DeviceInfo, ...]:
    import psutil

    cores = psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
    mem_gib = psutil.virtual_memory().total / 2**30
    devices = [DeviceInfo("cpu", "CPU", True, f"{cpu_model()}, {cores} cores, {mem_gib:.0f} GiB")]
    cuda, why = _cuda_present()
    devices.append(DeviceInfo("cuda", "NVIDIA GPU (CUDA)", cuda, why))
    if is_apple_silicon():
        devices.append(DeviceInfo("mps", "Apple GPU (Metal)", True, "Apple Silicon, unified memory"))
        devices.append(DeviceInfo("ane", "Apple Neural Engine", True, "via Core ML (CPU_AND_NE)"))
    else:
        devices.append(DeviceInfo("mps", "Apple GPU (Metal)", False, "needs macOS on Apple Silicon"))
        devices.append(DeviceInfo("ane", "Apple Neural Engine", False, "needs macOS on Apple Silicon"))
    return tuple(devices)


def device_names() -> list[str]:
    return [d.name for d in detect_devices()]


def device_info(name: str) -> DeviceInfo | None:
    return next((d for d in detect_devices() if d.name == name), None)


def package_installed(module: str) -> bool:
    """True when ``module`` can be imported, checked without importing it."""
    return importlib.util.find_spec(module) is not None


def physical_cores() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or psutil.cpu_count() or 1
