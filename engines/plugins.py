"""Finds every family member: built-in methods, passes and runtimes, and plugins.

Built-ins are the modules of ``engines.methods``, ``engines.passes`` and ``engines.runtimes``.
Plugins are modules named by the ``qbench.plugins`` entry-point group of any installed package,
or listed in ``$QBENCH_PLUGINS`` (comma-separated module names, for a plugin on ``PYTHONPATH``).
A plugin module registers what it brings when imported: ``@register_method`` configs,
``@register_pass`` functions, and a runtime as a module-level ``SPEC`` (:class:`RuntimeSpec`).
Every one of these modules must import only light things at import time (the app imports them
to list what exists); heavy libraries are imported inside the functions the child calls.

Each registry loads its members itself on first use (through the leaf
:mod:`engines.core.discovery`); :func:`load_all` fills all three at once, for an entry point
that wants them ready (the worker's preload). Nothing below imports this module.
"""

from __future__ import annotations

from engines.core.discovery import ENTRY_POINT_GROUP, PLUGINS_ENV, plugin_names
from engines.methods.registry import all_methods
from engines.passes import all_passes
from engines.runtimes import all_runtimes

__all__ = ["ENTRY_POINT_GROUP", "PLUGINS_ENV", "load_all", "plugin_modules"]


def plugin_modules() -> list[str]:
    """Module names of the plugins this process should load, entry points first."""
    return plugin_names()


def load_all() -> None:
    """Import built-ins once, and any plugin not yet imported (cheap when nothing is new)."""
    all_methods()
    all_passes()
    all_runtimes()
