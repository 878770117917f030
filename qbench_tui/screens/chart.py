"""Accuracy against latency (or size) for the shown results of one model, with its Pareto frontier.

A frontier compares variants of one model (engines.analysis.rules): with several models shown,
the chart names the one it draws and ``m`` steps to the next.

Colours come from the current theme's variables, so the chart follows theme switches.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.color import Color, ColorParseError
from textual.containers import Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static
from textual_plotext import PlotextPlot

from qbench_tui.analysis import chart_models, display_label, fmt_num, frontier_results, latency, quality, variant_label

SERIES_VARIABLES = ("primary", "secondary", "accent", "success", "warning", "error")


class ParetoChartScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Close"),
        Binding("s", "toggle_axis", "Latency/size"),
        Binding("m", "next_model", "Next model"),
    ]

    def __init__(self, results: list[dict[str, Any]], model: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.results = results
        self.x_axis = "p50"  # or "size"
        self.models = chart_models(results)
        self.model = model if model in self.models else (self.models[0] if self.models else None)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -tall", id="chart-dialog") as dialog:
            dialog.border_title = "accuracy vs latency · Pareto frontier"
            dialog.border_subtitle = "s: latency ⇄ size · m: next model · escape closes"
            yield PlotextPlot(id="chart-plot")
            yield Static("", id="chart-frontier")

    def on_mount(self) -> None:
        self.draw()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.draw())

    def action_toggle_axis(self) -> None:
        self.x_axis = "size" if self.x_axis == "p50" else "p50"
        self.draw()

    def action_next_model(self) -> None:
        if len(self.models) > 1:
            self.model = self.models[(self.models.index(self.model) + 1) % len(self.models)]
            self.draw()

    def _x(self, r: dict[str, Any]) -> float:
        return latency(r) if self.x_axis == "p50" else r["size_mb"]  # type: ignore[return-value]

    def draw(self) -> None:
        plotted, frontier = frontier_results(self.results, self.x_axis, self.model)
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        x_label = "p50 latency (ms)" if self.x_axis == "p50" else "size on disk (MB)"
        uses_accuracy = any(r.get("accuracy") is not None for r in plotted)
        y_label = "accuracy" if uses_accuracy else "top-1 agreement with fp32"
        others = f" (1 of {len(self.models)} models: m for the next)" if len(self.models) > 1 else ""
        self.query_one("#chart-dialog").border_title = (f"{self.model or 'no model'}{others} · {y_label} vs "
                                                        f"{x_label} · Pareto frontier")
        if not plotted:
            plt.title("nothing to plot: no ok results with latency and accuracy in the current filter")
            plot.refresh()
            self.query_one("#chart-frontier", Static).update("")
            return
        colours = [self._colour(name) for name in SERIES_VARIABLES]
        # One series per recipe: int4(g32) and int4(g128) are different points to choose from.
        labels = sorted({display_label(r) for r in plotted})
        for i, label in enumerate(labels):
            mine = [r for r in plotted if display_label(r) == label]
            plt.scatter([self._x(r) for r in mine], [quality(r) for r in mine], label=label,
                        marker="dot" if len(labels) > 4 else "hd", color=colours[i % len(colours)])
        plt.plot([self._x(r) for r in frontier], [quality(r) for r in frontier], label="Pareto frontier",
                 marker="braille", color=self._colour("foreground"))
        xs = [self._x(r) for r in plotted]
        if min(xs) > 0 and max(xs) / min(xs) > 20:
            plt.xscale("log")
        plt.xlabel(x_label)
        plt.ylabel(y_label)
        plot.refresh()
        lines = [Content.from_markup("[b]on $model's frontier[/] [$text-muted](best quality for its cost)[/]",
                                     model=self.model or "")]
        for r in frontier:
            lines.append(Content.from_markup(
                "  [$text-accent]★[/] $v  $x  quality $q", v=variant_label(r),
                x=f"{fmt_num(self._x(r))} {'ms' if self.x_axis == 'p50' else 'MB'}", q=fmt_num(quality(r), 3)))
        self.query_one("#chart-frontier", Static).update(Content("\n").join(lines))

    def _colour(self, variable: str) -> tuple[int, int, int]:
        value = self.app.theme_variables.get(variable) or self.app.theme_variables.get("foreground", "white")
        try:
            return Color.parse(value).rgb
        except ColorParseError:
            return Color.parse("white").rgb
