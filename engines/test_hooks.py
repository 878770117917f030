"""Every test hook in the product, in one place (docs/test-hooks.md).

The suite checks real behaviour with real parts; a few behaviours cannot be provoked from the
outside without help, so the product carries these hooks. Each one is inert unless it is set:

- ``QBENCH_FAULT=KIND:METHOD`` (environment): the benchmark worker measuring METHOD aborts
  (``crash``), hangs (``hang``) or eats memory until it is killed (``oom``), for real, so the
  runner's handling of a dead, hung or oversized child is tested on a real child. Read by
  :func:`inject_worker_fault`, which the worker calls once per variant; unset or empty, it returns.
- ``QBENCH_FAULT_DELAY_FILE=PATH`` (environment of an exported FastAPI service): every
  ``/predict`` first sleeps the seconds written in PATH (re-read per request), so monitoring
  tests and drills can slow a real server down and speed it up again. The service file is
  standalone (an export carries no qbench code), so it reads the variable itself under the name
  :data:`FAULT_DELAY_FILE`; ``tests/test_runner_faults.py`` checks the names agree.
- :class:`FixedSystem`: a machine with fixed devices, models and device samples for the app
  (snapshot tests and demos draw the same screen on any machine). Used only where a caller
  passes it to ``make_app(system=...)``; the app otherwise probes the real machine.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engines.devices.sampling import DeviceSample

FAULT = "QBENCH_FAULT"
FAULT_DELAY_FILE = "QBENCH_FAULT_DELAY_FILE"
FAULT_KINDS = ("crash", "hang", "oom")


def inject_worker_fault(method: str) -> None:
    """Misbehave for real when ``QBENCH_FAULT`` names ``method`` (``crash:int4``, ``hang:fp32``,
    ``oom:dynamic-int8``); return at once otherwise. An unknown kind naming this method is an error
    (a misspelt hook must not pass as a variant that ran)."""
    kind, _, target = os.environ.get(FAULT, "").partition(":")
    if not target or target != method:
        return
    if kind == "crash":
        os.abort()
    if kind == "hang":
        time.sleep(3600)
    if kind == "oom":
        import numpy as np

        hog = []
        while True:
            hog.append(np.ones(64 * 2**20 // 8))  # 64 MiB at a time, touched
    raise ValueError(f"{FAULT}={kind}:{target}: unknown fault (one of {', '.join(FAULT_KINDS)})")


@dataclass
class FixedSystem:
    """A deterministic probe of the machine for the app (``qbench_tui.system.SystemProbe``):
    fixed devices, models and samples, for snapshot tests and demos."""

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
