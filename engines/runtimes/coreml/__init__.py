"""Core ML (Apple): the CPU, the GPU and the Neural Engine through compute units, macOS only.

Devices map to compute units: ``cpu`` → CPU_ONLY, ``gpu`` → CPU_AND_GPU, ``ane`` → CPU_AND_NE
(Core ML still places each op itself; the compute plan says where each went). Programs for the
Neural Engine (and by default the GPU) compute in float16, with the sweep's batch sizes enumerated.
On Linux, or on a machine without the device, the passes still convert and compress, and the
session refuses with the reason, so the result records the package's size, op counts, compute
precision and batch shapes (read back from its spec).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from engines.core.config import help_text
from engines.core.formats import Format
from engines.runtimes import RuntimeConfig, RuntimeSpec


class ComputePlan(str, enum.Enum):
    RECORD = "record"  # read MLComputePlan once at open: per-op device and estimated cost
    SKIP = "skip"


@dataclass(frozen=True)
class CoremlRuntimeConfig(RuntimeConfig):
    compute_plan: ComputePlan = field(
        default=ComputePlan.RECORD,
        metadata=help_text("Record the compute plan (which device each op prefers, weighted by its cost; "
                           "macOS 14.4+)."),
    )


SPEC = RuntimeSpec(
    name="coreml", title="Core ML", formats=(Format.COREML,), devices=("cpu", "gpu", "ane"), package="coremltools",
    session="engines.runtimes.coreml.session", config_class=CoremlRuntimeConfig, extra="coreml",
    order=40,
    builds_without_device=True,  # the program for the ANE is converted and checked anywhere
)


def host_limit() -> str | None:
    """What Core ML cannot do on this machine (light: no coremltools import), or None on macOS."""
    import platform

    if platform.system() == "Darwin":
        return None
    return "converts and compresses only here (prediction needs macOS): results are `unsupported` with size and ops"
