"""Finds every family member: built-in methods, passes and runtimes, and plugins.

Built-ins are the modules of ``engines.methods``, ``engines.passes`` and ``engines.runtimes``.
Plugins are modules named by the ``qbench.plugins`` entry-point group of any installed package,
or listed in ``$QBENCH_PLUGINS`` (comma-separated module names, for a plugin on ``PYTHONPATH``).
A plugin module registers what it brings when imported: ``@register_method`` configs,
``@register_pass`` functions, and a runtime as a module-level ``SPEC`` (:class:`RuntimeSpec`).
Every one of these modules must import only light things at import time (the app imports them
to list what exists); heavy libraries are imported inside the functions the child calls.
"""

from __future__ import annotations

import functools
import importlib
import os
import threading

PLUGINS_ENV = "QBENCH_PLUGINS"
ENTRY_POINT_GROUP = "qbench.plugins"

_lock = threading.RLock()
_loaded: set[str] = set()
_builtins_loaded = False


@functools.cache
def _entry_point_modules() -> tuple[str, ...]:
    # Reading every installed package's metadata costs tens of milliseconds: once per process
    # (the registries are consulted many times a second while the app refreshes its tables).
    from importlib.metadata import entry_points

    return tuple(ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP))


def plugin_modules() -> list[str]:
    """Module names of the plugins this process should load, entry points first."""
    names = list(_entry_point_modules())
    names += [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    return list(dict.fromkeys(names))


def load_all() -> None:
    """Import built-ins once, and any plugin not yet imported (cheap when nothing is new)."""
    global _builtins_loaded
    with _lock:
        if not _builtins_loaded:
            _builtins_loaded = True  # first: the modules below call back into the registries
            from engines.methods.registry import load_builtin_methods
            from engines.passes import load_builtin_passes
            from engines.runtimes import load_builtin_runtimes

            load_builtin_methods()
            load_builtin_passes()
            load_builtin_runtimes()
        for name in plugin_modules():
            if name not in _loaded:
                _loaded.add(name)
                _load_plugin(name)


def _load_plugin(name: str) -> None:
    from engines.runtimes import RuntimeSpec, register_runtime

    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"qbench plugin {name!r} cannot be imported: {exc}") from exc
    spec = getattr(module, "SPEC", None)
    if isinstance(spec, RuntimeSpec):
        register_runtime(spec)
