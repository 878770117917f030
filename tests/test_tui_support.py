"""Shared helpers for the TUI tests: a fixed machine (devices, models, meter readings) and a
store filled with results at fixed times, so screens look the same on every run.

Only layout, snapshot and interaction tests use the fixed machine; the sweep tests drive the
real runner on the built-in digits-mlp.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engines import catalog
from engines.devices import DeviceInfo
from engines.devices.sampling import AcceleratorSample, DeviceSample
from engines.methods import parse_recipe
from engines.models import ModelSpec
from engines.passes import Format, plan
from qbench_tui.settings import AppSettings
from qbench_tui.system import FixedSystem

FAST_MEASURE = {"warmup_reps": 2, "warmup_s": 0.0, "min_reps": 5, "min_time_s": 0.05, "max_time_s": 2.0}

DEVICES = [
    DeviceInfo("cpu", "CPU", True, "Test CPU @ 3.0GHz, 4 cores, 16 GiB"),
    DeviceInfo("cuda", "NVIDIA GPU (CUDA)", False, "no NVIDIA driver (nvidia-smi not found)"),
    DeviceInfo("mps", "Apple GPU (Metal)", False, "needs macOS on Apple Silicon"),
    DeviceInfo("ane", "Apple Neural Engine", False, "needs macOS on Apple Silicon"),
]

# Fixed, not engines.models.BUILTIN_MODELS: the zoo grows, and screenshots must not move with it.
MODELS = [
    ModelSpec("digits-mlp", "classification", "built-in",
              "MLP 64→1024→1024→10 trained on scikit-learn digits (seeded, cached)", "engines.models.digits:load",
              params=1_127_434),
    ModelSpec("digits-cnn", "classification", "built-in", "3-layer CNN on 8×8 scikit-learn digits (seeded, cached)",
              "engines.models.digits:load", params=65_994),
    ModelSpec("all-MiniLM-L6-v2", "embedding", "hf-dir", "sentence-transformers MiniLM-L6 (local folder)",
              "engines.models.hf:load", params=22_713_216, path="/models/all-MiniLM-L6-v2"),
]

SAMPLE = DeviceSample(
    per_cpu=(12.0, 34.0, 56.0, 91.0), memory_used_mb=6.2 * 1024, memory_total_mb=16 * 1024, app_rss_mb=85.0,
    accelerators=tuple(AcceleratorSample(d.name, d.title, d.present, d.detail) for d in DEVICES[1:]),
)
RUNNING_SAMPLE = DeviceSample(
    per_cpu=(97.0, 99.0, 12.0, 8.0), memory_used_mb=6.8 * 1024, memory_total_mb=16 * 1024, app_rss_mb=86.0,
    bench_rss_mb=412.0, bench_cpu=196.0, bench_pids=(4242,), accelerators=SAMPLE.accelerators,
)


def fixed_reasons() -> dict[tuple[str, str, str], str]:
    """The catalog's support table on the fixed machine (CPU only), without probing packages."""
    present = {d.name for d in DEVICES if d.present}
    reasons = {}
    for m, spec in catalog.METHODS.items():
        for r, rt in catalog.RUNTIMES.items():
            for dev in (d.name for d in DEVICES):
                if dev not in rt.devices:
                    why = f"{rt.title} has no {dev} backend"
                elif dev not in present:
                    info = next(d for d in DEVICES if d.name == dev)
                    why = f"device {dev} is not present: {info.detail}"
                else:  # the planner's answer, as on a machine with this device
                    planned = plan(parse_recipe(m), Format.TORCH, rt, dev)
                    why = planned if isinstance(planned, str) else None
                if why:
                    reasons[(m, r, dev)] = why
    return reasons


def fixed_system(sample: DeviceSample = SAMPLE) -> FixedSystem:
    return FixedSystem(device_list=list(DEVICES), models=list(MODELS), reasons=fixed_reasons(),
                       fixed_sample=sample)


ENVIRONMENT = {
    "qbench": "0.1.0", "python": "3.11.9", "os": "Linux 6.1", "machine": "x86_64", "cpu": "Test CPU @ 3.0GHz",
    "physical_cores": 4, "logical_cores": 8, "memory_gib": 16.0, "threads": 4,
    "packages": {"torch": "2.13.0", "onnxruntime": "1.22.0", "numpy": "2.1.0"},
    "devices": {"cpu": {"present": True, "detail": "Test CPU"}, "cuda": {"present": False, "detail": "no driver"}},
}


def _result(method: str, status: str, p50: float | None, acc: float | None, size: float, *, runtime: str = "onnxruntime",
            error: str | None = None, batch_size: int = 1, when: str = "2026-11-20T10:00:30+00:00") -> dict[str, Any]:
    lat = None
    if p50 is not None:
        lat = {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.6, "mean": p50 * 1.05, "std": p50 * 0.1,
               "iqr": p50 * 0.05, "min": p50 * 0.9, "max": p50 * 2.0, "samples": 1200}
    return {
        "model": "digits-mlp", "method": method, "runtime": runtime, "device": "cpu", "batch_size": batch_size,
        "status": status, "error": error, "config": {"version": 1},
        "latency_ms": lat, "throughput_per_s": (batch_size * 1000 / (p50 * 1.05)) if p50 else None,
        "load_s": 0.12 if p50 else None, "quantize_s": 0.4 if p50 else None,
        "peak_rss_mb": 310.0 if p50 else None, "size_mb": size if p50 else None, "accuracy": acc,
        "agreement": {"top1": 0.99 if acc else None, "sqnr_db": 31.5, "cosine": 0.9994} if acc else None,
        "metrics": {"rss_delta_mb": 12.5} if p50 else {}, "notes": [], "runtime_info": {"providers": ["CPUExecutionProvider"]},
        "started_at": when, "finished_at": when,
    }


RUN_A = "20261120-100000-aaaa"
RUN_B = "20261125-143000-bbbb"


def fill_store(store: Any) -> None:
    """Two runs of digits-mlp: an older CLI run and a TUI run with a failure and an unsupported pair."""
    request = {"model": "digits-mlp", "methods": ["fp32", "dynamic-int8", "static-int8", "int4"],
               "runtimes": ["onnxruntime"], "devices": ["cpu"], "batch_sizes": [1], "configs": {},
               "measure": FAST_MEASURE}
    store.create_run(RUN_A, "digits-mlp", request, ENVIRONMENT, "cli")
    store.set_run_status(RUN_A, "finished")
    for r in (_result("fp32", "ok", 0.120, 0.9778, 4.30), _result("dynamic-int8", "ok", 0.061, 0.9761, 1.10),
              _result("static-int8", "ok", 0.048, 0.9705, 1.12), _result("int4", "ok", 0.090, 0.9612, 0.62)):
        store.add_result(RUN_A, r)
    store.create_run(RUN_B, "digits-mlp", request, ENVIRONMENT, "tui")
    store.set_run_status(RUN_B, "interrupted", "cancelled")
    later = "2026-11-25T14:30:40+00:00"
    for r in (_result("fp32", "ok", 0.118, 0.9778, 4.30, when=later),
              _result("dynamic-int8", "ok", 0.058, 0.9761, 1.10, when=later),
              _result("static-int8", "failed", None, None, 0, when=later,
                      error="worker crashed: killed by SIGKILL (out of memory?)"),
              _result("static-int8", "unsupported", None, None, 0, runtime="torch", when=later,
                      error="the x86 PT2E quantizer targets CPUs")):
        store.add_result(RUN_B, r)
    # Fixed creation times (create_run stamps "now").
    with store.db.conn:
        store.db["runs"].update(RUN_A, {"created_at": "2026-11-20T10:00:00+00:00",
                                        "finished_at": "2026-11-20T10:01:00+00:00"})
        store.db["runs"].update(RUN_B, {"created_at": "2026-11-25T14:30:00+00:00",
                                        "finished_at": "2026-11-25T14:31:00+00:00"})


def fixed_store_path(name: str) -> Path:
    """A store at a path that does not change between runs (it shows in the top bar)."""
    folder = Path("/tmp/qbench-tui-snapshots") / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder / "qbench.db"


def test_settings(**kwargs: Any) -> AppSettings:
    return AppSettings(measure=dict(FAST_MEASURE), **kwargs)


test_settings.__test__ = False  # a factory, not a test


async def wait_for(pilot: Any, condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Let the app run until ``condition`` holds (workers post their messages meanwhile)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or condition}")
        await pilot.pause(0.05)


async def wait_ready(pilot: Any, timeout: float = 15.0) -> None:
    """Store opened, models listed, history read, every widget mounted, first device sample shown."""
    app = pilot.app
    await wait_for(pilot, lambda: app.main.ready and app.main.meters.sample is not None, timeout, "the app to load")
    await pilot.pause()


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch):
    """Local times on screen are shown in UTC, so snapshots match in any time zone."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def async_test(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an ``async def`` test in its own event loop (no asyncio plugin needed)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))

    return wrapper


def env_without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}
