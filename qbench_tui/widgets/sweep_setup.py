"""The method configurator: methods, runtimes, devices, batch sizes and every method's settings.

Choices come from the engine's catalog; the per-method forms are generated from the config
dataclasses (:mod:`qbench_tui.widgets.method_form`). Unsupported method × runtime × device
pairs are marked in the list and explained in the support table, with the catalog's reason.
"Add as variant" keeps a form's settings as an extra recipe (``int4:group_size=128``).
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Collapsible, Input, Label, SelectionList, Static
from textual.widgets.selection_list import Selection

from engines import catalog
from engines.methods import configs
from qbench_tui.controllers.sweep import AUTO, SetupError, SweepSetup, expand_auto, pin_spec, spec_method
from qbench_tui.settings import MEASURE_DEFAULTS
from qbench_tui.widgets.checks import CheckList
from qbench_tui.widgets.method_form import MethodSettingsForm
from qbench_tui.widgets.scroll_hint import ScrollHint
from qbench_tui.widgets.setup_plugins import LatePlugins
from qbench_tui.widgets.sweep_variants import ExtraVariants

# Measurement fields the user may change, with help text (MeasureSettings has none of its own).
MEASURE_FIELDS: tuple[tuple[str, str, type], ...] = (
    ("min_time_s", "Minimum measuring time per batch size (s).", float),
    ("min_reps", "Minimum timed calls per batch size.", int),
    ("warmup_s", "Warm-up time before timing (s).", float),
    ("max_time_s", "Stop measuring after this long even if min reps are not reached (s).", float),
    ("repeat", "Timing rounds per variant, interleaved with the sweep's other variants: the result is the "
               "median of the rounds' medians, flagged unstable when they spread over 10 %.", int),
)


class SweepSetupPane(LatePlugins, ScrollHint, ExtraVariants, VerticalScroll):
    """Everything a sweep needs except the model (which the model browser holds)."""

    class Changed(Message):
        """The set-up changed (the app refreshes what depends on it)."""

    STACK_BELOW = 56  # columns: side by side lists need about this many
    SCROLL_HINT = "↓ more below: support, settings, measurement"

    def __init__(self, system: Any, measure: dict[str, Any], stacked: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        # Stacked or not from the start (the frame's width is known before this pane is made): a
        # class added at the first resize restyles the pane's hundred widgets.
        self.set_class(stacked, "-stacked", update=False)
        self.system = system
        self.measure_defaults = {**MEASURE_DEFAULTS, **measure}
        self.device_infos = list(system.devices())
        self._pending_configs: dict[str, dict[str, Any]] = {}  # for forms not made yet
        # Each form made, by method (runtime: "rt-NAME"): in a Collapsible it enters the DOM a moment after.
        self._forms: dict[str, MethodSettingsForm] = {}
        self.variants: list[str] = []  # extra recipes: method specs such as int4:group_size=128
        self.details_ready = False  # the widgets below the fold are mounted (mount_details)
        self.support_known = False  # support marks (a planner search, 0.1-0.3 s) follow the first frame
        self._pending_details: dict[str, Any] = {}  # what apply_setup set before they were

    def compose(self) -> ComposeResult:
        yield Static("", id="setup-summary")
        with Horizontal(id="setup-lists"):
            with Vertical(classes="setup-column"):
                yield Label("Methods", classes="section-title")
                yield CheckList(*self._method_options(set()), id="methods")
            with Vertical(classes="setup-column"):
                yield Label("Runtimes", classes="section-title")
                yield CheckList(
                    *(Selection(Content.from_markup("$n [$text-muted]$t[/]", n=rt.name, t=rt.title), rt.name,
                                id=rt.name)
                      for rt in catalog.RUNTIMES.values()),
                    id="runtimes",
                )
                yield Label("Devices", classes="section-title")
                yield CheckList(*self._device_options(), id="devices")
        with Horizontal(classes="field-row"):
            yield Label("batch sizes", classes="field-name")
            yield Input("1", placeholder="e.g. 1, 8, 32", id="batch-sizes", compact=True,
                        classes="field-control")
        # The rest lies below the pane's fold at the usual sizes (the support table, the forms, the
        # collapsed measurement settings: 90 of the app's 190 widgets at start): mounted by
        # mount_details once the panes are drawn, so the first frame styles half as many widgets.

    def _details(self) -> list[Widget]:
        """The widgets under the batch sizes, in their order (see :meth:`mount_details`)."""
        variants_title = Label("Extra variants", classes="section-title", id="variants-title")
        variants_title.display = False
        runtime_title = Label("Runtime settings", classes="section-title", id="runtime-settings-title")
        runtime_title.display = False
        fields: list[Widget] = []
        for name, help_text, kind in MEASURE_FIELDS:
            fields += [Horizontal(Label(name.replace("_", " "), classes="field-name"),
                                  Input(str(self.measure_defaults[name]), type="integer" if kind is int else "number",
                                        id=f"measure-{name}", compact=True, classes="field-control"),
                                  classes="field-row"),
                       Static(help_text, classes="field-help")]
        fields += [Horizontal(Label("threads", classes="field-name"),
                              Input("", placeholder="physical cores", type="integer", id="threads", compact=True,
                                    classes="field-control"),
                              classes="field-row"),
                   Static("Intra-op threads of each benchmark process (blank: all physical cores).",
                          classes="field-help"),
                   Horizontal(Label("seq len", classes="field-name"),
                              Input("", placeholder="model default", type="integer", id="seq-len", compact=True,
                                    classes="field-control"),
                              classes="field-row"),
                   Static("Tokens per input row for text models (blank: the model's default, 128).",
                          classes="field-help")]
        return [
            Label("Support on this machine", classes="section-title"),
            Static("", id="support-matrix"),
            Label("Method settings", classes="section-title", id="method-settings-title"),
            # A method's form is mounted the first time the method is chosen (fewer widgets to
            # style at start-up), then hidden and shown with its selection so edits are kept.
            Vertical(id="method-settings"),
            variants_title,
            Vertical(id="variants"),
            runtime_title,
            Vertical(id="runtime-settings"),
            # "-collapsed" from the start: Collapsible adds it when mounted, restyling its contents.
            Collapsible(*fields, title="Measurement", collapsed=True, id="measure-settings", classes="-collapsed"),
        ]

    async def mount_details(self) -> None:
        """Mount what lies below the fold, then show the set-up in it (the forms, the support
        table, what apply_setup kept for it); not if the app quit meanwhile (they are gone)."""
        if self.details_ready:
            return
        await self.mount_all(details := self._details())
        if not all(widget.is_attached for widget in details):
            return
        self.details_ready = self.support_known = True
        self.call_after_refresh(self._hint_scroll)
        pending, self._pending_details = self._pending_details, {}
        if "variants" in pending:
            self.set_variants(pending["variants"])
        for field_id in ("threads", "seq-len"):
            if field_id in pending:
                self.query_one(f"#{field_id}", Input).value = pending[field_id]
        self.refresh_support()
        self.scan_plugins_later()

    def on_mount(self) -> None:
        self.refresh_support()

    @classmethod
    def stacks_in(cls, width: int) -> bool:
        """Whether the lists stack in a frame ``width`` columns wide (its scroll bar included)."""
        return width - 2 < cls.STACK_BELOW

    def on_resize(self) -> None:
        stacked = self.size.width < self.STACK_BELOW
        if stacked != self.has_class("-stacked"):
            self.set_class(stacked, "-stacked")
        self._hint_scroll()

    # --- choices -----------------------------------------------------------------------------

    def _method_options(self, selected: set[str]) -> list[Selection]:
        out = [Selection(Content.from_markup("auto [$text-muted]the recipes each chosen device calls for[/]"),
                         AUTO, AUTO in selected, id=AUTO)]
        for spec in catalog.METHODS.values():
            mark = self._method_mark(spec.name) if self.is_mounted else ""
            out.append(Selection(
                Content.from_markup("$n [$text-muted]$b-bit[/] $m", n=spec.name, b=str(spec.bits), m=mark),
                spec.name, spec.name in selected, id=spec.name,
            ))
        return out

    def _device_options(self) -> list[Selection]:
        out = [Selection(Content.from_markup("auto [$text-muted]every present device; the best is reported[/]"),
                         AUTO, False, id=AUTO)]
        for dev in self.device_infos:
            if dev.present:
                prompt = Content.from_markup("$n [$text-muted]$t[/]", n=dev.name, t=dev.title)
            else:
                prompt = Content.from_markup("$n [$text-error]✗[/] [$text-muted]$why[/]", n=dev.name, why=dev.detail)
            out.append(Selection(prompt, dev.name, False, id=dev.name, disabled=not dev.present))
        return out

    def _selected(self, list_id: str) -> list[str]:
        return list(self.query_one(f"#{list_id}", SelectionList).selected)

    def _expanded(self) -> tuple[list[str], list[str], list[Any]]:
        """(methods, devices, strategies) with ``auto`` expanded for the chosen runtimes."""
        return expand_auto(self._selected("methods"), self._selected("devices"), self._selected("runtimes"),
                           self.device_infos)

    def _combos(self) -> list[tuple[str, str]]:
        devices = self._expanded()[1]
        return [(rt, dev) for rt in self._selected("runtimes") for dev in devices]

    def _method_mark(self, method: str) -> str:
        combos = self._combos() if self.support_known else []
        if not combos:
            return ""
        ok = sum(1 for rt, dev in combos if self.system.unsupported_reason(method, rt, dev) is None)
        if ok == len(combos):
            return ""
        return "✗ unsupported here" if ok == 0 else f"◐ {ok}/{len(combos)} supported"

    # --- reacting ----------------------------------------------------------------------------

    def on_selection_list_selected_changed(self, event: SelectionList.SelectedChanged) -> None:
        self.refresh_support()
        self.post_message(self.Changed())

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "batch-sizes":
            self.refresh_summary()
        self.post_message(self.Changed())

    def refresh_support(self) -> None:
        """Re-mark methods and redraw the support table and the summary."""
        methods = self.query_one("#methods", SelectionList)
        # "auto" shows the forms of the methods it stands for
        selected = {spec_method(m) for m in self._expanded()[0]} & set(catalog.METHODS)
        for spec in catalog.METHODS.values():
            index = methods.get_option_index(spec.name)
            mark = self._method_mark(spec.name)
            prompt = Content.from_markup(
                "$n [$text-muted]$b-bit[/] [$text-warning]$m[/]", n=spec.name, b=str(spec.bits), m=mark)
            methods.replace_option_prompt_at_index(index, prompt)
        if not self.details_ready:  # the forms and the table come with them (mount_details)
            self.refresh_summary()
            return
        holder = self.query_one("#method-settings", Vertical)
        for spec in catalog.METHODS.values():
            existing = self.query(f"#settings-{spec.name}")
            if existing:
                existing.first().display = spec.name in selected
            elif spec.name in selected and configs.field_specs(spec.config_class):
                form = self._forms[spec.name] = MethodSettingsForm(
                    spec.name, spec.config_class, self._pending_configs.pop(spec.name, None),
                    id=f"form-{spec.name}", classes="method-form")
                add = Button("+ add as variant", id=f"add-variant-{spec.name}", classes="add-variant", compact=True,
                             tooltip=f"Keep these settings as one more {spec.name} variant of the sweep")
                holder.mount(Collapsible(form, add, title=f"{spec.name} · {spec.title}", collapsed=False,
                                         id=f"settings-{spec.name}", classes="method-settings"))
        self.query_one("#method-settings-title").display = any(
            configs.field_specs(catalog.METHODS[m].config_class) for m in selected)
        self._refresh_runtime_forms()
        self.query_one("#support-matrix", Static).update(self._support_table(sorted(selected, key=list(catalog.METHODS).index)))
        self.refresh_summary()

    def _refresh_runtime_forms(self) -> None:
        """A form per chosen runtime with knobs (torch.compile, ORT kernels), mounted when first chosen."""
        chosen = set(self._selected("runtimes"))
        holder = self.query_one("#runtime-settings", Vertical)
        shown = False
        for rt in catalog.RUNTIMES.values():
            if not configs.field_specs(rt.config_class):
                continue
            existing = self.query(f"#rtsettings-{rt.name}")
            if existing:
                existing.first().display = rt.name in chosen
            elif rt.name in chosen:
                form = self._forms[f"rt-{rt.name}"] = MethodSettingsForm(
                    f"rt-{rt.name}", rt.config_class, self._pending_configs.pop(f"rt-{rt.name}", None),
                    id=f"rtform-{rt.name}", classes="method-form")
                holder.mount(Collapsible(form, title=f"{rt.name} · {rt.title}", collapsed=True,
                                         id=f"rtsettings-{rt.name}", classes="method-settings -collapsed"))
            shown = shown or rt.name in chosen
        self.query_one("#runtime-settings-title").display = shown

    def _support_table(self, methods: list[str]) -> Content:
        combos = self._combos()
        if not methods or not combos:
            return Content.from_markup("[$text-muted]choose at least one method, runtime and device[/]")
        name_w = max(len(m) for m in methods) + 1
        headers = [f"{rt}/{dev}" for rt, dev in combos]
        widths = [max(len(h), 4) + 1 for h in headers]
        lines = [Content.from_markup("[b]$h[/]", h=" " * name_w + "".join(h.ljust(w) for h, w in zip(headers, widths)))]
        reasons: list[str] = []
        for m in methods:
            cells = [Content(m.ljust(name_w))]
            for (rt, dev), w in zip(combos, widths):
                why = self.system.unsupported_reason(m, rt, dev)
                if why is None:
                    cells.append(Content.from_markup("[$text-success]$c[/]", c="✓".ljust(w)))
                else:
                    if why not in reasons:
                        reasons.append(why)
                    n = reasons.index(why) + 1
                    cells.append(Content.from_markup("[$text-error]$c[/]", c=f"✗{n}".ljust(w)))
            lines.append(Content("").join(cells))
        for n, why in enumerate(reasons, 1):
            lines.append(Content.from_markup("[$text-error]✗$n[/] [$text-muted]$w[/]", n=str(n), w=why))
        return Content("\n").join(lines)

    def refresh_summary(self) -> None:
        methods, combos = self._expanded()[0], self._combos()
        try:
            batches = parse_batch_sizes(self.query_one("#batch-sizes", Input).value)
        except SetupError:
            batches = []
        recipes = methods + [spec_method(v) for v in self.variants]  # a variant is supported where its method is
        auto = " (auto: " + ", ".join(methods) + ")" if AUTO in self._selected("methods") else ""
        total = len(recipes) * len(combos) * len(batches)
        unsupported = sum(1 for m in recipes for rt, dev in combos if self.support_known
                          and self.system.unsupported_reason(m, rt, dev) is not None) * len(batches)
        counted = _n(len(methods), "method") + (f" + {_n(len(self.variants), 'variant')}" if self.variants else "")
        text = (f"{counted} × {_n(len(combos), 'runtime·device')} × "
                f"{_n(len(batches), 'batch size')} = {_n(total, 'measurement')}{auto}")
        extra = f" · {unsupported} unsupported (recorded as such)" if unsupported else ""
        self.query_one("#setup-summary", Static).update(
            Content.from_markup("[b]$t[/][$text-warning]$e[/]", t=text, e=extra))

    # --- reading and writing the set-up ------------------------------------------------------

    def current_setup(self, model: str | None, model_options: dict[str, Any] | None = None) -> SweepSetup:
        """The sweep as configured; raises SetupError naming the field to fix."""
        if not model:
            raise SetupError("choose a model first (model browser, or o to open one by path)", "model-list")
        runtimes = self._selected("runtimes")
        if not runtimes:
            raise SetupError("choose at least one runtime", "runtimes")
        chosen_devices = self._selected("devices")
        methods, devices, strategies = self._expanded()
        if not methods and not self.variants:
            raise SetupError("choose at least one method", "methods")
        if not devices:
            raise SetupError("choose at least one device" if not chosen_devices else
                             "auto found no present device the chosen runtimes serve", "devices")
        batches = parse_batch_sizes(self.query_one("#batch-sizes", Input).value)
        configs_by_method = self._form_settings("form", list(dict.fromkeys(spec_method(m) for m in methods)))
        measure: dict[str, Any] = {}
        for name, _, kind in MEASURE_FIELDS:
            raw = self._field_value(f"measure-{name}", str(self.measure_defaults[name]))
            try:
                measure[name] = kind(raw) if raw else self.measure_defaults[name]
            except ValueError:
                raise SetupError(f"measurement {name.replace('_', ' ')}: {raw!r} is not a number",
                                 f"measure-{name}") from None
        measure["max_time_s"] = max(measure["max_time_s"], measure["min_time_s"])
        measure["warmup_reps"] = self.measure_defaults.get("warmup_reps", MEASURE_DEFAULTS["warmup_reps"])
        threads_raw = self._field_value("threads")
        try:
            threads = int(threads_raw) if threads_raw else None
        except ValueError:
            raise SetupError(f"threads: {threads_raw!r} is not a whole number", "threads") from None
        if threads is not None and threads < 1:
            raise SetupError("threads must be at least 1", "threads")
        options = dict(model_options or {})
        seq_raw = self._field_value("seq-len")
        if seq_raw:
            try:
                seq_len = int(seq_raw)
            except ValueError:
                raise SetupError(f"seq len: {seq_raw!r} is not a whole number", "seq-len") from None
            if not 1 <= seq_len <= 8192:
                raise SetupError("seq len must be between 1 and 8192", "seq-len")
            options["seq_len"] = seq_len
        runtime_configs = self._form_settings("rtform", runtimes)
        variants = []
        for spec in self.variants:
            method = spec_method(spec)
            defaults = {f["name"]: f["default"] for f in configs.field_specs(catalog.METHODS[method].config_class)}
            variants.append(pin_spec(spec, configs_by_method.get(method, {}), defaults))
        return SweepSetup.of(model=model, methods=[*methods, *variants], runtimes=runtimes, devices=devices,
                             batch_sizes=batches, configs=configs_by_method, threads=threads, measure=measure,
                             model_options=options, runtime_configs=runtime_configs,
                             choose_device=AUTO in chosen_devices or len(devices) > 1, auto=[s.spec for s in strategies],
                             explicit=[m for m in self._selected("methods") if m != AUTO] + variants)

    def _field_value(self, field_id: str, default: str = "") -> str:
        """A field's text; before the fields below the fold are mounted, what they will show."""
        if not self.details_ready:
            return self._pending_details.get(field_id, default).strip()
        return self.query_one(f"#{field_id}", Input).value.strip()

    def _form_settings(self, prefix: str, names: list[str]) -> dict[str, dict[str, Any]]:
        """Non-default settings of each named method's (``form``) or runtime's (``rtform``) form;
        raises SetupError naming the form whose settings are invalid."""
        out: dict[str, dict[str, Any]] = {}
        for name in names:
            key = name if prefix == "form" else f"rt-{name}"
            forms = [self._forms[key]] if key in self._forms else []
            if not forms and key in self._pending_configs:  # not made yet: the form it will be
                spec = catalog.METHODS.get(name) if prefix == "form" else catalog.RUNTIMES.get(name)
                if spec is not None:
                    forms = [MethodSettingsForm(key, spec.config_class, self._pending_configs[key])]
            for form in forms:
                problem = form.check()
                if problem:
                    raise SetupError(problem, f"{prefix}-{name}")
                if values := form.values():
                    out[name] = values
        return out

    def apply_setup(self, data: dict[str, Any]) -> None:
        """Restore a remembered set-up; unknown or unavailable choices are skipped."""
        present = {d.name for d in self.device_infos if d.present}
        if "methods" in data:
            self.set_variants([m for m in data["methods"] if ":" in m and spec_method(m) in catalog.METHODS])
        # One refresh at the end, not one per selection change (each mounts forms: 0.5 s at start-up).
        with self.prevent(SelectionList.SelectedChanged):
            for list_id, valid in (("methods", {*catalog.METHODS, AUTO}), ("runtimes", set(catalog.RUNTIMES)),
                                   ("devices", {*present, AUTO})):
                wanted = [v for v in data.get(list_id, []) if v in valid]
                if not wanted:
                    continue
                selection = self.query_one(f"#{list_id}", SelectionList)
                selection.deselect_all()
                for value in wanted:
                    selection.select(value)
        if data.get("batch_sizes"):
            self.query_one("#batch-sizes", Input).value = ", ".join(str(b) for b in data["batch_sizes"])
        configs_by_key = {**(data.get("configs") or {}),
                          **{f"rt-{rt}": v for rt, v in (data.get("runtime_configs") or {}).items()}}
        for key, values in configs_by_key.items():
            if key in self._forms:
                self._forms[key].set_values(values)
            else:
                self._pending_configs[key] = dict(values)
        seq_len = (data.get("model_options") or {}).get("seq_len")
        for field_id, value in (("threads", data.get("threads")), ("seq-len", seq_len)):
            if not value:
                continue
            if self.details_ready:
                self.query_one(f"#{field_id}", Input).value = str(value)
            else:
                self._pending_details[field_id] = str(value)
        self.refresh_support()
        self.post_message(self.Changed())


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def parse_batch_sizes(text: str) -> tuple[int, ...]:
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    if not parts:
        raise SetupError("give at least one batch size, e.g. 1 or 1, 8, 32", "batch-sizes")
    try:
        sizes = tuple(dict.fromkeys(int(p) for p in parts))
    except ValueError:
        raise SetupError(f"batch sizes must be whole numbers separated by commas, not {text!r}",
                         "batch-sizes") from None
    if any(b < 1 or b > 65536 for b in sizes):
        raise SetupError("batch sizes must be between 1 and 65536", "batch-sizes")
    return sizes
