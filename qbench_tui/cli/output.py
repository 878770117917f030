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


def _millijoules(r: dict[str, Any]) -> str:
    """Energy per inference (idle power subtracted) in mJ; "–" where it could not be read."""
    joules = (r.get("energy") or {}).get("joules_per_inference")
    return "–" if joules is None else f"{joules * 1000:.3g}"


def results_table(results: list[dict[str, Any]], title: str = "", references: list[dict[str, Any]] = ()):
    """The results as a Rich table, with each variant's speed-up and size against the fp32 of its
    run on the same runtime, device and batch size (``references``: fp32 rows the list may lack),
    the spread of its timing rounds, and the variant's own memory where measured."""
    from rich.table import Table

    from engines.core.schema import display_label
    from qbench_tui.analysis import fmt_ratio, result_key, size_ratios, speedups

    known = {result_key(r) for r in results}
    everything = [*results, *(r for r in references if result_key(r) not in known)]
    speedup, size_ratio = speedups(everything), size_ratios(everything)
    show_memory = any(r.get("memory_mb") is not None for r in results)
    show_energy = any(r.get("energy") for r in results)  # "–" where the machine has no readable counter
    show_host = len({r.get("host") for r in results}) > 1  # a fleet's run: which machine measured it
    # The id that export, register, version and serve take (stored results have one).
    show_id = any(r.get("id") is not None for r in results)
    table = Table(title=title, header_style="bold", show_lines=False)
    for col, justify in (*((("id", "right"),) if show_id else ()), ("model", "left"), ("recipe", "left"), ("runtime", "left"), ("dev", "left"),
                         *((("host", "left"),) if show_host else ()), ("bs", "right"), ("status", "left"), ("p50 ms", "right"), ("±rounds", "right"),
                         ("p99 ms", "right"), ("speedup", "right"), ("items/s", "right"),
                         *((("mem MB", "right"),) if show_memory else ()),
                         *((("mJ/inf", "right"),) if show_energy else ()), ("size MB", "right"), ("size", "right"),
                         ("acc", "right"), ("top1", "right"), ("SQNR dB", "right"), ("note", "left")):
        # The ratios keep their width ("×0.25") when a narrow terminal squeezes the table.
        table.add_column(col, justify=justify, no_wrap=col != "note",  # type: ignore[arg-type]
                         min_width=5 if col in ("speedup", "size") else None)
    for r in results:
        lat = r.get("latency_ms") or {}
        agr = r.get("agreement") or {}
        key = result_key(r)
        status_style = {"ok": "green", "failed": "red", "unsupported": "yellow"}.get(r["status"], "magenta")
        table.add_row(
            *((str(r.get("id") or ""),) if show_id else ()), r["model"], display_label(r), r["runtime"], r["device"],
            *((str(r.get("host") or ""),) if show_host else ()), str(r["batch_size"]),
            f"[{status_style}]{r['status']}[/]", _fmt(lat.get("p50"), ".3f"), _spread(r),
            _fmt(lat.get("p99"), ".3f"), fmt_ratio(speedup.get(key)), _fmt(r.get("throughput_per_s"), ",.0f"),
            *((_fmt(r.get("memory_mb"), ",.0f"),) if show_memory else ()),
            *((_millijoules(r),) if show_energy else ()), _fmt(r.get("size_mb"), ".2f"),
            fmt_ratio(size_ratio.get(key)),
            _fmt(r.get("accuracy"), ".3f"), _fmt(agr.get("top1"), ".3f"), _fmt(agr.get("sqnr_db"), ".1f"),
            " ".join(r.get("flags") or []) + ("; " if r.get("flags") and r.get("error") else "")
            + (r.get("error") or "")[:60],
        )
    return table

