"""Extra variants in the sweep set-up: "Add as variant" under a method's form keeps its current
settings as an extra recipe (``int4:group_size=128``), shown as a row with a remove button.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Static

from qbench_tui.controllers.sweep import SetupError, method_spec
from qbench_tui.widgets.method_form import MethodSettingsForm


class VariantRow(Horizontal):
    """One extra recipe in the set-up, with its remove button."""

    def __init__(self, spec: str, **kwargs: Any):
        super().__init__(classes="variant-row", **kwargs)
        self.spec = spec

    def compose(self) -> ComposeResult:
        yield Static(self.spec, classes="variant-spec", markup=False)
        yield Button("✕", classes="remove-variant", compact=True, tooltip=f"Remove {self.spec} from the sweep")



class ExtraVariants:
    """Mixed into :class:`~qbench_tui.widgets.sweep_setup.SweepSetupPane`."""

    variants: list[str]
    details_ready: bool
    _pending_details: dict[str, Any]
    if TYPE_CHECKING:
        from textual.message import Message

        Changed: type[Message]

        def query_one(self, selector: Any, expect_type: Any = None) -> Any: ...
        def notify(self, message: str, **kwargs: Any) -> None: ...
        def post_message(self, message: Any) -> bool: ...
        def refresh_summary(self) -> None: ...

    def on_button_pressed(self, event: Button.Pressed) -> None:
        button_id = event.button.id or ""
        if button_id.startswith("add-variant-"):
            event.stop()
            self.add_variant_from_form(button_id.removeprefix("add-variant-"))
        elif event.button.has_class("remove-variant") and isinstance(event.button.parent, VariantRow):
            event.stop()
            self.remove_variant(event.button.parent.spec)

    def add_variant_from_form(self, method: str) -> str | None:
        """Keep ``method``'s current form settings as an extra variant; returns its spec (None if refused)."""
        form = self.query_one(f"#form-{method}", MethodSettingsForm)
        problem = form.check()
        if problem:
            self.notify(problem, title="cannot add the variant", severity="error")
            return None
        values = form.values()
        if not values:
            self.notify(f"these are {method}'s default settings: that is {method} itself (tick it in the list)",
                        title="nothing to add", severity="warning")
            return None
        try:
            spec = method_spec(method, values)
        except SetupError as exc:
            self.notify(str(exc), title="cannot add the variant", severity="error")
            return None
        if spec in self.variants:
            self.notify(f"{spec} is in the sweep already", severity="warning", timeout=3)
            return None
        self.set_variants([*self.variants, spec])
        self.notify(f"added {spec}", timeout=2)
        return spec

    def remove_variant(self, spec: str) -> None:
        self.set_variants([v for v in self.variants if v != spec])

    def set_variants(self, specs: list[str]) -> None:
        """Show ``specs`` as the extra variants (duplicates dropped)."""
        self.variants = list(dict.fromkeys(specs))
        if not self.details_ready:  # shown by mount_details
            self._pending_details["variants"] = self.variants
            self.refresh_summary()
            return
        holder = self.query_one("#variants", Vertical)
        holder.remove_children()
        holder.mount_all([VariantRow(spec) for spec in self.variants])
        self.query_one("#variants-title").display = bool(self.variants)
        self.refresh_summary()
        self.post_message(self.Changed())
