"""Two results side by side with ratios; when they come from different runs, every variant the
two runs share is matched too (run-to-run comparison)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from engines.analysis.compare import compare, faster, match_runs
from engines.analysis.figures import FRACTION, figure
from qbench_tui.analysis import latency, variant_label


class CompareScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "dismiss", "Close"),
        Binding("w", "swap", "Swap A and B"),
    ]

    def __init__(self, a: dict[str, Any], b: dict[str, Any], run_a: list[dict[str, Any]] | None = None,
                 run_b: list[dict[str, Any]] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.a, self.b = a, b
        self.run_a, self.run_b = run_a or [], run_b or []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -tall", id="compare-dialog") as dialog:
            dialog.border_title = "compare"
            dialog.border_subtitle = "w swaps A and B · escape closes"
            with VerticalScroll():
                yield Static(self._text(), id="compare-text")

    def action_swap(self) -> None:
        self.a, self.b = self.b, self.a
        self.run_a, self.run_b = self.run_b, self.run_a
        self.query_one("#compare-text", Static).update(self._text())

    def _text(self) -> Content:
        a, b = self.a, self.b
        if a.get("host") != b.get("host"):  # the same variant on two machines of a fleet
            a, b = {**a, "label": f"{a.get('label') or a['method']} @ {a.get('host')}"}, \
                {**b, "label": f"{b.get('label') or b['method']} @ {b.get('host')}"}
        out = [
            Content.from_markup("[b]A[/] $m · $v [$text-muted]run $r[/]", m=a["model"], v=variant_label(a),
                                r=str(a.get("run_id"))),
            Content.from_markup("[b]B[/] $m · $v [$text-muted]run $r[/]", m=b["model"], v=variant_label(b),
                                r=str(b.get("run_id"))),
            Content(""),
            Content.from_markup("[b]$h[/]", h=f"{'metric':<18}{'A':>14}{'B':>14}  B/A"),
        ]
        for row in compare(a, b):
            if row.a is None and row.b is None:
                continue
            va, vb, ratio = row.text()
            style = {"better": "$text-success", "worse": "$text-error"}.get(row.verdict, "$text-muted")
            out.append(Content.from_markup(
                f"$l$va$vb  [{style}]$ra  $verdict[/]", l=f"{row.label:<18}",
                va=f"{va:>14}", vb=f"{vb:>14}", ra=ratio, verdict=row.verdict))
        if (fast := faster(a, b)) is not None:
            out += [Content(""), Content.from_markup("[b]$f is ×$x faster at the median[/]", f=fast[0],
                                                     x=f"{fast[1]:.2f}")]
        if a.get("run_id") != b.get("run_id") and self.run_a and self.run_b:
            out += [Content(""), Content.from_markup("[b $text-accent]Runs side by side[/] (p50, accuracy)"),
                    Content.from_markup("[b]$h[/]", h=f"{'variant':<40}{'A p50':>10}{'B p50':>10}{'B/A':>8}"
                                                      f"{'A acc':>8}{'B acc':>8}")]
            for ra, rb in match_runs(self.run_a, self.run_b):
                ref = ra or rb
                assert ref is not None
                la, lb = (latency(ra) if ra else None), (latency(rb) if rb else None)
                ratio = f"×{lb / la:.2f}" if la and lb else "–"
                out.append(Content(
                    f"{variant_label(ref)[:39]:<40}{figure(la, 'ms'):>10}{figure(lb, 'ms'):>10}{ratio:>8}"
                    f"{figure(ra.get('accuracy') if ra else None, FRACTION):>8}"
                    f"{figure(rb.get('accuracy') if rb else None, FRACTION):>8}"))
        return Content("\n").join(out)
