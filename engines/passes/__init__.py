"""Passes: format → format transforms, registered against the config type they carry out.

A pass is a function ``fn(ctx, artifact, config) -> Artifact`` decorated with
:func:`register_pass`, which states the config class it implements (``None`` for a conversion
such as ``export-onnx``), its input and output formats, which runtimes can run what it produces,
and the devices it cannot serve with the reason. :func:`plan` turns a recipe into the chain of
passes that takes a model's source format to a format the chosen runtime opens, or explains why
there is none; support tables (``qbench methods``, the app's configurator) are derived from it.

Pass modules import nothing heavy at import time: the heavy work happens inside the functions,
which only the child process that measures a variant calls.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engines.core import discovery
from engines.core.config import Config, config_to_dict
from engines.core.formats import Format  # re-exported: the pass modules take it from here

if TYPE_CHECKING:
    from engines.methods.recipe import Recipe
    from engines.models.base import LoadedModel
    from engines.runtimes import RuntimeSpec
    from engines.runtimes.base import Artifact


@dataclass
class PassContext:
    """What a pass may use besides its input artifact and config."""

    model: LoadedModel
    workdir: Path
    runtime: str
    device: str
    threads: int
    emit: Callable[..., None] = lambda *args, **kwargs: None  # progress events (QAT epochs, …)
    batch_sizes: tuple[int, ...] = (1,)  # the sweep's: a program with fixed shapes takes exactly these
    # The variant's runtime config (engines.runtimes.RuntimeConfig; None: its defaults): a runtime's
    # choice a pass carries out, e.g. the torch runtime's dynamic_int8 library.
    runtime_config: Any = None


PassFn = Callable[[PassContext, "Artifact", Any], "Artifact"]


@dataclass(frozen=True)
class PassSpec:
    name: str
    fn: PassFn
    config_class: type[Config] | None  # None: a conversion, applied whenever the planner needs it
    input: Format
    output: Format
    runtimes: tuple[str, ...] | None = None  # who can run the output (None: any runtime of that format)
    unsupported: dict[str, str] = field(default_factory=dict)  # device -> reason
    check: Callable[[Any], str | None] | None = None  # config -> reason it cannot be done, or None
    description: str = ""
    # Settings of its config that are this pass's own options (a backend's knobs: ONNX Runtime's
    # quant_format, torch PT2E's torch_bias_correction). A variant for a runtime none of their passes serves
    # leaves them at their defaults (:func:`for_runtime`): they are not part of what it measures.
    owns: tuple[str, ...] = ()

    def refusal(self, runtime: str, device: str, config: Any) -> str | None:
        if self.runtimes is not None and runtime not in self.runtimes:
            return f"{self.name} produces a graph only {', '.join(self.runtimes)} can run"
        if device in self.unsupported:
            return self.unsupported[device]
        if self.check is not None and config is not None:
            return self.check(config)
        return None


_PASSES: dict[str, PassSpec] = {}


def register_pass(name: str, *, config: type[Config] | None, input: Format, output: Format,
                  runtimes: tuple[str, ...] | None = None, unsupported: dict[str, str] | None = None,
                  check: Callable[[Any], str | None] | None = None, owns: tuple[str, ...] = ()):
    """Function decorator registering a pass (see the module's docstring)."""

    def register(fn: PassFn) -> PassFn:
        if name in _PASSES and _PASSES[name].fn is not fn:
            raise ValueError(f"pass {name!r} is registered twice")
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        _PASSES[name] = PassSpec(name, fn, config, input, output, runtimes, dict(unsupported or {}), check,
                                 doc, tuple(owns))
        return fn

    return register


def load_builtin_passes() -> None:
    import engines.passes as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"engines.passes.{info.name}")


def all_passes() -> dict[str, PassSpec]:
    discovery.load("passes", load_builtin_passes)
    return dict(_PASSES)


def get_pass(name: str) -> PassSpec:
    passes = all_passes()
    if name not in passes:
        raise ValueError(f"unknown pass {name!r}; registered: {', '.join(passes)}")
    return passes[name]


def for_runtime(recipe: Recipe, runtime: str) -> Recipe:
    """``recipe`` as a variant on ``runtime`` measures it: each step's pass options (``owns``) that
    only passes for other runtimes read are back at their defaults (``dynamic-int8:quantize_conv=
    true`` on torch is ``dynamic-int8``), so the variant's id and label say what ran."""
    steps = []
    for step in recipe.steps:
        serving: dict[str, set[str]] = {}  # option -> the runtimes its owners serve
        anywhere: set[str] = set()  # options some owner serves whatever the runtime
        for p in all_passes().values():
            if p.config_class is type(step):
                for name in p.owns:
                    if p.runtimes is None:
                        anywhere.add(name)
                    serving.setdefault(name, set()).update(p.runtimes or ())
        defaults = type(step)()
        unread = {name: getattr(defaults, name) for name, runtimes in serving.items()
                  if name not in anywhere and runtime not in runtimes and getattr(step, name) != getattr(defaults, name)}
        steps.append(dataclasses.replace(step, **unread) if unread else step)
    return recipe if all(a is b for a, b in zip(recipe.steps, steps)) else type(recipe)(tuple(steps))


# --- planning ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedPass:
    spec: PassSpec
    config: Config | None  # the recipe step it carries out (None for conversions)

    def to_dict(self) -> dict[str, Any]:
        return {"pass": self.spec.name, "config": config_to_dict(self.config) if self.config else None}


@dataclass(frozen=True)
class Plan:
    source: Format
    passes: tuple[PlannedPass, ...]

    @property
    def names(self) -> list[str]:
        return [p.spec.name for p in self.passes]

    @property
    def output(self) -> Format:
        return self.passes[-1].spec.output if self.passes else self.source


def plan(recipe: Recipe, source: Format, runtime: RuntimeSpec, device: str) -> Plan | str:
    """The shortest chain of passes realising ``recipe`` from ``source`` for ``runtime`` on
    ``device``, or the reason there is none (the most specific refusal met on the way)."""
    passes = list(all_passes().values())
    steps = recipe.steps
    specs = recipe.specs
    start = (source, 0)
    queue: deque[tuple[Format, int]] = deque([start])
    came_from: dict[tuple[Format, int], tuple[tuple[Format, int], PlannedPass | None] | None] = {start: None}
    refusals: list[tuple[int, bool, str]] = []  # (step reached, the pass serves this runtime, reason)
    while queue:
        fmt, i = queue.popleft()
        if i == len(steps) and fmt in runtime.formats:
            chain: list[PlannedPass] = []
            node: tuple[Format, int] = (fmt, i)
            while came_from[node] is not None:
                node, edge = came_from[node]  # type: ignore[misc]
                if edge is not None:
                    chain.append(edge)
            return Plan(source, tuple(reversed(chain)))
        moves: list[tuple[tuple[Format, int], PlannedPass | None]] = []
        if i < len(steps) and specs[i].is_reference:
            moves.append(((fmt, i + 1), None))
        for spec in passes:
            if spec.input is not fmt:
                continue
            if spec.config_class is None:
                config = None
            elif i < len(steps) and isinstance(steps[i], spec.config_class):
                config = steps[i]
            else:
                continue
            reason = spec.refusal(runtime.name, device, config)
            if reason:
                # A conversion towards another runtime's format explains nothing about this one.
                serves = spec.runtimes is None or runtime.name in spec.runtimes
                if config is not None or serves:
                    refusals.append((i, serves, reason))
                continue
            moves.append(((spec.output, i + (config is not None)), PlannedPass(spec, config)))
        for target, edge in moves:
            if target not in came_from:
                came_from[target] = ((fmt, i), edge)
                queue.append(target)
    if refusals:
        step, serves, reason = max(refusals, key=lambda r: (r[0], r[1]))
        if not serves:  # every pass for this step makes what other runtimes run
            others = sorted({r for p in passes if p.config_class is not None and step < len(steps)
                             and isinstance(steps[step], p.config_class) for r in (p.runtimes or ())})
            return (f"{runtime.title} has no pass for {specs[step].name}; its passes make what only "
                    f"{', '.join(others)} can run")
        return reason
    if source not in runtime.formats and not any(p.input is source for p in passes):
        return f"{runtime.title} cannot open a {source.title} and no pass converts one"
    names = " + ".join(s.title for s in specs)
    opens = ", ".join(f.title for f in runtime.formats)
    return f"no registered pass carries out {names} on a {source.title} for {runtime.title} (it opens {opens})"
