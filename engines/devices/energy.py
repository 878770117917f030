"""Energy over a timed window, without sudo: Apple Silicon, NVIDIA GPUs and Linux CPUs (RAPL).

One meter per benchmark child (:func:`open_meter`): ``start()`` returns a mark, ``stop(mark)`` the
joules since it. The worker measures the machine at rest once (:func:`idle_watts`), then each
timing round's window; :func:`energy_figure` turns a result's rounds into its ``energy`` object:
joules per inference with the idle power subtracted, and the average power.

Sources, in order of preference for a device:

* Apple Silicon — ``zeus-apple-silicon`` (the ``energy`` extra; ML.ENERGY's reader of the IOReport
  energy counters, in process, cumulative mJ of CPU / GPU / ANE / DRAM: a window is two reads, with
  no sampling gap). Chosen over ``macmon pipe`` for that reason; ``macmon`` (a brew binary, its own
  power samples every interval) is the fallback: its samples are integrated over the window.
* NVIDIA — NVML's total energy counter (mJ since the driver loaded) through ``nvidia-ml-py``.
* Linux CPUs — RAPL package domains, ``/sys/class/powercap/intel-rapl:N/energy_uj``, where this user
  may read them (root-only since Linux 5.10 on most distributions). The counter wraps at
  ``max_energy_range_uj``; each read adds the step since the previous one, wrap included.

Plain Python (no numpy, no engine imports): the UI process may import it.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

POWERCAP = Path("/sys/class/powercap")
IDLE_WINDOW_S = 0.5
EXTRA_HINT = "install the energy extra (`uv sync --extra energy`)"


class Unavailable(Exception):
    """No energy counter can be read here; the message says exactly why."""


class CounterMeter:
    """A cumulative counter in joules: a window is the difference of two reads."""

    def __init__(self, source: str, read_j: Callable[[], float]) -> None:
        self.source = source
        self._read = read_j

    def start(self) -> Any:
        return time.perf_counter(), self._read()

    def stop(self, mark: Any) -> tuple[float, float]:
        """(joules, seconds) since ``mark``."""
        t0, e0 = mark
        e1 = self._read()
        return e1 - e0, time.perf_counter() - t0

    def close(self) -> None:
        pass


# --- RAPL ---------------------------------------------------------------------------------------


class RaplCounter:
    """The package domains' energy_uj, summed, in joules; wrap-around at max_energy_range_uj handled
    by accumulating each step between reads (a counter wraps after hours, reads come every round)."""

    def __init__(self, root: Path = POWERCAP) -> None:
        domains = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)  # packages, not subzones
        if not domains:
            raise Unavailable(f"RAPL absent: no {root}/intel-rapl:* domain (no powercap driver exposes the CPU's "
                              "energy counters on this machine, as in most VMs and containers)")
        self.domains = domains
        self.names = []
        for d in domains:
            energy = d / "energy_uj"
            if not os.access(energy, os.R_OK):
                raise Unavailable(f"RAPL unreadable: {energy} is not readable by uid {os.getuid()} (root-only since "
                                  "Linux 5.10); `sudo chmod o+r` it to measure energy without sudo")
            name = (d / "name").read_text().strip() if (d / "name").exists() else d.name
            self.names.append(name)
        self._ranges = [int((d / "max_energy_range_uj").read_text()) for d in domains]
        self._last = self._raw()
        self._total_uj = 0

    def _raw(self) -> list[int]:
        try:
            return [int((d / "energy_uj").read_text()) for d in self.domains]
        except OSError as exc:
            raise Unavailable(f"RAPL unreadable: {exc}") from None

    def __call__(self) -> float:
        now = self._raw()
        for last, cur, span in zip(self._last, now, self._ranges):
            self._total_uj += rapl_step(last, cur, span)
        self._last = now
        return self._total_uj / 1e6


def rapl_step(last_uj: int, now_uj: int, max_range_uj: int) -> int:
    """Microjoules between two reads of one domain; the counter restarts at 0 after max_range_uj."""
    return now_uj - last_uj if now_uj >= last_uj else max_range_uj - last_uj + now_uj


def rapl_meter(root: Path = POWERCAP) -> CounterMeter:
    counter = RaplCounter(root)
    return CounterMeter(f"rapl ({', '.join(counter.names)})", counter)


# --- NVML ---------------------------------------------------------------------------------------


def nvml_meter(index: int = 0) -> CounterMeter:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        raise Unavailable(f"NVML: nvidia-ml-py is not installed; {EXTRA_HINT}") from None
    try:
        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # Volta and newer; raises NotSupported before
    except pynvml.NVMLError as exc:
        raise Unavailable(f"NVML: total energy not readable on GPU {index}: {exc}") from None
    return CounterMeter(f"nvml (GPU {index} board)",
                        lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1e3)


# --- Apple Silicon ------------------------------------------------------------------------------

ZEUS_FIELDS = ("cpu_total_mj", "gpu_mj", "gpu_sram_mj", "ane_mj", "dram_mj")
MACMON_POWER_KEYS = ("cpu_power", "gpu_power", "ane_power", "ram_power", "gpu_ram_power")


def zeus_total_j(metrics: Any) -> float:
    """CPU + GPU (+ its SRAM) + Neural Engine + DRAM of one ``AppleEnergyMetrics`` (mJ; None = absent)."""
    return sum(float(getattr(metrics, f, None) or 0) for f in ZEUS_FIELDS) / 1e3


def zeus_meter() -> CounterMeter:
    try:
        from zeus_apple_silicon import AppleEnergyMonitor
    except ImportError:
        raise Unavailable(f"zeus-apple-silicon is not installed; {EXTRA_HINT}") from None
    monitor = AppleEnergyMonitor()
    return CounterMeter("zeus-apple-silicon (CPU+GPU+ANE+DRAM)", lambda: zeus_total_j(monitor.get_cumulative_energy()))


def macmon_watts(sample: dict[str, Any]) -> float | None:
    """CPU + GPU + ANE + DRAM power (W) of one ``macmon pipe`` object (None if it has none)."""
    values = [sample.get(k) for k in MACMON_POWER_KEYS]
    numbers = [float(v) for v in values if isinstance(v, (int, float))]
    return sum(numbers) if numbers else None


def integrate(samples: Sequence[tuple[float, float]], t0: float, t1: float, interval_s: float) -> float:
    """Joules in [t0, t1] from power samples ``(time, watts)``, each the average over the interval
    that ends at its time (macmon's): each sample's span is clipped to the window."""
    joules, previous = 0.0, None
    for t, watts in samples:
        begin = t - interval_s if previous is None else previous
        previous = t
        overlap = min(t, t1) - max(begin, t0)
        if overlap > 0:
            joules += watts * overlap
    return joules


class MacmonMeter:
    """``macmon pipe`` through :class:`engines.devices.apple.MacmonReader`, its samples kept with their
    arrival times; a window waits for the first sample past its end (at most a few intervals) and
    integrates the power over it."""

    def __init__(self, command: list[str] | None = None, interval_ms: int = 100) -> None:
        from engines.devices.apple import MacmonReader

        self.source = f"macmon (CPU+GPU+ANE+DRAM power every {interval_ms} ms)"
        self.interval_s = interval_ms / 1000
        self._samples: list[tuple[float, float]] = []
        self._cond = threading.Condition()
        self._reader = MacmonReader(interval_ms, command, on_sample=self._on_sample)
        self._reader.start()
        # the first sample before any window: a window that began before it would miss its start
        if not self._reader.wait_first(3 + 3 * self.interval_s):
            self._reader.stop()
            raise Unavailable(self._reader.error or "macmon gave no sample within 3 s")

    def _on_sample(self, sample: dict[str, Any]) -> None:
        watts = macmon_watts(sample) if isinstance(sample, dict) else None
        if watts is not None:
            with self._cond:
                self._samples.append((time.perf_counter(), watts))
                del self._samples[:-10_000]
                self._cond.notify_all()

    def start(self) -> float:
        return time.perf_counter()

    def stop(self, mark: float) -> tuple[float, float]:
        t1 = time.perf_counter()
        deadline = t1 + 3 * self.interval_s + 1.0
        with self._cond:
            while not (self._samples and self._samples[-1][0] >= t1) and time.perf_counter() < deadline:
                if not self._reader.running:
                    raise Unavailable(self._reader.error or "macmon ended")
                self._cond.wait(timeout=self.interval_s)
            samples = list(self._samples)
        return integrate(samples, mark, t1, self.interval_s), t1 - mark

    def close(self) -> None:
        self._reader.stop()


# --- choosing a meter ----------------------------------------------------------------------------


def is_apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def open_meter(device: str, powercap: Path = POWERCAP) -> tuple[Any | None, str | None]:
    """(meter, None), or (None, the reason nothing can be read for ``device`` here)."""
    attempts: list[Callable[[], Any]]
    if is_apple_silicon():
        attempts = [zeus_meter, MacmonMeter if shutil.which("macmon") else _no_macmon]
    elif device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        attempts = [lambda: nvml_meter(index)]
    elif sys.platform.startswith("linux"):
        attempts = [lambda: rapl_meter(powercap)]
    else:
        return None, f"no energy counter is read on {sys.platform} ({platform.machine()})"
    reasons: list[str] = []
    for attempt in attempts:
        try:
            return attempt(), None
        except Unavailable as exc:
            reasons.append(str(exc))
        except Exception as exc:  # noqa: BLE001 - a reader library's own failure is a reason, not a crash
            reasons.append(f"{type(exc).__name__}: {exc}")
    return None, "; ".join(reasons)


def _no_macmon() -> Any:
    raise Unavailable("macmon is not on PATH (`brew install macmon`)")


def idle_watts(meter: Any, seconds: float = IDLE_WINDOW_S) -> float:
    """The machine's power at rest (this process asleep), to subtract from each window."""
    mark = meter.start()
    time.sleep(seconds)
    joules, wall = meter.stop(mark)
    return joules / wall if wall > 0 else 0.0


def window(meter: Any | None, idle_w: float | None, reason: str | None, mark: Any, calls: int) -> dict[str, Any]:
    """One round's energy entry (the worker's): joules, seconds, calls, idle power, source."""
    if meter is None or mark is None:
        return {"reason": reason or "not measured"}
    try:
        joules, wall = meter.stop(mark)
    except Exception as exc:  # noqa: BLE001 - a meter that fails mid-run is a reason, never a failed result
        return {"reason": f"{meter.source}: {type(exc).__name__}: {exc}"}
    return {"joules": joules, "wall_s": wall, "calls": calls, "idle_w": idle_w, "source": meter.source}


def energy_figure(rounds: Sequence[dict[str, Any]], batch_size: int = 1,
                  decode_tokens_per_s: float | None = None) -> dict[str, Any]:
    """A result's ``energy`` object from its rounds' entries: joules per inference (per input item,
    as throughput counts them: a call at batch size 8 is 8 inferences; ``joules_per_call`` is the
    call's) after subtracting idle power × time, the average power over the timed
    windows (gross, and net of idle), and per generated token for LMs (net power while generating ÷
    decode tokens/s). ``{"joules_per_inference": None, "reason": …}`` where nothing was read."""
    entries = [r.get("energy") or {} for r in rounds]
    read = [e for e in entries if e.get("joules") is not None and e.get("calls")]
    if not read:
        reason = next((e["reason"] for e in entries if e.get("reason")), "not measured")
        return {"joules_per_inference": None, "reason": reason}
    joules = sum(e["joules"] for e in read)
    wall = sum(e["wall_s"] for e in read)
    calls = sum(e["calls"] for e in read)
    idle = read[0].get("idle_w") or 0.0
    net = max(0.0, joules - idle * wall)
    out: dict[str, Any] = {
        "joules_per_inference": net / (calls * batch_size), "joules_per_call": net / calls, "watts": joules / wall if wall > 0 else None,
        "net_watts": net / wall if wall > 0 else None, "idle_watts": idle, "idle_subtracted": True,
        "calls": calls, "window_s": round(wall, 3), "source": read[0]["source"],
    }
    gen = next((e["generation"] for e in read if e.get("generation")), None)
    if gen and decode_tokens_per_s and gen.get("wall_s"):
        gen_net = max(0.0, gen["joules"] - idle * gen["wall_s"]) / gen["wall_s"]
        out["joules_per_token"] = gen_net / decode_tokens_per_s
    return out


def describe(energy: dict[str, Any] | None) -> str:
    """One line for a result: '0.012 J/inference (3.1 W, idle 1.2 W subtracted; rapl…)' or the reason."""
    if not energy:
        return "–"
    if energy.get("joules_per_inference") is None:
        return f"not measured: {energy.get('reason', 'unknown')}"
    text = f"{energy['joules_per_inference']:.4g} J/inference ({energy['watts']:.2f} W average, " \
           f"idle {energy['idle_watts']:.2f} W subtracted; {energy['source']})"
    if energy.get("joules_per_token") is not None:
        text += f", {energy['joules_per_token']:.4g} J/generated token"
    return text
