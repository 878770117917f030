"""The environment manifest stored with every run (read from package metadata: no imports)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

from engines.devices import cpu_model, detect_devices, physical_cores

PACKAGES = ("torch", "torchao", "onnxruntime", "onnx", "numpy", "transformers", "mlx", "coremltools")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def collect_environment(threads: int) -> dict[str, Any]:
    import psutil

    from engines import __version__

    return {
        "qbench": __version__,
        "python": sys.version.split()[0],
        "os": f"{platform.system()} {platform.release()}",
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "physical_cores": physical_cores(),
        "logical_cores": psutil.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "threads": threads,
        "packages": package_versions(),
        "devices": {d.name: {"present": d.present, "detail": d.detail} for d in detect_devices()},
    }
