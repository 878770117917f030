"""A settings form generated from a method's config dataclass (``engines.methods.configs.field_specs``).

bool fields become check boxes, enums become selects, numbers become validated inputs; the help
text of each field is shown under it. A new method or field needs no UI code.
"""

from __future__ import annotations

import enum
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.validation import ValidationResult, Validator
from textual.widgets import Checkbox, Input, Label, Select, Static

from engines.methods import configs
from qbench_tui.widgets.checks import TextCheckbox
from qbench_tui.widgets.readout import set_text


class _FieldValidator(Validator):
    """Checks one text field with the engine's own coercion (so the form and the CLI agree)."""

    def __init__(self, annotation: Any):
        super().__init__()
        self.annotation = annotation

    def validate(self, value: str) -> ValidationResult:
        try:
            configs.coerce_field(self.annotation, value)
        except (ValueError, TypeError) as exc:
            return self.failure(str(exc) or "invalid value")
        return self.success()


def field_widget_id(method: str, name: str) -> str:
    return f"cfg-{method}-{name}"


class MethodSettingsForm(Vertical):
    """The settings of one method; ``values()`` returns only what differs from the defaults."""

    def __init__(self, method: str, config_class: type, initial: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.method = method
        self.config_class = config_class
        self.specs = configs.field_specs(config_class)
        self.initial = {k: _plain(v) for k, v in (initial or {}).items()}

    def compose(self) -> ComposeResult:
        for spec in self.specs:
            wid = field_widget_id(self.method, spec["name"])
            with Horizontal(classes="field-row"):
                yield Label(spec["name"].replace("_", " "), classes="field-name")
                yield self._control({**spec, "default": self.initial.get(spec["name"], spec["default"])}, wid)
            if spec["help"]:
                yield Static(spec["help"], classes="field-help", markup=False)
        yield Static("", classes="form-error")

    @staticmethod
    def _control(spec: dict[str, Any], wid: str):
        annotation, default = spec["type"], spec["default"]
        if annotation is bool:
            return TextCheckbox("", value=bool(default), id=wid, classes="field-control", compact=True)
        if spec["choices"]:
            return Select([(c, c) for c in spec["choices"]], value=default, allow_blank=False,
                          compact=True, id=wid, classes="field-control")
        kind = "integer" if annotation is int else "number" if annotation is float else "text"
        return Input(str(default), type=kind, compact=True, id=wid, classes="field-control",
                     validators=[_FieldValidator(annotation)], validate_on=["changed", "blur"])

    def raw_values(self) -> dict[str, Any]:
        """Every field's current value, coerced to its type (raises ValueError on bad text)."""
        out: dict[str, Any] = {}
        for spec in self.specs:
            found = self.query(f"#{field_widget_id(self.method, spec['name'])}")
            # Mounted a moment ago and not composed yet, or composed and not mounted yet (a
            # Select's value is Select.NULL until its own mount): what it will show. A key pressed
            # just after the form was mounted (r at start-up) reads the form here.
            if not found or not found.first().is_mounted:
                out[spec["name"]] = self.initial.get(spec["name"], spec["default"])
                continue
            widget = found.first()
            if isinstance(widget, Checkbox):
                value: Any = widget.value
            elif isinstance(widget, Select):
                value = widget.value
            else:
                value = widget.value  # type: ignore[attr-defined]
            try:
                out[spec["name"]] = configs.coerce_field(spec["type"], value)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{self.method}.{spec['name']}: {exc}") from None
        return out

    def values(self) -> dict[str, Any]:
        """Non-default settings, validated by the config class itself (``__post_init__``)."""
        raw = self.raw_values()
        changed = {k: _plain(v) for k, v in raw.items()
                   if _plain(v) != next(s["default"] for s in self.specs if s["name"] == k)}
        try:
            configs.config_from_dict(self.config_class, changed)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{self.method}: {exc}") from None
        return changed

    def set_values(self, data: dict[str, Any]) -> None:
        self.initial.update({k: _plain(v) for k, v in data.items()})
        for spec in self.specs:
            found = self.query(f"#{field_widget_id(self.method, spec['name'])}")
            if spec["name"] not in data or not found:
                continue
            widget = found.first()
            value = _plain(data[spec["name"]])
            if isinstance(widget, Checkbox):
                widget.value = bool(value)
            elif isinstance(widget, Select):
                if value in (spec["choices"] or []):
                    widget.value = value
            else:
                widget.value = str(value)  # type: ignore[attr-defined]

    def check(self) -> str | None:
        """Validate and show the problem under the form; returns it (None when valid)."""
        try:
            self.values()
            problem = None
        except ValueError as exc:
            problem = str(exc)
        errors = self.query(".form-error")
        if not errors:
            return problem
        error = errors.first(Static)
        # Checked at each run: set_text and display lay the screen out only when they change.
        set_text(error, Content.from_markup("[$text-error]$p[/]", p=problem) if problem else Content(""),
                 fixed_height=False)
        error.display = problem is not None
        return problem


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value
