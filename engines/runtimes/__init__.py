"""Runtimes: each is a plugin with a light spec (the app may read it) and a heavy session module.

A built-in runtime is a sub-package here whose ``__init__`` defines ``SPEC`` (a
:class:`RuntimeSpec`) and imports nothing heavy; ``SPEC.session`` names the module the child
imports to open artifacts: ``open_session(artifact, model, device, threads, config) -> Session``
and ``runtime_info() -> dict``. A plugin runtime can be a single module holding both
(:mod:`engines.plugins` finds it). Runtime-only knobs (compile, kernels, providers) are the
fields of the spec's ``config_class``, never of a method's config.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engines.core import discovery
from engines.core.config import Config

if TYPE_CHECKING:
    from engines.core.formats import Format
    from engines.methods.registry import MethodSpec


@dataclass(frozen=True)
class RuntimeConfig(Config):
    """Base of every runtime config (a runtime without knobs uses it as it is)."""


@dataclass(frozen=True)
class RuntimeSpec:
    name: str  # the CLI name: torch, onnxruntime, …
    title: str
    formats: tuple[Format, ...]  # what it opens
    devices: tuple[str, ...]  # devices it has a backend for
    package: str  # import name of the library it needs (checked without importing it)
    session: str  # module with open_session() and runtime_info(), imported in the child only
    config_class: type[RuntimeConfig] = RuntimeConfig
    extra: str | None = None  # the optional dependency group that installs it
    # Which methods it runs, asked of each method's spec (None: whatever the pass planner reaches);
    # for a runtime whose formats other passes also produce, e.g. ``lambda m: m.is_reference``.
    accepts: Callable[[MethodSpec], bool] | None = None
    order: int = 100  # position in listings
    # Why a device it has a backend for cannot run on this machine (light: the library is not imported),
    # or None; the runner records the reason as `unsupported` without spawning a child.
    refusal: Callable[[str], str | None] | None = None
    # Its passes build the artifact for a device this machine lacks (Core ML programs for the Neural
    # Engine, on Linux): the variant is planned and converted, and its session refuses with the reason.
    builds_without_device: bool = False
    # The model tasks it runs (None: any): llama.cpp runs causal language models only.
    tasks: tuple[str, ...] | None = None

    def installed(self) -> bool:
        from engines.devices import package_installed

        return package_installed(self.package)

    def install_hint(self) -> str:
        return f"uv sync --extra {self.extra}" if self.extra else f"pip install {self.package}"


_RUNTIMES: dict[str, RuntimeSpec] = {}


def register_runtime(spec: RuntimeSpec) -> RuntimeSpec:
    existing = _RUNTIMES.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(f"runtime {spec.name!r} is registered twice")
    _RUNTIMES[spec.name] = spec
    return spec


def load_builtin_runtimes() -> None:
    import engines.runtimes as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg:
            module = importlib.import_module(f"engines.runtimes.{info.name}")
            if isinstance(getattr(module, "SPEC", None), RuntimeSpec):
                register_runtime(module.SPEC)


def all_runtimes() -> dict[str, RuntimeSpec]:
    for module in discovery.load("runtimes", load_builtin_runtimes):
        if isinstance(getattr(module, "SPEC", None), RuntimeSpec):
            register_runtime(module.SPEC)
    return dict(sorted(_RUNTIMES.items(), key=lambda item: (item[1].order, item[0])))


def runtime_spec(name: str) -> RuntimeSpec:
    runtimes = all_runtimes()
    if name not in runtimes:
        raise ValueError(f"unknown runtime {name!r}; valid: {', '.join(runtimes)}")
    return runtimes[name]
