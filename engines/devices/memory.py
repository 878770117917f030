"""What a device's memory figure means, and the warning when weights near what the device can hold.

Shared by the runtimes that measure accelerator memory (torch on ``cuda`` and ``mps``, MLX on
``gpu``) so that every result says the same thing in the same words. On Apple Silicon the GPU and
the Neural Engine compute from the unified memory the CPU also uses: nothing is copied to the
device, the "device memory" counters are allocations in that shared pool, and going past the
GPU's recommended working set pages rather than failing. The Metal driver's allocations (torch's
``mps`` tensors live in GPU-private storage) are not in the process's resident set, so the worker
reports the counter live and the memory watchdog adds it to the RSS. A CUDA GPU has memory of its
own: the counter is the peak held by tensors there, and going past it fails with out-of-memory. Light: no engine library is imported here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

UNIFIED_MEMORY_DEVICES = ("mps", "gpu", "ane")  # Apple Silicon: one pool shared with the CPU
NEAR_LIMIT = 0.8  # weights above this share of the device's working set leave too little for activations

# device → (the counter the runtime reads, what it counts)
COUNTERS: dict[str, tuple[str, str]] = {
    "cuda": ("torch.cuda.max_memory_allocated",
             "peak bytes held by tensors on the GPU's own memory (excludes the CUDA context and the caching "
             "allocator's unused reserve; not part of the process's RSS)"),
    "mps": ("torch.mps.driver_allocated_memory (peak sampled every 2 ms over the timed calls)",
            "peak bytes the Metal driver held for torch in unified memory while the variant was timed "
            "(shared with the CPU: counted in the machine's memory pressure, not in the process's RSS)"),
    "gpu": ("mlx.core.get_peak_memory (reset before the timed calls)",
            "peak bytes MLX allocated in unified memory while the variant was timed (shared with the CPU)"),
}


def is_unified(device: str) -> bool:
    return device in UNIFIED_MEMORY_DEVICES


def device_memory_metrics(device: str, limit_bytes: int | None = None) -> dict[str, Any]:
    """What goes into a result's ``metrics`` beside ``device_memory_mb``: the counter, what it
    counts, whether the memory is unified, and the device's limit where known."""
    if device not in COUNTERS:
        return {}
    counter, meaning = COUNTERS[device]
    out: dict[str, Any] = {"device_memory_counter": counter, "device_memory_meaning": meaning,
                           "device_memory_unified": is_unified(device)}
    if limit_bytes:
        out["device_memory_limit_mb"] = round(limit_bytes / 2**20, 1)
    return out


def working_set_warning(device: str, weights_bytes: int, limit_bytes: int | None) -> str | None:
    """A note when the weights alone take more than NEAR_LIMIT of what the device can hold."""
    if not limit_bytes or weights_bytes <= NEAR_LIMIT * limit_bytes:
        return None
    size, limit = weights_bytes / 2**30, limit_bytes / 2**30
    if is_unified(device):
        return (f"weights ({size:.1f} GiB) near the GPU's recommended working set ({limit:.1f} GiB): "
                "expect paging on unified memory")
    return f"weights ({size:.1f} GiB) near the {device} device's memory ({limit:.1f} GiB): expect out-of-memory"


class PeakSampler:
    """The peak of a memory counter over a window, for counters without a peak of their own
    (torch on ``mps``: ``driver_allocated_memory``). ``read`` returns bytes; a daemon thread reads it
    every ``interval_s`` between :meth:`start` and :meth:`stop` (it sleeps between readings, holding
    the GIL for microseconds), and :attr:`latest` is its last reading (the memory watchdog's)."""

    def __init__(self, read: Callable[[], float], interval_s: float = 0.002) -> None:
        self._read = read
        self.interval_s = interval_s
        self.peak = 0.0
        self.latest: float | None = None
        self.readings = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _take(self) -> None:
        value = float(self._read())
        self.latest = value
        self.readings += 1
        self.peak = max(self.peak, value)

    def start(self) -> float:
        """Begin a window (ending one still running); returns the counter now, in bytes."""
        self.stop()
        self.peak, self.readings = 0.0, 0
        self._stop.clear()
        self._take()
        self._thread = threading.Thread(target=self._run, name="device-memory-peak", daemon=True)
        self._thread.start()
        return self.peak

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._take()

    def stop(self) -> float:
        """End the window; returns the peak in bytes (the counter is read once more at the end)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._take()
        return self.peak
