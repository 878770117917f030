"""The method registry: each method is a config class registered under a name.

A method family is one module in this package (``floats``, ``int8``, ``int4``, …) whose config
classes carry :func:`register_method`; plugins add theirs the same way (``engines.plugins``).
Registering imports nothing heavy, so the app can list methods and generate their forms.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

from engines.methods.configs import MethodConfig


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
    transforms: bool = True  # False for the float reference: no pass is applied
    order: int = 100  # position in listings

    def default_config(self) -> MethodConfig:
        return self.config_class()


_METHODS: dict[str, MethodSpec] = {}
_BY_CLASS: dict[type, MethodSpec] = {}


def register_method(name: str, *, title: str, bits: int, description: str, needs_calibration: bool = False,
                    needs_training_data: bool = False, transforms: bool = True, order: int = 100):
    """Class decorator: ``@register_method("int4", title=…, bits=4, description=…)``."""

    def register(cls: type[MethodConfig]) -> type[MethodConfig]:
        if name in _METHODS and _METHODS[name].config_class is not cls:
            raise ValueError(f"method {name!r} is registered twice")
        spec = MethodSpec(name, title, bits, cls, description, needs_calibration, needs_training_data,
                          transforms, order)
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
    from engines import plugins

    plugins.load_all()
    return dict(sorted(_METHODS.items(), key=lambda item: (item[1].order, item[0])))


def method_spec(name: str) -> MethodSpec:
    methods = all_methods()
    if name not in methods:
        raise ValueError(f"unknown method {name!r}; valid: {', '.join(methods)}")
    return methods[name]


def spec_for_config(config: MethodConfig) -> MethodSpec:
    try:
        return _BY_CLASS[type(config)]
    except KeyError:
        raise ValueError(f"{type(config).__name__} is not a registered method config") from None
