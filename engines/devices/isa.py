"""The CPU's int8-relevant instruction sets, read from ``/proc/cpuinfo`` or ``sysctl`` (no heavy import).

What matters for integer inference on a CPU:

* x86: AVX2 (256-bit integer SIMD; int8 dot products need ``vpmaddubsw``, which saturates at int16,
  hence ONNX Runtime's and fbgemm's *reduce_range* advice on CPUs without VNNI), AVX-512 (512-bit),
  VNNI (``vpdpbusd``: u8 × s8 → s32 in one instruction, no int16 saturation; AVX512_VNNI or the
  256-bit AVX_VNNI of Alder Lake and later) and AMX (tile matrix multiply, int8 and bf16).
* arm64: NEON (always), the dot-product extension (``sdot``/``udot``: s8 × s8 → s32; every Apple
  M-series core) and i8mm (``smmla``: 8-bit matrix multiply; Apple M2 and later), bf16 and fp16.

The parsers take the text so that tests can feed them real files from other machines.
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from functools import cache

# /proc/cpuinfo flag -> qbench's name, x86 (only the flags that change which int8 kernels run)
_X86_FLAGS = {
    "avx2": "avx2", "fma": "fma", "f16c": "f16c",
    "avx512f": "avx512f", "avx512bw": "avx512bw", "avx512vl": "avx512vl",
    "avx512_vnni": "avx512_vnni", "avx_vnni": "avx_vnni", "avx512_bf16": "avx512_bf16",
    "avx512_fp16": "avx512_fp16", "amx_tile": "amx_tile", "amx_int8": "amx_int8", "amx_bf16": "amx_bf16",
}
# /proc/cpuinfo "Features" on arm64 Linux -> qbench's name
_ARM_FLAGS = {"asimd": "neon", "asimddp": "dotprod", "i8mm": "i8mm", "bf16": "bf16", "asimdhp": "fp16",
              "sve": "sve", "sve2": "sve2", "sme": "sme"}
# sysctl hw.optional.* on macOS -> qbench's name (Apple Silicon, and Intel Macs' AVX flags)
_SYSCTL_FLAGS = {
    "hw.optional.neon": "neon", "hw.optional.arm.FEAT_DotProd": "dotprod", "hw.optional.arm.FEAT_I8MM": "i8mm",
    "hw.optional.arm.FEAT_BF16": "bf16", "hw.optional.arm.FEAT_FP16": "fp16", "hw.optional.arm.FEAT_SME": "sme",
    "hw.optional.avx2_0": "avx2", "hw.optional.avx512f": "avx512f", "hw.optional.avx512bw": "avx512bw",
    "hw.optional.avx512vl": "avx512vl", "hw.optional.avx512vnni": "avx512_vnni",
}
ORDER = ("neon", "dotprod", "i8mm", "fp16", "bf16", "sve", "sve2", "sme", "fma", "f16c", "avx2", "avx_vnni",
         "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8",
         "amx_bf16")


@dataclass(frozen=True)
class CpuFeatures:
    """What the CPU offers integer inference, and where that was read."""

    arch: str  # "x86_64" or "arm64"
    features: tuple[str, ...]
    source: str  # "/proc/cpuinfo", "sysctl", or why nothing could be read

    def has(self, name: str) -> bool:
        return name in self.features

    @property
    def vnni(self) -> bool:
        """A single-instruction u8×s8 dot product (no int16 saturation): full-range int8 is safe."""
        return self.has("avx512_vnni") or self.has("avx_vnni")

    @property
    def int8_dot(self) -> bool:
        """Some int8 dot-product instruction: VNNI on x86, sdot/udot on arm64."""
        return self.vnni or self.has("dotprod") or self.has("amx_int8")

    @property
    def family(self) -> str:
        """The flavour published int8 files come in (avx2 / avx512 / avx512_vnni / arm64)."""
        if self.arch == "arm64":
            return "arm64"
        if self.vnni and self.has("avx512f"):
            return "avx512_vnni"
        if self.vnni:
            return "avx2_vnni"
        if self.has("avx512f"):
            return "avx512"
        return "avx2" if self.has("avx2") else "x86"


def _ordered(names: set[str]) -> tuple[str, ...]:
    return tuple(sorted(names, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)))


def normal_arch(machine: str) -> str:
    machine = machine.lower()
    return "arm64" if machine in ("arm64", "aarch64") else "x86_64" if machine in ("x86_64", "amd64") else machine


def parse_cpuinfo(text: str, machine: str) -> tuple[str, ...]:
    """The int8-relevant features in a Linux ``/proc/cpuinfo`` (first processor's flags)."""
    arch = normal_arch(machine)
    table = _ARM_FLAGS if arch == "arm64" else _X86_FLAGS
    key = "features" if arch == "arm64" else "flags"
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == key:
            return _ordered({table[f] for f in value.split() if f in table})
    return ()


def parse_sysctl(text: str) -> tuple[str, ...]:
    """The int8-relevant features in ``sysctl hw.optional`` output (``name: value`` lines)."""
    found = set()
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and value.strip() == "1" and name.strip() in _SYSCTL_FLAGS:
            found.add(_SYSCTL_FLAGS[name.strip()])
    return _ordered(found)


@cache
def cpu_features() -> CpuFeatures:
    """This machine's CPU features (cached: they do not change while qbench runs)."""
    arch = normal_arch(platform.machine())
    system = platform.system()
    if system == "Linux":
        try:
            with open("/proc/cpuinfo", encoding="utf-8") as fh:
                return CpuFeatures(arch, parse_cpuinfo(fh.read(), arch), "/proc/cpuinfo")
        except OSError as exc:
            return CpuFeatures(arch, (), f"/proc/cpuinfo unreadable: {exc}")
    if system == "Darwin":
        try:
            out = subprocess.run(["sysctl", "hw.optional"], capture_output=True, text=True, timeout=2, check=False)
            return CpuFeatures(arch, parse_sysctl(out.stdout), "sysctl hw.optional")
        except (OSError, subprocess.SubprocessError) as exc:
            return CpuFeatures(arch, (), f"sysctl failed: {exc}")
    return CpuFeatures(arch, (), f"no feature source on {system}")
