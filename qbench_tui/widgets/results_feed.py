"""The running sweep's results as the results pane receives them: shown in batches, one toast
for the failed ones, the run's counts and status, the best device of a run.

The table, the failure toasts and what follows a new result elsewhere (the model's history,
the footer's starter key: ``on_shown``) are refreshed once per RESULTS_FLUSH_S for however many
results came in it: a burst of results (unsupported variants end at once) would otherwise re-read
the store and lay out the screen once per result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engines.core.schema import display_label

if TYPE_CHECKING:
    from textual.timer import Timer

RESULTS_FLUSH_S = 0.3  # results announced within this are shown in one refresh


class ResultsFeed:
    """Owned by the results pane (``pane.feed``). ``on_shown(first)`` is called after a timed
    flush showed results (``first``: the store had none before)."""

    def __init__(self, pane: Any, on_shown: Callable[[bool], None] | None = None):  # pane: the ResultsPane
        self.pane = pane
        self.on_shown = on_shown
        self.pending: list[dict[str, Any]] = []  # announced, not yet shown
        self.timer: Timer | None = None

    def result_recorded(self, result: dict[str, Any]) -> None:
        """A result the sweep stored: shown with the others of its burst."""
        self.pending.append(result)
        if self.timer is None:
            self.timer = self.pane.set_timer(RESULTS_FLUSH_S, self._flush_timed, name="results-flush")

    def _flush_timed(self) -> None:
        first = self.flush()
        if first is not None and self.on_shown is not None:
            self.on_shown(first)

    def flush(self) -> bool | None:
        """Show the results that arrived since the last flush (also called when a sweep ends, so
        every result is in the table before the counts are read). None when there were none;
        else whether they are the store's first results."""
        if self.timer is not None:
            self.timer.stop()
            self.timer = None
        batch, self.pending = self.pending, []
        if not batch:
            return None
        had_results = bool(self.pane.total)
        self.pane.add_results(batch)
        failed = [r for r in batch if r["status"] == "failed"]
        if failed:  # one toast for the burst, a line per failed variant
            self.pane.notify("\n".join(f"{display_label(r)} · {r['runtime']} · {r['device']}: {r.get('error')}"
                                       for r in failed),
                             title="variant failed (stored)" if len(failed) == 1
                             else f"{len(failed)} variants failed (stored)", severity="error", timeout=8)
        return not had_results and bool(self.pane.total)

    def counts(self, run_id: str | None) -> str:
        """``3 ok · 1 failed · 0 unsupported``: the run's results, read from the store."""
        mine = self.pane.run_results(run_id)
        counts = {s: sum(1 for r in mine if r["status"] == s) for s in ("ok", "failed", "unsupported")}
        return f"{counts['ok']} ok · {counts['failed']} failed · {counts['unsupported']} unsupported"

    def set_run_status(self, run_id: str, status: str) -> None:
        run = self.pane.runs.get(run_id)
        if run is not None:
            run["status"] = status

    def rank_devices(self, run_id: str, objective: str = "latency") -> dict[str, Any] | None:
        """Rank the run's devices (engines.analysis.device_choice, as ``qbench run --devices auto``)
        and show the best with its evidence under the results."""
        from engines.analysis.device_choice import choose_device

        results = self.pane.run_results(run_id)
        if not results:
            return None
        choice = choose_device(results, objective)
        self.pane.show_device_choice(results[0]["model"], choice)
        return choice
