"""The model browser: built-in and discovered models, their details, and their history.

The pane owns what concerns the models: the list, the chosen model's details and history (read
from the store, in a worker while a sweep stores results), and the models opened by path or
pulled from the Hub (resolved in a worker, with the options they were opened with).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from qbench_tui import messages
from qbench_tui.analysis import ModelHistory, fmt_num, fmt_params, fmt_time, variant_label
from qbench_tui.controllers.sweep import describe_error
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

    def __init__(self, system: Any = None, history_version: Callable[[], tuple[int, int]] | None = None,
                 **kwargs: Any) -> None:
        """``system`` resolves models opened by path; ``history_version`` says how many results
        and runs the store holds (a model's history is read again when they change)."""
        super().__init__(**kwargs)
        self._specs: dict[str, Any] = {}
        self.selected: Any | None = None
        self.system = system
        self._history_version = history_version or (lambda: (0, 0))
        self.store: Any | None = None  # the result store (None: unusable), once its history is read
        self.history_ready = False  # the store's history is read (or known unreadable)
        self.model_options: dict[str, dict[str, Any]] = {}  # per model opened by path (allow_pickle)
        self._history: tuple[tuple[str, int, int], ModelHistory] | None = None  # the last one read
        self._history_asked = 0  # history reads asked in the background; a late answer is dropped

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

    def on_model_browser_model_chosen(self, message: ModelChosen) -> None:
        self.show_history()  # bubbles on: the screen may act on the choice too

    # --- the chosen model's history ------------------------------------------------------------

    def history_key(self, model: str) -> tuple[str, int, int]:
        return (model, *self._history_version())

    def history_read(self, model: str, summary: dict[str, Any] | None) -> None:
        """``model``'s history as read elsewhere (the start-up thread), for the current store."""
        self._history = (self.history_key(model), ModelHistory(**summary) if summary else ModelHistory(0, 0, None, []))

    def show_history(self, background: bool = False) -> None:
        """Show the chosen model's details with its history (once the store is read)."""
        spec = self.selected
        if spec is None or not self.history_ready:
            return
        # Three indexed queries, however long the history (the model's rows are never all read).
        # Asked again for the same model and the same number of results (choosing the model
        # at start-up and the history arriving both ask): the answer read last time is shown.
        key = self.history_key(spec.name)
        if self._history is None or self._history[0] != key:
            self._history_asked += 1  # an answer still on its way is older than this one
            if background and self.store is not None:
                # While a sweep stores results the UI thread does not wait on the store: what is
                # shown stays until the answer comes (on_model_history_read).
                self._read_history(key, self._history_asked)
                return
            self.history_read(spec.name, self.store.model_summary(spec.name) if self.store is not None else None)
        self.show_details(spec, self._history[1])

    @work(thread=True, group="model-history", exit_on_error=False)
    def _read_history(self, key: tuple[str, int, int], asked: int) -> None:
        self.post_message(messages.ModelHistoryRead(key, self.store.model_summary(key[0]), asked))

    def on_model_history_read(self, message: messages.ModelHistoryRead) -> None:
        if message.asked != self._history_asked:
            return  # a later read is on its way
        self._history = (message.key, ModelHistory(**message.summary))
        self.show_history()  # shown if the model is still the one chosen (else read for it)

    # --- models opened by path -----------------------------------------------------------------

    def open_model(self, error: str | None = None, value: str = "", allow_pickle: bool = False) -> None:
        """Ask for a model file or folder (again, with ``error`` and what was typed) and open it."""
        from qbench_tui.screens.open_model import OpenModelScreen

        def opened(answer: tuple[str, dict] | None) -> None:
            if answer:
                self.resolve(*answer)

        self.app.push_screen(OpenModelScreen(error, value, allow_pickle), opened)

    def pull_model(self) -> None:
        """Ask for a Hub model (ORG/NAME) to download; once in the HF cache it opens like any cached model."""
        from qbench_tui.screens.pull_model import PullModelScreen

        def pulled(repo_id: str | None) -> None:
            if repo_id:
                self.resolve(repo_id, {})

        self.app.push_screen(PullModelScreen(), pulled)

    @work(thread=True, group="open-model", exit_on_error=False)
    def resolve(self, path: str, options: dict[str, Any]) -> None:
        """Resolve a model file, folder or cached Hub name in a worker (ModelOpened)."""
        try:
            spec = self.system.resolve_model(os.path.expanduser(path), options or None)
        except Exception as exc:  # noqa: BLE001 - loaders raise many kinds; all are shown
            self.post_message(messages.ModelOpened(path, error=describe_error(exc), options=options))
            return
        self.post_message(messages.ModelOpened(path, spec=spec, options=options))

    def on_model_opened(self, message: messages.ModelOpened) -> None:
        if message.spec is None:
            message.stop()
            # Asked again, with what was typed and the error.
            self.open_model(error=message.error, value=message.path,
                            allow_pickle=bool(message.options.get("allow_pickle")))
            return
        self.model_options[message.spec.name] = dict(message.options)
        self.add_model(message.spec)
        self.notify(f"opened {message.spec.name} ({message.spec.task})", timeout=3)
        message.stop()

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
