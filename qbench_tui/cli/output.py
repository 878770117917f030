"""Rich output of the CLI: the console and the results table."""

from __future__ import annotations

import sys
from typing import Any


def make_console(stderr: bool = False):
    """Rich console; when piped, wide enough that tables are not squeezed to 80 columns."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 200)


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and value == float("inf"):
        return "∞"
    return format(value, spec)


def _spread(r: dict[str, Any]) -> str:
    """The rounds' spread, in yellow when it makes the result unstable."""
    spread = r.get("spread")
    if spread is None:
        return "–"
    text = f"{spread:.0%}"
    return f"[yellow]{text}[/]" if "unstable" in (r.get("flags") or []) else text


def results_table(results: list[dict[str, Any]], title: str = ""):
    from rich.table import Table

    from engines.core.schema import display_label

    table = Table(title=title, header_style="bold", show_lines=False)
    for col, justify in (("model", "left"), ("recipe", "left"), ("runtime", "left"), ("dev", "left"),
                         ("bs", "right"), ("status", "left"), ("p50 ms", "right"), ("±rounds", "right"),
                         ("p99 ms", "right"), ("items/s", "right"), ("mem MB", "right"), ("size MB", "right"), ("acc", "right"), ("top1", "right"),
                         ("SQNR dB", "right"), ("note", "left")):
        table.add_column(col, justify=justify, no_wrap=col != "note")  # type: ignore[arg-type]
    for r in results:
        lat = r.get("latency_ms") or {}
        agr = r.get("agreement") or {}
        status_style = {"ok": "green", "failed": "red", "unsupported": "yellow"}.get(r["status"], "")
        table.add_row(
            r["model"], display_label(r), r["runtime"], r["device"], str(r["batch_size"]),
            f"[{status_style}]{r['status']}[/]", _fmt(lat.get("p50"), ".3f"), _spread(r),
            _fmt(lat.get("p99"), ".3f"), _fmt(r.get("throughput_per_s"), ",.0f"), _fmt(r.get("memory_mb"), ".0f"),
            _fmt(r.get("size_mb"), ".2f"),
            _fmt(r.get("accuracy"), ".3f"), _fmt(agr.get("top1"), ".3f"), _fmt(agr.get("sqnr_db"), ".1f"),
            " ".join(r.get("flags") or []) + ("; " if r.get("flags") and r.get("error") else "")
            + (r.get("error") or "")[:60],
        )
    return table

