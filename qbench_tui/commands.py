"""The command palette: one provider listing the app's own commands (run, cancel, export, themes,
models, runs, panes) from the app's current state.

Nothing here imports the app or a screen: the provider asks whatever app it runs in for
``palette_commands()`` (see :class:`PaletteSource`), and :func:`main_screen_commands` reads the
main screen through the attributes it names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

from textual.command import DiscoveryHit, Hit, Hits, Provider


class PaletteCommand(NamedTuple):
    title: str
    help: str
    callback: Callable[[], Any]
    discover: bool  # listed before anything is typed


@runtime_checkable
class PaletteSource(Protocol):
    def palette_commands(self) -> list[PaletteCommand]: ...


class QBenchCommands(Provider):
    """Every entry comes from the app's ``palette_commands()``."""

    def _commands(self) -> list[PaletteCommand]:
        return self.app.palette_commands() if isinstance(self.app, PaletteSource) else []

    async def discover(self) -> Hits:
        for title, help_text, callback, show in self._commands():
            if show:
                yield DiscoveryHit(title, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback, _ in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text)


def main_screen_commands(screen: Any, panes: dict[str, tuple[str, str]],
                         extra: list[PaletteCommand] | tuple[PaletteCommand, ...] = ()) -> list[PaletteCommand]:
    """The main screen's entries: its actions, ``extra`` (the app's themes), its models, its panes
    and the stored runs."""
    results = screen.results_pane
    cmds = [
        PaletteCommand("Run sweep", "Run the configured sweep on the chosen model (r)", screen.action_run_sweep, True),
        PaletteCommand("Cancel sweep", "Stop the running sweep; finished results stay stored (c)",
                       screen.action_cancel_sweep, screen.sweeping),
        PaletteCommand("Run the starter sweep", "digits-mlp: fp32 vs dynamic int8 on ONNX Runtime, CPU (b)",
                       screen.action_starter_sweep, not results.total),
        PaletteCommand("Export results…", "Write the shown results to CSV or JSON (e)", screen.action_export, True),
        PaletteCommand("Export selected variant as a model…", "ONNX / TFLite / Core ML / MLX, validated, with deploy "
                       "templates (the row under the cursor)", lambda: results.export_model(screen.db_path), True),
        PaletteCommand("Open model by path…", "An ONNX, TorchScript/ExportedProgram file or a Hugging Face folder (o)",
                       screen.action_open_model, True),
        PaletteCommand("Pull model from the Hub…", "Download ORG/NAME into your Hugging Face cache (p)",
                       screen.action_pull_model, True),
        PaletteCommand("Show accuracy vs latency chart", "With the Pareto frontier marked (g)", screen.action_chart,
                       True),
        PaletteCommand("Recommendation and insights", "What to ship for the chosen model, which technique wins "
                       "per architecture (i)", screen.action_insights, True),
        PaletteCommand("Compare marked results", "Side by side with ratios (x; space marks)", screen.action_compare,
                       True),
        PaletteCommand("Sort results…", "Choose the column (s)", screen.action_sort, False),
        PaletteCommand("Clear result filters", "Show every stored result (ctrl+l)", screen.action_clear_filters,
                       False),
        PaletteCommand("Show fleet hosts", "Each worker, what it measures now, its queue; a run across hosts (h)",
                       screen.action_hosts, True),
        PaletteCommand("Keys and help", "Every key binding (?)", screen.action_help, True),
        *extra,
    ]
    for spec in screen.browser.models:
        cmds.append(PaletteCommand(f"Open model: {spec.name}",
                                   f"{spec.task} · {spec.source} · {spec.description}"[:100],
                                   lambda name=spec.name: screen.select_model(name), False))
    for pane, (title, _) in panes.items():
        cmds.append(PaletteCommand(f"Go to {title[2:]}", f"Show the {title[2:].lower()} pane ({title[0]})",
                                   lambda p=pane: screen.action_pane(p), False))
    runs = sorted(results.runs.values(), key=lambda r: r.get("created_at") or "", reverse=True)
    for run in runs[:50]:
        cmds.append(PaletteCommand(f"Show run {run['id']}",
                                   f"{run.get('model')} · {run.get('status')} · {run.get('source')}",
                                   lambda rid=run["id"]: screen.show_run(rid), False))
        if run.get("status") in ("interrupted", "failed") and run.get("source") != "remote":
            cmds.append(PaletteCommand(f"Resume run {run['id']}", f"Measure what {run.get('model')}'s run is missing",
                                       lambda rid=run["id"]: screen.coordinator.resume(rid), True))
    return cmds
