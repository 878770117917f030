"""Finding the members of the registries: built-in modules once, and plugin modules.

A leaf: the registries (methods, passes, runtimes) call :func:`load` before answering, so what
they hold is complete whoever asks first, and none of them imports another registry or
:mod:`engines.plugins` to get there.

Plugins are modules named by the ``qbench.plugins`` entry-point group of any installed package,
or listed in ``$QBENCH_PLUGINS`` (comma-separated module names, for a plugin on ``PYTHONPATH``).
A plugin module registers what it brings when imported (``@register_method``, ``@register_pass``);
a runtime registry collects the ``SPEC`` of each imported plugin module (:func:`plugin_modules`).
"""

from __future__ import annotations

import functools
import importlib
import os
import threading
from collections.abc import Callable
from types import ModuleType

PLUGINS_ENV = "QBENCH_PLUGINS"
ENTRY_POINT_GROUP = "qbench.plugins"

_lock = threading.RLock()
_builtins: set[str] = set()
_plugins: dict[str, ModuleType] = {}
_tried: set[str] = set()  # a plugin that cannot be imported raises once, not on every lookup
_deferred = False  # the entry points are not scanned until scan_entry_points (defer_entry_points)


@functools.cache
def _entry_point_modules() -> tuple[str, ...]:
    # Reading every installed package's metadata costs tens of milliseconds: once per process
    # (the registries are consulted many times a second while the app refreshes its tables).
    from importlib.metadata import entry_points

    return tuple(ep.value.split(":")[0] for ep in entry_points(group=ENTRY_POINT_GROUP))


def defer_entry_points() -> None:
    """Leave the entry-point scan for :func:`scan_entry_points`: until then the registries hold the
    built-ins and ``$QBENCH_PLUGINS``'s modules only. For a program's first moments (the app's first
    frame): reading every installed package's metadata costs 0.1 s or more on a loaded machine."""
    global _deferred
    with _lock:
        _deferred = _entry_point_modules.cache_info().currsize == 0  # already scanned: nothing to defer


def scan_entry_points() -> list[str]:
    """Scan the entry points now (after :func:`defer_entry_points`); returns the plugin modules
    named there that are not imported yet (the registries import them when next asked)."""
    global _deferred
    names = _entry_point_modules()
    with _lock:
        _deferred = False
        return [n for n in names if n not in _tried]


def plugin_names() -> list[str]:
    """Module names of the plugins this process should load, entry points first."""
    names = [] if _deferred else list(_entry_point_modules())
    names += [n.strip() for n in os.environ.get(PLUGINS_ENV, "").split(",") if n.strip()]
    return list(dict.fromkeys(names))


def load(registry: str, builtins: Callable[[], None]) -> list[ModuleType]:
    """Run ``builtins`` (the registry's own modules) once per process, import every plugin not yet
    imported, and return the plugin modules imported so far (cheap when nothing is new)."""
    with _lock:
        if registry not in _builtins:
            _builtins.add(registry)  # first: the modules imported below may ask the registry again
            builtins()
        for name in plugin_names():
            if name not in _tried:
                _tried.add(name)
                _plugins[name] = _import_plugin(name)
        return list(_plugins.values())


def plugin_modules() -> list[ModuleType]:
    """The plugin modules imported so far."""
    with _lock:
        return list(_plugins.values())


def _import_plugin(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"qbench plugin {name!r} cannot be imported: {exc}") from exc
