"""The model browser: built-in and discovered models, their details, and their history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from qbench_tui.analysis import ModelHistory, fmt_num, fmt_params, fmt_time, variant_label
from qbench_tui.widgets.readout import set_text

SOURCE_GROUPS = (
    ("built-in", "built-in (offline)"),
    ("hf-dir", "Hugging Face folders"),
    ("hf-cache", "Hugging Face cache"),
    ("file", "files"),
)


class ModelBrowser(Vertical):
    """Lists models grouped by source; the highlighted one is the sweep's model."""

    @dataclass
    class ModelChosen(Message):
        """The user moved to another model."""

        spec: Any

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._specs: dict[str, Any] = {}
        self.selected: Any | None = None

    def compose(self) -> ComposeResult:
        yield OptionList(Option("loading models…", disabled=True), id="model-list")
        with VerticalScroll(id="model-details-scroll"):
            yield Static("", id="model-details")

    def set_models(self, models: list[Any], select: str | None = None) -> None:
        """Show ``models``; keep (or move to) ``select`` when it is among them."""
        self._specs = {m.name: m for m in models}
        option_list = self.query_one("#model-list", OptionList)
        options: list[Option | None] = []
        known_groups = {g for g, _ in SOURCE_GROUPS}
        groups = list(SOURCE_GROUPS) + sorted({(m.source, m.source) for m in models if m.source not in known_groups})
        for source, title in groups:
            members = [m for m in models if m.source == source]
            if not members:
                continue
            options.append(Option(Content.from_markup("[b $text-muted]$title[/]", title=title.upper()),
                                  disabled=True))
            for spec in members:
                options.append(Option(
                    Content.from_markup("$name [$text-muted]$params[/]", name=spec.name,
                                        params=fmt_params(spec.params)),
                    id=spec.name,
                ))
        if not models:
            options.append(Option("no models found", disabled=True))
        option_list.clear_options()
        option_list.add_options(options)
        target = select if select in self._specs else (self.selected.name if self.selected and
                                                          self.selected.name in self._specs else None)
        if target is None and models:
            target = models[0].name
        if target is not None:
            option_list.highlighted = option_list.get_option_index(target)
            self._choose(target)

    def add_model(self, spec: Any) -> None:
        """Add a model opened by path (or refresh it) and select it."""
        models = [m for m in self._specs.values() if m.name != spec.name] + [spec]
        self.set_models(models, select=spec.name)

    def select(self, name: str) -> bool:
        if name not in self._specs:
            return False
        option_list = self.query_one("#model-list", OptionList)
        option_list.highlighted = option_list.get_option_index(name)
        self._choose(name)
        return True

    @property
    def models(self) -> list[Any]:
        return list(self._specs.values())

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option.id:
            self._choose(event.option.id)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id:
            self._choose(event.option.id)

    def _choose(self, name: str) -> None:
        spec = self._specs[name]
        if self.selected is not None and self.selected.name == name:
            return
        self.selected = spec
        self.show_details(spec, None)
        self.post_message(self.ModelChosen(spec))

    def show_details(self, spec: Any, history: ModelHistory | None) -> None:
        """Render the model's metadata and what it was measured on before."""
        lines = [
            Content.from_markup("[b $text-primary]$name[/]", name=spec.name),
            Content.from_markup("[$text-muted]$d[/]", d=spec.description or ""),
            Content(""),
        ]
        rows = [("task", spec.task), ("parameters", fmt_params(spec.params)), ("source", spec.source)]
        if spec.path:
            rows.append(("path", spec.path))
        size = spec.extra.get("size_mb") if isinstance(getattr(spec, "extra", None), dict) else None
        if size is not None:
            rows.append(("size", f"{fmt_num(size)} MB"))
        for key, value in rows:
            lines.append(Content.from_markup("[$text-muted]$k[/] $v", k=f"{key:<11}", v=str(value)))
        lines.append(Content(""))
        if history is None:
            lines.append(Content.from_markup("[$text-muted]history: …[/]"))
        elif not history.measurements:
            lines.append(Content.from_markup("[$text-muted]never measured: press [b]r[/b] to run a sweep[/]"))
        else:
            lines.append(Content.from_markup(
                "[b]measured before[/] $runs, last $last", runs=_plural(history.runs, "run"),
                last=fmt_time(history.last_run)))
            for r in history.best[:8]:
                p50 = (r.get("latency_ms") or {}).get("p50")
                lines.append(Content.from_markup(
                    " $v [$text-accent]$p ms[/]", v=variant_label(r), p=fmt_num(p50)))
        # Shown again with each result of a sweep: laid out only when its height changes.
        set_text(self.query_one("#model-details", Static), Content("\n").join(lines), fixed_height=False)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")
