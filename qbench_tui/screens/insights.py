"""Recommendation and insights: what to ship for the chosen model and why, and which technique wins
per architecture family and device across every model measured.

Both are computed from the store in a thread worker (engines.analysis: plain Python, no torch);
the roofline is the stored one, measured in a child process the first time.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Static

from qbench_tui.widgets.insights_table import InsightsTable

OBJECTIVE_KEYS = {"l": "latency", "t": "throughput", "z": "size", "m": "memory"}


class InsightsScreen(ModalScreen[None]):
    """The recommendation for ``model`` under an objective (keys l/t/z/m), and the insights table."""

    DEFAULT_CSS = """
    InsightsScreen #recommendation { height: auto; margin-bottom: 1; }
    InsightsScreen #insights-table { height: 1fr; min-height: 6; }
    InsightsScreen #insights-notes { color: $text-muted; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Close"),
        *(Binding(key, f"objective('{name}')", name.capitalize()) for key, name in OBJECTIVE_KEYS.items()),
    ]

    class Computed(Message):
        def __init__(self, recommendation: dict[str, Any] | None, insights: dict[str, Any], error: str | None):
            super().__init__()
            self.recommendation, self.insights, self.error = recommendation, insights, error

    def __init__(self, store: Any, model: str | None, objective: str = "latency", **kwargs: Any):
        super().__init__(**kwargs)
        self.store = store
        self.model = model
        self.objective = objective
        self.recommendation: dict[str, Any] | None = None
        self.insights: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -tall", id="insights-dialog") as dialog:
            dialog.border_title = "Recommendation · insights per architecture"
            dialog.border_subtitle = "l latency · t throughput · z size · m memory · escape closes"
            yield Static("computing…", id="recommendation")
            yield InsightsTable(id="insights-table")
            with VerticalScroll(id="insights-notes-scroll"):  # shares the height with the table
                yield Static("", id="insights-notes")

    def on_mount(self) -> None:
        self.compute()

    def action_objective(self, name: str) -> None:
        self.objective = name
        self.query_one("#recommendation", Static).update("computing…")
        self.compute()

    @work(thread=True, exclusive=True, group="insights", exit_on_error=False)
    def compute(self) -> None:
        from engines.analysis import roofline
        from engines.analysis.insights import from_store, insights
        from engines.analysis.recommend import recommend

        try:
            if self.store is None:
                raise ValueError("no store is open")
            results, facts = from_store(self.store)
            try:
                profile = roofline.ensure(self.store)
            except Exception:  # the analysis goes on without the roofline
                profile = None
            rec = None
            if self.model and any(r["model"] == self.model for r in results):
                rec = recommend([r for r in results if r["model"] == self.model], self.objective,
                                facts=facts.get(self.model), profile=profile)
            self.post_message(self.Computed(rec, insights(results, facts, profile), None))
        except Exception as exc:  # shown in the dialog, never a traceback
            self.post_message(self.Computed(None, {"rows": [], "winners": [], "surprises": []},
                                            f"{type(exc).__name__}: {exc}"))

    def on_insights_screen_computed(self, message: Computed) -> None:
        self.recommendation, self.insights = message.recommendation, message.insights
        box = self.query_one("#recommendation", Static)
        if message.error:
            box.update(Content(f"could not compute: {message.error}"))
        else:
            box.update(recommendation_text(self.model, self.objective, message.recommendation))
        self.query_one(InsightsTable).show(message.insights)
        notes = [*message.insights.get("winners", []), *(f"surprise: {s['text']}"
                                                         for s in message.insights.get("surprises", []))]
        self.query_one("#insights-notes", Static).update(Content("\n".join(notes) or "no quantized results yet"))


def recommendation_text(model: str | None, objective: str, rec: dict[str, Any] | None) -> Content:
    if model is None:
        return Content("choose a model in the model browser for its recommendation")
    if rec is None:
        return Content(f"{model}: no stored results yet — run a sweep (r) or `qbench auto --models {model}`")
    head = f"{model} · {objective} · {rec['budget']}\n"
    best = rec["best"]
    if best is None:
        return Content(head + rec["reasons"][0])
    lines = [f"ship {best['label']} on {best['runtime']} · {best['device']} ({best['value']})"]
    lines += [f"• {reason}" for reason in rec["reasons"]]
    return Content.assemble((head, "bold"), (lines[0] + "\n", "bold"), "\n".join(lines[1:]))
