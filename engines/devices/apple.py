"""Apple GPU and Neural Engine activity without sudo, through the ``macmon`` tool when installed.

Apple exposes GPU/ANE utilisation and power only through the private IOReport framework;
``powermetrics`` needs root. ``macmon`` (vladkens/macmon, ``brew install macmon`` — not the PyPI
package of that name) reads IOReport without sudo and prints one JSON object per sample with
``macmon pipe``. :class:`MacmonReader` keeps one such process running and holds its latest
sample, so a meter's poll never waits for a reading. Plain Python: the UI process may import it.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

MACMON_HINT = "GPU/ANE activity and power: install macmon (`brew install macmon`; reads without sudo)"


def macmon_path() -> str | None:
    return shutil.which("macmon")


def parse_macmon(sample: dict[str, Any]) -> dict[str, float | None]:
    """GPU utilisation (%), GPU / ANE / whole-system power (W) and memory from one ``macmon pipe``
    object (v0.8 names, with the v0.7 ``gpu_usage: [freq, ratio]`` form accepted too)."""

    def num(key: str) -> float | None:
        value = sample.get(key)
        return float(value) if isinstance(value, (int, float)) else None

    ratio = num("gpu_active_ratio")
    if ratio is None and isinstance(sample.get("gpu_usage"), list) and len(sample["gpu_usage"]) == 2:
        ratio = float(sample["gpu_usage"][1])
    memory = sample.get("memory") if isinstance(sample.get("memory"), dict) else {}
    used, total = memory.get("ram_usage"), memory.get("ram_total")
    return {
        "gpu_utilisation": None if ratio is None else 100.0 * ratio,
        "gpu_power_w": num("gpu_power"), "ane_power_w": num("ane_power"), "sys_power_w": num("sys_power"),
        "memory_used_mb": used / 2**20 if isinstance(used, (int, float)) else None,
        "memory_total_mb": total / 2**20 if isinstance(total, (int, float)) else None,
    }


class MacmonReader:
    """One ``macmon pipe`` child read by a daemon thread; :meth:`latest` never blocks. :meth:`stop`
    ends the child and waits for it (also run at interpreter exit), so no macmon outlives its reader."""

    def __init__(self, interval_ms: int = 1000, command: list[str] | None = None,
                 on_sample: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._command = command or [macmon_path() or "macmon", "pipe", "-i", str(interval_ms)]
        self._on_sample = on_sample  # each raw sample as it arrives (the energy meter integrates them)
        self._latest: dict[str, float | None] | None = None
        self._error: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._first = threading.Event()

    def start(self) -> None:
        try:
            self._proc = subprocess.Popen(self._command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                          text=True)
        except OSError as exc:
            self._error = f"macmon could not start: {exc}"
            self._first.set()
            return
        atexit.register(self.stop)
        threading.Thread(target=self._read, name="macmon", daemon=True).start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:  # blocks on the pipe: no busy loop
            try:
                raw = json.loads(line)
                parsed = parse_macmon(raw)
            except (ValueError, TypeError, AttributeError):
                continue
            if self._on_sample is not None:
                self._on_sample(raw)
            with self._lock:
                self._latest = parsed
            self._first.set()
        self._error = f"macmon ended (exit code {self._proc.wait()})"
        self._first.set()

    def wait_first(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) for the first sample; False if none came (or macmon ended)."""
        self._first.wait(timeout_s)
        return self.latest() is not None

    def latest(self) -> dict[str, float | None] | None:
        with self._lock:
            return self._latest

    @property
    def error(self) -> str | None:
        return self._error

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        atexit.unregister(self.stop)
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# --- performance cores --------------------------------------------------------------------------


def sysctl(name: str) -> str | None:
    """``sysctl -n NAME``'s output, or None where the key (or sysctl) does not exist."""
    try:
        proc = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def performance_cores(read: Callable[[str], str | None] = sysctl) -> tuple[int, int] | None:
    """(performance cores, efficiency cores) of an Apple Silicon Mac, from ``hw.perflevel0/1.physicalcpu``;
    None where the machine has no performance levels (Intel Macs, Linux)."""

    def number(name: str) -> int | None:
        text = read(name)
        try:
            return int(text.strip()) if text is not None else None
        except ValueError:
            return None

    p_cores = number("hw.perflevel0.physicalcpu")
    if not p_cores:
        return None
    return p_cores, number("hw.perflevel1.physicalcpu") or 0


@functools.cache
def _this_macs_cores() -> tuple[int, int] | None:
    return performance_cores() if sys.platform == "darwin" else None


def default_threads(physical: int, read: Callable[[str], str | None] | None = None) -> tuple[int, str]:
    """The sweep's default thread count and the rule that chose it: the performance cores on Apple
    Silicon (an intra-op pool that spills onto efficiency cores waits for its slowest thread), else
    every physical core."""
    cores = performance_cores(read) if read else _this_macs_cores()
    if cores:
        p_cores, e_cores = cores
        return p_cores, f"performance cores (hw.perflevel0.physicalcpu = {p_cores}; {e_cores} efficiency cores left out)"
    return physical, f"physical cores ({physical})"
