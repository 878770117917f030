"""Typed, versioned settings: the base of every method, pass and runtime config, and its codecs.

Configs are stored as JSON in SQLite and edited by forms the app generates from the fields, so:
every field has a default and ``help`` metadata, choices are enums, ``__post_init__`` validates,
and :func:`config_to_dict` / :func:`config_from_dict` round-trip exactly. A field may carry a
``short`` label template (``"g{}"``) used when a recipe is named (``int4(g128)``).
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from dataclasses import dataclass
from typing import Any, ClassVar


def help_text(text: str, **extra: Any) -> dict[str, Any]:
    """Field metadata: ``help`` for forms and ``--help``; extras such as ``short``."""
    return {"help": text, **extra}


@dataclass(frozen=True)
class Config:
    """Base of every config. ``version`` changes when a field's meaning changes."""

    version: ClassVar[int] = 1
    # Settings that moved to another config: old name -> (runtime, its setting). Stored data (it
    # carries its version) drops them; a user who still spells one is told where it went.
    moved: ClassVar[dict[str, tuple[str, str]]] = {}

    def changed_fields(self) -> dict[str, Any]:
        """The fields whose value differs from the default, as plain values."""
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)
                if getattr(self, f.name) != f.default}

    def describe(self) -> str:
        """Short human text of the non-default settings, for tables."""
        return ", ".join(f"{k}={v}" for k, v in self.changed_fields().items())

    def short_label(self) -> str:
        """The non-default settings in a few characters each: ``g128``, ``entropy``, ``asym``."""
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            template = f.metadata.get("short")
            if isinstance(value, bool):
                parts.append(template[value] if isinstance(template, tuple) else f"{f.name}={value}".lower())
            elif template:
                parts.append(template.format(plain(value)))
            elif isinstance(value, enum.Enum):
                parts.append(str(value.value))
            else:
                parts.append(f"{f.name}={value}")
        return ",".join(parts)


def plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain JSON-able dict, with the config's version."""
    data = {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
    data["version"] = config.version
    return data


def config_from_dict(cls: type[Config], data: dict[str, Any] | None) -> Config:
    """Build ``cls`` from a dict; unknown keys are an error (typos must not pass silently)."""
    data = dict(data or {})
    version = data.pop("version", None)
    upgrade = getattr(cls, "upgrade", None)  # a config whose fields' meaning changed reads old data
    if upgrade is not None and isinstance(version, int) and version < cls.version:
        data = upgrade(data, version)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for name in sorted(set(data) & set(cls.moved) - known):
        if version is None:  # typed by a user, not read from storage
            raise ValueError(moved_message(cls, name, data[name]))
        data = {k: v for k, v in data.items() if k != name}
    unknown = set(data) - known
    if unknown:
        valid = ", ".join(sorted(known)) or "(none)"
        raise ValueError(f"unknown setting(s) for {cls.__name__}: {', '.join(sorted(unknown))}; valid: {valid}")
    kwargs = {name: coerce_field(hints[name], value) for name, value in data.items()}
    return cls(**kwargs)


def moved_message(cls: type[Config], name: str, value: Any = "VALUE") -> str:
    """Where ``cls``'s former setting ``name`` is now, in the CLI's and the Python API's spelling."""
    runtime, setting = cls.moved[name]
    value = plain(value)
    return (f"{name} is no longer a {cls.__name__} setting: it is the {runtime} runtime's {setting} "
            f"(CLI: --set {runtime}.{setting}={value}; app: the {runtime} runtime's settings; Python API: "
            f"runtime_settings={{{runtime!r}: {{{setting!r}: {value!r}}}}})")


def coerce_field(annotation: Any, value: Any) -> Any:
    """Convert a JSON or text value to the field's declared type."""
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        try:
            return annotation(value)
        except ValueError:
            choices = ", ".join(m.value for m in annotation)
            raise ValueError(f"{value!r} is not one of: {choices}") from None
    if annotation is bool:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{value!r} is not a boolean")
        return bool(value)
    if annotation is int:
        return int(value)
    if annotation is float:
        return float(value)
    return value


def field_specs(cls: type[Config]) -> list[dict[str, Any]]:
    """Description of each field for generated forms: name, type, default, help, choices."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        annotation = hints[f.name]
        is_enum = isinstance(annotation, type) and issubclass(annotation, enum.Enum)
        specs.append({
            "name": f.name,
            "type": annotation,
            "default": plain(f.default),
            "help": f.metadata.get("help", ""),
            "choices": [m.value for m in annotation] if is_enum else None,
        })
    return specs
