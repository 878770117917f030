"""Live device readings: per-core CPU, memory, the benchmark child processes, accelerators.

One sampler for every front end: ``qbench devices``, the worker and the app's meters all read
the machine through :class:`DeviceSampler`. Plain Python and psutil only (accelerators are read
with ``nvidia-smi``, never by importing torch), so the UI process may import it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from engines.devices import DeviceInfo, detect_devices

if TYPE_CHECKING:
    import psutil  # imported where it is read: 25 ms the app's first paint need not wait for

NVIDIA_SMI_TIMEOUT_S = 2.0  # a hung driver must not stall the sampler (it re-arms after each sample)


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
    """One reading of the machine."""

    per_cpu: tuple[float, ...]
    memory_used_mb: float
    memory_total_mb: float
    app_rss_mb: float  # the sampling process itself
    bench_rss_mb: float | None = None  # the benchmark child process(es), when one runs
    bench_cpu: float | None = None  # percent of one core, summed over the children
    bench_pids: tuple[int, ...] = ()
    accelerators: tuple[AcceleratorSample, ...] = ()

    @property
    def cpu_total(self) -> float:
        return sum(self.per_cpu) / len(self.per_cpu) if self.per_cpu else 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready) with the average CPU load added."""
        return {**asdict(self), "cpu_total": self.cpu_total}


class DeviceSampler:
    """Takes :class:`DeviceSample` readings of this process, its children and the machine.

    CPU percentages compare with the previous reading, so one sampler is kept and called
    repeatedly (one call at a time); the first reading after construction covers the time since.
    """

    def __init__(self, process: psutil.Process | None = None,
                 devices: Callable[[], Iterable[DeviceInfo]] = detect_devices, macmon_interval_ms: int = 1000,
                 cpu_times_since: Sequence[Any] | None = None) -> None:
        import psutil

        self._me = process or psutil.Process()
        self._devices = devices
        self._children: dict[int, psutil.Process] = {}
        self._has_nvidia_smi = shutil.which("nvidia-smi") is not None
        self._macmon = None  # started on the first sample that has an Apple device present
        self._macmon_interval_ms = macmon_interval_ms
        # The first reading compares with these counters (the caller's, taken earlier: the app
        # takes them at the process's start). Kept here, not in psutil: psutil's cpu_percent keeps
        # its previous counters per thread, and samples are taken on whichever thread is free
        # (a first reading on a new thread read 0 %).
        self._cpu_times = list(cpu_times_since) if cpu_times_since is not None else psutil.cpu_times(percpu=True)

    def sample(self) -> DeviceSample:
        import psutil

        mem = psutil.virtual_memory()
        bench_rss, bench_cpu, pids = self._sample_children()
        try:
            app_rss = self._me.memory_info().rss / 2**20
        except psutil.Error:
            app_rss = 0.0
        return DeviceSample(
            per_cpu=self._per_cpu_percent(),
            memory_used_mb=(mem.total - mem.available) / 2**20,
            memory_total_mb=mem.total / 2**20,
            app_rss_mb=app_rss,
            bench_rss_mb=bench_rss,
            bench_cpu=bench_cpu,
            bench_pids=pids,
            accelerators=self.sample_accelerators(),
        )

    def _per_cpu_percent(self) -> tuple[float, ...]:
        """Each core's busy share since the previous reading (psutil's cpu_percent's arithmetic)."""
        import psutil

        now = psutil.cpu_times(percpu=True)
        before, self._cpu_times = self._cpu_times, now
        return tuple(busy_percent(a, b) for a, b in zip(before, now))

    def wait_for_macmon(self, timeout_s: float) -> bool:
        """Where macmon runs (an Apple device was sampled), wait for its first reading."""
        return self._macmon.wait_first(timeout_s) if self._macmon is not None else False

    def close(self) -> None:
        """End the macmon child, if one was started (and wait for it)."""
        if self._macmon is not None:
            self._macmon.stop()

    def __enter__(self) -> DeviceSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sample_children(self) -> tuple[float | None, float | None, tuple[int, ...]]:
        """RSS and CPU of the benchmark workers: this process's children (the runner spawns them)."""
        import psutil

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
                continue  # it ended between listing and reading
            seen[child.pid] = proc
        self._children = seen
        return (rss, cpu, tuple(sorted(seen))) if seen else (None, None, ())

    def sample_accelerators(self) -> tuple[AcceleratorSample, ...]:
        out: list[AcceleratorSample] = []
        for dev in self._devices():
            if dev.name == "cpu":
                continue
            if dev.name == "cuda" and dev.present and self._has_nvidia_smi:
                out.extend(nvidia_smi_samples(dev))
                continue
            if dev.present and dev.name in ("mps", "gpu", "ane"):
                out.append(self._apple_sample(dev))
                continue
            out.append(AcceleratorSample(dev.name, dev.title, dev.present, dev.detail))
        return tuple(out)

    def _apple_sample(self, dev: DeviceInfo) -> AcceleratorSample:
        """macmon's latest reading when it is installed (no sudo); else what is missing and how to get it.
        Memory is the unified pool the GPU and Neural Engine share with the CPU."""
        import psutil

        from engines.devices.apple import MACMON_HINT, MacmonReader, macmon_path

        mem = psutil.virtual_memory()
        used, total = (mem.total - mem.available) / 2**20, mem.total / 2**20
        if self._macmon is None and macmon_path():
            self._macmon = MacmonReader(self._macmon_interval_ms)
            self._macmon.start()
        reading = self._macmon.latest() if self._macmon else None
        if reading is None:
            why = (self._macmon.error or "macmon: waiting for its first sample") if self._macmon else MACMON_HINT
            return AcceleratorSample(dev.name, dev.title, True, f"{dev.detail}; {why}", None, used, total)
        busy = reading["gpu_utilisation"] if dev.name != "ane" else None  # the ANE reports power only
        power = reading["ane_power_w"] if dev.name == "ane" else reading["gpu_power_w"]
        return AcceleratorSample(dev.name, dev.title, True, dev.detail, busy, used, total, power)


def busy_percent(before: Any, after: Any) -> float:
    """Percent of the time between two ``psutil.cpu_times`` readings of one core spent busy (not
    idle or waiting for I/O; guest time is already counted in user time on Linux)."""
    def total(t: Any) -> float:
        return sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)

    def idle(t: Any) -> float:
        return t.idle + getattr(t, "iowait", 0.0)

    spent = total(after) - total(before)
    if spent <= 0:
        return 0.0
    return round(min(100.0, max(0.0, 100.0 * (spent - (idle(after) - idle(before))) / spent)), 1)


def nvidia_smi_samples(dev: DeviceInfo) -> list[AcceleratorSample]:
    """One sample per NVIDIA GPU, read from ``nvidia-smi`` (a failure becomes the detail)."""
    query = "index,name,utilization.gpu,memory.used,memory.total,power.draw"
    try:
        proc = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return [AcceleratorSample(dev.name, dev.title, True, f"nvidia-smi failed: {exc}")]
    return parse_nvidia_smi(proc.stdout, dev) or [
        AcceleratorSample(dev.name, dev.title, True, "nvidia-smi returned no GPU")]


def parse_nvidia_smi(text: str, dev: DeviceInfo) -> list[AcceleratorSample]:
    """Parse ``nvidia-smi --format=csv,noheader,nounits`` lines of the query above."""
    samples = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 6:
            continue
        samples.append(AcceleratorSample(
            f"cuda:{parts[0]}", parts[1], True, dev.detail, _float(parts[2]), _float(parts[3]),
            _float(parts[4]), _float(parts[5]),
        ))
    return samples


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None  # "[N/A]" where the board does not report it
