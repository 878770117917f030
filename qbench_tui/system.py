"""The machine as the app sees it: devices, what runs where, models, and live device samples.

Thin adapters only: :class:`LocalSystem` asks the real engines (catalog, device detection, model
zoo, the shared sampler in :mod:`engines.devices.sampling`).
Snapshot tests pass :class:`FixedSystem` (a test hook, kept with the others in
:mod:`engines.test_hooks`) so screenshots do not depend on the machine's load. Nothing here
imports torch or another engine library.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from engines.devices.sampling import AcceleratorSample, DeviceSample, DeviceSampler
from engines.test_hooks import FixedSystem

__all__ = ["AcceleratorSample", "DeviceSample", "FixedSystem", "LocalSystem", "SystemProbe"]


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
        from qbench_tui import cpu_clock

        # The first reading counts from the entry point's priming (cpu_clock), else from here.
        self._sampler = DeviceSampler(devices=self.devices, cpu_times_since=cpu_clock.cpu_times)
        self.primed_at = cpu_clock.primed_at if cpu_clock.cpu_times is not None else time.monotonic()
        self._reasons: dict[tuple[str, str, str], str | None] = {}

    def devices(self) -> list[Any]:
        from engines.devices import detect_devices

        return list(detect_devices())

    def unsupported_reason(self, method: str, runtime: str, device: str) -> str | None:
        # Asked for every method × runtime × device on each change of the set-up (a planner
        # search each: 0.3 s at start-up); the answer holds for the process's life.
        key = (method, runtime, device)
        if key not in self._reasons:
            from engines.catalog import unsupported_reason
            from engines.methods.recipe import parse_recipe

            self._reasons[key] = unsupported_reason(parse_recipe(method), runtime, device)
        return self._reasons[key]

    def list_models(self) -> list[Any]:
        from engines.models import list_models

        return list(list_models())

    def resolve_model(self, name_or_path: str, options: dict[str, Any] | None = None) -> Any:
        from engines.models import resolve_model

        return resolve_model(name_or_path, options) if options else resolve_model(name_or_path)

    def monotonic(self) -> float:
        return time.monotonic()

    def sample(self) -> DeviceSample:
        return self._sampler.sample()
