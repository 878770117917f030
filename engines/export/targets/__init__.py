"""Export targets: a registry like the runtimes'. Each target is a sub-package here whose ``__init__``
defines ``SPEC`` (:class:`~engines.export.targets.base.ExportTarget`) and imports nothing heavy;
``SPEC.module`` names the heavy module with its writer, metadata reader / writer, validation
session and deploy templates (:data:`~engines.export.targets.base.REQUIRED`). A plugin target is a
module named by the ``qbench.plugins`` entry points or ``$QBENCH_PLUGINS`` whose ``SPEC`` is an
``ExportTarget`` (it may hold the five functions itself: ``module`` is then its own name).

Callers use :func:`export_target` (the spec) and :func:`implementation` (the functions); nothing
looks a target up by spelling a function or module name.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from pathlib import Path
from types import ModuleType

from engines.export.targets.base import REQUIRED, ExportError, ExportTarget

_TARGETS: dict[str, ExportTarget] = {}
_lock = threading.RLock()
_builtins_loaded = False
_plugins_seen: set[str] = set()


def register_target(spec: ExportTarget) -> ExportTarget:
    existing = _TARGETS.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(f"export target {spec.name!r} is registered twice")
    _TARGETS[spec.name] = spec
    return spec


def _load() -> None:
    global _builtins_loaded
    with _lock:
        if not _builtins_loaded:
            _builtins_loaded = True
            import engines.export.targets as package

            for info in pkgutil.iter_modules(package.__path__):
                if info.ispkg:
                    module = importlib.import_module(f"{package.__name__}.{info.name}")
                    if isinstance(getattr(module, "SPEC", None), ExportTarget):
                        register_target(module.SPEC)
        from engines.plugins import plugin_modules

        for name in plugin_modules():
            if name in _plugins_seen:
                continue
            _plugins_seen.add(name)
            try:
                module = importlib.import_module(name)
            except ImportError as exc:
                raise ImportError(f"qbench plugin {name!r} cannot be imported: {exc}") from exc
            if isinstance(getattr(module, "SPEC", None), ExportTarget):
                register_target(module.SPEC)


def all_targets() -> dict[str, ExportTarget]:
    _load()
    return dict(sorted(_TARGETS.items(), key=lambda item: (item[1].order, item[0])))


def export_target(name: str) -> ExportTarget:
    targets = all_targets()
    if name not in targets:
        raise ExportError(f"unknown format {name!r}; valid: {', '.join(targets)}")
    return targets[name]


def implementation(spec: ExportTarget | str) -> ModuleType:
    """The target's heavy module, checked to hold every function of the contract."""
    spec = export_target(spec) if isinstance(spec, str) else spec
    module = importlib.import_module(spec.module)
    missing = [name for name in REQUIRED if not callable(getattr(module, name, None))]
    if missing:
        raise TypeError(f"export target {spec.name!r}: {spec.module} lacks {', '.join(missing)}")
    return module


def read_metadata(name: str, path: Path) -> dict[str, str]:
    """The ``qbench.*`` metadata read back from inside an exported file (not the side-car)."""
    return implementation(name).read_metadata(Path(path))
