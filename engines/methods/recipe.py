"""Recipes: what is done to a model, as an ordered list of method configs.

``int4:group_size=128`` is a one-step recipe; ``qat-int8+static-int8`` would be two. Text becomes
a recipe once, where it enters (the CLI's ``--methods``, the app's form, the Python API, a stored
request read back): :func:`parse_recipe`. Inside, recipes travel as objects. A recipe is
format-neutral: :func:`engines.passes.plan` realises it for a runtime as a chain of registered
passes (``export-onnx → ort-matmul-nbits``). Its id is a stable hash of the steps' method names,
config versions and settings, so the same settings give the same id in every run and process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from engines.core.config import plain
from engines.methods.configs import (
    MethodConfig,
    coerce_field,
    config_from_dict,
    config_to_dict,
    field_specs,
    moved_message,
)
from engines.methods.registry import MethodSpec, method_spec, spec_for_config

STEP_SEPARATOR = "+"
FIELD_SEPARATOR = ":"


@dataclass(frozen=True)
class Recipe:
    steps: tuple[MethodConfig, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a recipe needs at least one step")

    @property
    def specs(self) -> list[MethodSpec]:
        return [spec_for_config(step) for step in self.steps]

    @property
    def method(self) -> str:
        """The first step's method: what filters and the legacy ``method`` column show."""
        return self.specs[0].name

    @property
    def bits(self) -> int:
        return min(spec.bits for spec in self.specs)

    def to_list(self) -> list[dict[str, Any]]:
        return [{"method": spec.name, "config": config_to_dict(step)} for spec, step in zip(self.specs, self.steps)]

    @classmethod
    def from_list(cls, steps: list[dict[str, Any]], lenient: bool = False) -> Recipe:
        """From :meth:`to_list`; ``lenient`` drops settings this release no longer knows (old rows)."""
        out = []
        for step in steps:
            config_class = method_spec(step["method"]).config_class
            data = dict(step.get("config") or {})
            if lenient:
                known = {s["name"] for s in field_specs(config_class)}
                data = {k: v for k, v in data.items() if k in known}
            out.append(config_from_dict(config_class, data))
        return cls(tuple(out))

    @property
    def id(self) -> str:
        payload = [{"method": spec.name, "version": step.version, "settings": step.changed_fields()}
                   for spec, step in zip(self.specs, self.steps)]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """Short human name: ``int4``, ``int4(g128)``, ``static-int8(entropy,per-tensor)``."""
        parts = []
        for spec, step in zip(self.specs, self.steps):
            short = step.short_label()
            parts.append(f"{spec.name}({short})" if short else spec.name)
        return STEP_SEPARATOR.join(parts)

    @property
    def spec_text(self) -> str:
        """The text that parses back into this recipe: ``int4:group_size=128``."""
        return self.text()

    def text(self, defaults: dict[str, dict[str, Any]] | None = None) -> str:
        """The text that ``parse_recipe(text, defaults)`` turns back into this recipe: the settings
        that differ from ``defaults`` (method → settings; none: the config's own defaults)."""
        parts = []
        for spec, step in zip(self.specs, self.steps):
            base = config_from_dict(spec.config_class, (defaults or {}).get(spec.name))
            fields = {f.name: plain(getattr(step, f.name)) for f in dataclasses.fields(step)
                      if getattr(step, f.name) != getattr(base, f.name)}
            parts.append(spec.name + "".join(f"{FIELD_SEPARATOR}{k}={v}" for k, v in fields.items()))
        return STEP_SEPARATOR.join(parts)

    @classmethod
    def default(cls, method: str | MethodSpec) -> Recipe:
        """The one-step recipe of ``method`` at its default settings."""
        spec = method if isinstance(method, MethodSpec) else method_spec(method)
        return cls((spec.default_config(),))


def parse_recipe(text: str, defaults: dict[str, dict[str, Any]] | None = None) -> Recipe:
    """``int4``, ``int4:group_size=128:symmetric=false`` or steps joined by ``+``.

    ``defaults`` (method → settings, from ``--set`` or the app's forms) apply first; the fields
    after ``:`` override them. Raises ValueError with the valid names or fields.
    """
    steps = []
    for part in text.split(STEP_SEPARATOR):
        name, *assignments = [p.strip() for p in part.strip().split(FIELD_SEPARATOR)]
        spec = method_spec(name)
        settings = dict((defaults or {}).get(name) or {})
        fields = {s["name"]: s for s in field_specs(spec.config_class)}
        for assignment in assignments:
            key, sep, value = assignment.partition("=")
            if not sep:
                raise ValueError(f"{text!r}: expected FIELD=VALUE after ':', got {assignment!r}")
            if key not in fields and key in spec.config_class.moved:
                raise ValueError(f"{text!r}: {moved_message(spec.config_class, key, value)}")
            if key not in fields:
                valid = ", ".join(fields) or "(none)"
                raise ValueError(f"{text!r}: {name} has no setting {key!r}; valid: {valid}")
            try:
                settings[key] = coerce_field(fields[key]["type"], value)
            except ValueError:
                raise ValueError(setting_error(name, spec.config_class, fields[key], value)) from None
        try:
            steps.append(config_from_dict(spec.config_class, settings))
        except ValueError as exc:
            raise ValueError(f"{text!r}: {name}: {exc}") from None
    return Recipe(tuple(steps))


def parse_recipes(texts: Iterable[str], defaults: dict[str, dict[str, Any]] | None = None) -> tuple[Recipe, ...]:
    """Several recipe texts (``--methods``, a form's choices), each through :func:`parse_recipe`."""
    return tuple(parse_recipe(text, defaults) for text in texts)


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "text"}


def setting_error(method: str, config_class: type, field: dict[str, Any], value: str) -> str:
    """A setting that does not parse: the method, the setting, the expected type and the valid values."""
    kind = field["type"]
    if field["choices"]:
        expected, valid = "one of its choices", ", ".join(map(str, field["choices"]))
    elif kind is bool:
        expected, valid = "true or false", "true/false, yes/no, on/off, 1/0"
    else:
        expected = _TYPE_NAMES.get(kind, getattr(kind, "__name__", str(kind)))
        valid = _valid_values(config_class, field) or field["help"] or "any"
    return (f"{method}: setting {field['name']} expects {expected}, got {value!r}; valid: {valid} "
            f"(default {field['default']})")


def _valid_values(config_class: type, field: dict[str, Any]) -> str | None:
    """The range a numeric setting accepts, as the config's own validation states it (probed with
    values no setting accepts)."""
    if field["type"] not in (int, float):
        return None
    for probe in (-(10**9), 10**9, 0):
        try:
            config_from_dict(config_class, {field["name"]: field["type"](probe)})
        except ValueError as exc:
            text = re.sub(r"\s*\(got [^)]*\)$", "", str(exc))
            return text[text.find(field["name"]):] if field["name"] in text else text
    return None
