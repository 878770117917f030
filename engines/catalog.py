"""What exists and what can run where, derived from the registrations (no heavy import).

``METHODS`` and ``RUNTIMES`` are read from the method and runtime registries each time they
are looked up, so a plugin loaded later shows up too. :func:`unsupported_reason` answers for a
recipe (parsed where its text entered; ``Recipe.default(name)`` for a method at its defaults) on a
runtime × device, from the runtime's spec, the device detection and
the pass planner (:func:`engines.passes.plan`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engines.core.formats import Format
from engines.devices import detect_devices, device_info
from engines.methods.recipe import Recipe
from engines.methods.registry import MethodSpec, all_methods
from engines.passes import Plan, plan
from engines.runtimes import RuntimeSpec, all_runtimes, runtime_spec

if TYPE_CHECKING:
    from collections.abc import Mapping


def __getattr__(name: str) -> Any:
    # Module attributes computed on access (PEP 562): the registries may grow (plugins).
    if name == "METHODS":
        return all_methods()
    if name == "RUNTIMES":
        return all_runtimes()
    raise AttributeError(name)


METHODS: Mapping[str, MethodSpec]
RUNTIMES: Mapping[str, RuntimeSpec]


def method_names() -> list[str]:
    return list(all_methods())


def runtime_names() -> list[str]:
    return list(all_runtimes())


def _typed(recipe: Recipe) -> Recipe:
    if not isinstance(recipe, Recipe):
        raise TypeError(f"the catalog judges recipes, not text ({recipe!r}): parse it where it enters "
                        "(engines.methods.recipe.parse_recipe(text, defaults)), or Recipe.default(name)")
    return recipe


def runtime_refusal(runtime: RuntimeSpec, device: str, planning: bool = False) -> str | None:
    """Why ``runtime`` cannot run on ``device`` on this machine at all, or None. ``planning``: a
    runtime whose passes build for an absent device (``builds_without_device``) is not refused for
    its absence (its session refuses later, after the artifact is built and recorded)."""
    if device not in runtime.devices:
        return f"{runtime.title} has no {device} backend"
    if runtime.refusal is not None and (reason := runtime.refusal(device)):
        return reason
    info = device_info(device)
    if (info is None or not info.present) and not (planning and runtime.builds_without_device):
        return f"device {device} is not present: {info.detail if info else 'unknown device'}"
    if not runtime.installed():
        return f"{runtime.package} is not installed (`{runtime.install_hint()}`)"
    return None


def plan_variant(recipe: Recipe, runtime: str, device: str, source: Format = Format.TORCH) -> Plan | str:
    """The chain of passes for this variant, or the reason it cannot run here."""
    rt = runtime_spec(runtime)
    reason = runtime_refusal(rt, device, planning=True)
    if reason:
        return reason
    recipe = _typed(recipe)
    if rt.accepts is not None:
        refused = [s.name for s in recipe.specs if not rt.accepts(s)]
        if refused:
            return f"{rt.title} runs {', '.join(accepted_methods(rt) or ['nothing'])} only, not {', '.join(refused)}"
    return plan(recipe, source, rt, device)


def accepted_methods(runtime: RuntimeSpec) -> list[str] | None:
    """The registered methods ``runtime`` restricts itself to (its ``accepts``), or None: no restriction."""
    if runtime.accepts is None:
        return None
    return [name for name, spec in all_methods().items() if runtime.accepts(spec)]


def unsupported_reason(recipe: Recipe, runtime: str, device: str, source: Format = Format.TORCH) -> str | None:
    """Why ``recipe`` cannot run on ``runtime`` × ``device`` here, or None."""
    result = plan_variant(recipe, runtime, device, source)
    return result if isinstance(result, str) else None


def support_matrix(device: str = "cpu") -> dict[tuple[str, str], str | None]:
    """(method, runtime) -> reason or None, for one device."""
    return {(m, r): unsupported_reason(Recipe.default(spec), r, device)
            for m, spec in all_methods().items() for r in all_runtimes()}


__all__ = [
    "METHODS", "RUNTIMES", "MethodSpec", "RuntimeSpec", "accepted_methods", "detect_devices", "method_names",
    "plan_variant", "runtime_names", "runtime_refusal", "support_matrix", "unsupported_reason",
]
