"""What the machine did while a variant was timed: its memory peak, and the other processes' CPU.

Used inside the measuring child (engines.bench.worker), around each timing loop:
- :class:`PeakRss` gives the peak working set of the loop alone. On Linux it resets the kernel's
  high-water mark (``/proc/self/clear_refs`` ← 5) and reads ``VmHWM`` after the loop, which costs
  nothing while timing; elsewhere a sampler thread reads the RSS every 5 ms (it sleeps between
  readings, so it takes the GIL for microseconds).
- :class:`NeighbourCpu` reads the machine's busy CPU time and this process's own around the loop;
  the difference is what other processes used, in cores.
"""

from __future__ import annotations

import gc
import os
import re
import sys
import threading
import time
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def process_peak_mb() -> float:
    """The process's lifetime peak RSS (``ru_maxrss``), or since the last reset on Linux."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc keeps them otherwise), so
    that what was freed before timing does not count as the variant's working set."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass


def _hwm_mb() -> float | None:
    try:
        match = re.search(r"VmHWM:\s+(\d+) kB", _STATUS.read_text())
    except OSError:
        return None
    return int(match.group(1)) / 1024 if match else None


def _can_reset_hwm() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _hwm_mb() is not None


class PeakRss:
    """Peak RSS (MB) between :meth:`start` and :meth:`stop`."""

    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self.method = "vmhwm-reset" if sys.platform.startswith("linux") and _can_reset_hwm() else "sampler"
        self._peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> float:
        """Begin; returns the RSS now."""
        now = rss_mb()
        self._peak = now
        if self.method == "vmhwm-reset":
            _CLEAR_REFS.write_text("5")  # VmHWM := current RSS
        else:
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return now

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._peak = max(self._peak, rss_mb())

    def stop(self) -> float:
        if self.method == "vmhwm-reset":
            return max(self._peak, _hwm_mb() or 0.0, rss_mb())
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return max(self._peak, rss_mb())


def _busy_s(times) -> float:
    idle = getattr(times, "idle", 0.0) + getattr(times, "iowait", 0.0)
    return sum(times) - idle - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


class NeighbourCpu:
    """CPU time other processes used between :meth:`start` and :meth:`stop`, in cores (1.0 = one
    core busy the whole time)."""

    def start(self) -> None:
        import psutil

        self._wall = time.monotonic()
        self._machine = _busy_s(psutil.cpu_times())
        own = os.times()
        self._own = own.user + own.system

    def stop(self) -> float:
        import psutil

        wall = time.monotonic() - self._wall
        machine = _busy_s(psutil.cpu_times()) - self._machine
        own = os.times()
        mine = own.user + own.system - self._own
        # /proc/stat ticks at 100 Hz: a loop shorter than a few ticks reads as noise, never < 0.
        return max(0.0, machine - mine) / wall if wall > 0.05 else 0.0
