"""The machine as the app sees it: devices, what runs where, models, and live device samples.

:class:`LocalSystem` asks the real engines (catalog, device detection, model zoo) and psutil.
Snapshot tests pass a fixed :class:`SystemProbe` instead so screenshots do not depend on the
machine's load. Nothing here imports torch or another engine library.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import psutil


@dataclass(frozen=True)
class AcceleratorSample:
    """One accelerator's state; ``None`` where the platform does not expose a value."""

    name: str
    title: str
    present: bool
    detail: str
    utilisation: float | None = None  # percent
    memory_used_mb: float | None = None
    memory_total_mb: float | None = None
    power_w: float | None = None


@dataclass(frozen=True)
class DeviceSample:
    """One reading of the meters (taken off the UI thread)."""

    per_cpu: tuple[float, ...]
    memory_used_mb: float
    memory_total_mb: float
    app_rss_mb: float
    bench_rss_mb: float | None = None  # the benchmark child process(es), when one runs
    bench_cpu: float | None = None  # percent of one core, summed over the children
    bench_pids: tuple[int, ...] = ()
    accelerators: tuple[AcceleratorSample, ...] = ()

    @property
    def cpu_total(self) -> float:
        return sum(self.per_cpu) / len(self.per_cpu) if self.per_cpu else 0.0


class SystemProbe(Protocol):
    """What the UI needs to know about the machine and the engines' catalog."""

    def devices(self) -> list[Any]: ...  # engines.devices.DeviceInfo

    def unsupported_reason(self, method: str, runtime: str, device: str) -> str | None: ...

    def list_models(self) -> list[Any]: ...  # engines.models.ModelSpec

    def resolve_model(self, name_or_path: str, options: dict[str, Any] | None = None) -> Any: ...

    def sample(self) -> DeviceSample: ...

    def monotonic(self) -> float: ...


class LocalSystem:
    """The real machine. ``sample`` is called from a worker thread, one call at a time."""

    def __init__(self) -> None:
        self._me = psutil.Process()
        self._children: dict[int, psutil.Process] = {}
        self._has_nvidia_smi = shutil.which("nvidia-smi") is not None
        psutil.cpu_percent(percpu=True)  # prime: the first reading compares with this one

    def devices(self) -> list[Any]:
        from engines.devices import detect_devices

        return list(detect_devices())

    def unsupported_reason(self, method: str, runtime: str, device: str) -> str | None:
        from engines.catalog import unsupported_reason

        return unsupported_reason(method, runtime, device)

    def list_models(self) -> list[Any]:
        from engines.models import list_models

        return list(list_models())

    def resolve_model(self, name_or_path: str, options: dict[str, Any] | None = None) -> Any:
        from engines.models import resolve_model

        return resolve_model(name_or_path, options) if options else resolve_model(name_or_path)

    def monotonic(self) -> float:
        return time.monotonic()

    def sample(self) -> DeviceSample:
        mem = psutil.virtual_memory()
        bench_rss, bench_cpu, pids = self._sample_children()
        try:
            app_rss = self._me.memory_info().rss / 2**20
        except psutil.Error:
            app_rss = 0.0
        return DeviceSample(
            per_cpu=tuple(psutil.cpu_percent(percpu=True)),
            memory_used_mb=(mem.total - mem.available) / 2**20,
            memory_total_mb=mem.total / 2**20,
            app_rss_mb=app_rss,
            bench_rss_mb=bench_rss,
            bench_cpu=bench_cpu,
            bench_pids=pids,
            accelerators=self._sample_accelerators(),
        )

    def _sample_children(self) -> tuple[float | None, float | None, tuple[int, ...]]:
        """RSS and CPU of the benchmark workers: this process's children (the runner spawns them)."""
        try:
            children = self._me.children(recursive=True)
        except psutil.Error:
            return None, None, ()
        if not children:
            self._children.clear()
            return None, None, ()
        seen: dict[int, psutil.Process] = {}
        rss = cpu = 0.0
        for child in children:
            # Keep the Process objects: cpu_percent() compares with the previous call on the same one.
            proc = self._children.get(child.pid, child)
            try:
                with proc.oneshot():
                    rss += proc.memory_info().rss / 2**20
                    cpu += proc.cpu_percent(None)
            except psutil.Error:
                continue
            seen[child.pid] = proc
        self._children = seen
        return (rss, cpu, tuple(sorted(seen))) if seen else (None, None, ())

    def _sample_accelerators(self) -> tuple[AcceleratorSample, ...]:
        out = []
        for dev in self.devices():
            if dev.name == "cpu":
                continue
            if dev.name == "cuda" and dev.present and self._has_nvidia_smi:
                out.extend(_nvidia_smi_samples(dev))
                continue
            detail = dev.detail
            if dev.present and dev.name in ("mps", "ane"):
                # Apple exposes GPU/ANE utilisation and power only to root (powermetrics).
                detail = f"{dev.detail}; utilisation and power need `sudo powermetrics`"
            out.append(AcceleratorSample(dev.name, dev.title, dev.present, detail))
        return tuple(out)


def _nvidia_smi_samples(dev: Any) -> list[AcceleratorSample]:
    query = "index,name,utilization.gpu,memory.used,memory.total,power.draw"
    try:
        proc = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=2, env={**os.environ, "LC_ALL": "C"}, check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return [AcceleratorSample(dev.name, dev.title, True, f"nvidia-smi failed: {exc}")]
    samples = []
    for line in proc.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 6:
            continue
        samples.append(AcceleratorSample(
            f"cuda:{parts[0]}", parts[1], True, dev.detail, _float(parts[2]), _float(parts[3]),
            _float(parts[4]), _float(parts[5]),
        ))
    return samples or [AcceleratorSample(dev.name, dev.title, True, "nvidia-smi returned no GPU")]


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]" where the board does not report it


@dataclass
class FixedSystem:
    """A deterministic probe for snapshot tests and demos: fixed devices, models and samples."""

    device_list: list[Any] = field(default_factory=list)
    models: list[Any] = field(default_factory=list)
    reasons: dict[tuple[str, str, str], str] = field(default_factory=dict)
    fixed_sample: DeviceSample | None = None
    clock: float = 1000.0

    def devices(self) -> list[Any]:
        return list(self.device_list)

    def unsupported_reason(self, method: str, runtime: str, device: str) -> str | None:
        return self.reasons.get((method, runtime, device))

    def list_models(self) -> list[Any]:
        return list(self.models)

    def resolve_model(self, name_or_path: str, options: dict[str, Any] | None = None) -> Any:
        for spec in self.models:
            if spec.name == name_or_path or spec.path == name_or_path:
                return spec
        from engines.models import ModelNotFound

        raise ModelNotFound(f"unknown model {name_or_path!r}")

    def sample(self) -> DeviceSample:
        assert self.fixed_sample is not None
        return self.fixed_sample

    def monotonic(self) -> float:
        return self.clock
