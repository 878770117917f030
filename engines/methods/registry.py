"""The method registry: each method is a config class registered under a name, with its facts.

A method family is one module in this package (``floats``, ``int8``, ``int4``, …) whose config
classes carry :func:`register_method`; plugins add theirs the same way (``engines.plugins``).
Registering imports nothing heavy, so the app can list methods and generate their forms.

What a method *is* lives here, on its :class:`MethodSpec`, never in a table of names elsewhere:
what it computes in (:class:`Compute`), whether it is the float reference, which methods stand in
for it where it cannot be expressed (``fallbacks``), and whether it needs calibration or training
data. Views ask the spec (``method_spec(name).compute``), so a new method is one module.
"""

from __future__ import annotations

import enum
import importlib
import pkgutil
from dataclasses import dataclass

from engines.core import discovery
from engines.methods.configs import MethodConfig


class Compute(str, enum.Enum):
    """What a method's model computes in."""

    FLOAT = "float"  # float weights and arithmetic (the reference, fp16, graph rewrites)
    WEIGHT_ONLY = "weight-only"  # fewer weight bits, dequantized for float arithmetic
    INT = "int"  # integer arithmetic: int8 weights and activations (dynamic or static scales)
    MIXED = "mixed"  # layer by layer: some float, the rest quantized (the mix is chosen per model)


@dataclass(frozen=True)
class MethodSpec:
    """Light metadata of a method; its work is done by the passes registered for ``config_class``."""

    name: str
    title: str
    bits: int
    config_class: type[MethodConfig]
    description: str
    needs_calibration: bool = False
    needs_training_data: bool = False
    is_reference: bool = False  # the float reference: nothing is applied, every variant is compared with it
    order: int = 100  # position in listings
    compute: Compute = Compute.WEIGHT_ONLY
    fallbacks: tuple[str, ...] = ()  # methods offered instead where this one cannot be expressed, best first

    @property
    def transforms(self) -> bool:
        """False for the reference: no pass carries it out."""
        return not self.is_reference

    def default_config(self) -> MethodConfig:
        return self.config_class()


_METHODS: dict[str, MethodSpec] = {}
_BY_CLASS: dict[type, MethodSpec] = {}


def register_method(name: str, *, title: str, bits: int, description: str, compute: Compute,
                    needs_calibration: bool = False, needs_training_data: bool = False,
                    is_reference: bool = False, fallbacks: tuple[str, ...] = (), order: int = 100):
    """Class decorator: ``@register_method("int4", title=…, bits=4, compute=Compute.WEIGHT_ONLY, …)``."""

    def register(cls: type[MethodConfig]) -> type[MethodConfig]:
        if name in _METHODS and _METHODS[name].config_class is not cls:
            raise ValueError(f"method {name!r} is registered twice")
        spec = MethodSpec(name, title, bits, cls, description, needs_calibration, needs_training_data,
                          is_reference, order, Compute(compute), tuple(fallbacks))
        _METHODS[name] = spec
        _BY_CLASS[cls] = spec
        return cls

    return register


def load_builtin_methods() -> None:
    """Import every family module of this package (each registers its configs)."""
    import engines.methods as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in ("configs", "registry", "recipe"):
            importlib.import_module(f"engines.methods.{info.name}")


def all_methods() -> dict[str, MethodSpec]:
    discovery.load("methods", load_builtin_methods)
    return dict(sorted(_METHODS.items(), key=lambda item: (item[1].order, item[0])))


def method_spec(name: str) -> MethodSpec:
    methods = all_methods()
    if name not in methods:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(methods)}")
    return methods[name]


def find_method(name: str) -> MethodSpec | None:
    """The spec of ``name``, or None for a name not registered (a stored result of a removed method)."""
    return all_methods().get(name)


def spec_for_config(config: MethodConfig) -> MethodSpec:
    try:
        return _BY_CLASS[type(config)]
    except KeyError:
        raise ValueError(f"{type(config).__name__} is not a registered method config") from None


def reference_methods() -> tuple[str, ...]:
    """Names of the registered float references (``is_reference``), in listing order."""
    return tuple(name for name, spec in all_methods().items() if spec.is_reference)


def reference_method() -> str:
    """The float reference's name (the first registered reference)."""
    names = reference_methods()
    if not names:
        raise ValueError("no registered method is the float reference")
    return names[0]
