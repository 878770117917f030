"""The insights table: per architecture family × device × runtime × technique, the median speed-up
over fp32 across the models measured, its range, the size ratio, how many models kept quality and
the roofline regime; ★ marks the winner of each family × device (engines.analysis.insights)."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable

COLUMNS = ("", "family", "device", "runtime", "technique", "models", "speed-up", "range", "size ×", "kept", "regime")


class InsightsTable(DataTable):
    """Read-only rows of :func:`engines.analysis.insights.insights`."""

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.add_columns(*COLUMNS)

    def show(self, data: dict[str, Any]) -> None:
        self.clear()
        for r in data.get("rows", []):
            self.add_row("★" if r["winner"] else "", r["family"], r["device"], r["runtime"], r["technique"],
                         str(r["n"]), f"{r['speedup']:.2f}×", f"{r['speedup_low']:.2f}–{r['speedup_high']:.2f}",
                         "–" if r["size_ratio"] is None else f"{r['size_ratio']:.2f}", f"{r['kept']}/{r['n']}",
                         ", ".join(r["regimes"]) or "–")
