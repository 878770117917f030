"""Rich output of the CLI: the console, and tables fitted to the terminal's width.

A table is a list of :class:`Col` (name, alignment, priority, how far an identifier may shorten)
and its rows. On a terminal narrower than the table, identifiers shorten and then the columns of
the highest priority numbers are left out (``qbench_tui.fit``, as in the app), and the caption
says how many and that ``--wide`` shows them all. Piped output is never fitted: it stays whole.
A new column is one more ``Col`` with its priority.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def make_console(stderr: bool = False):
    """Rich console; when piped, wide enough that no table is squeezed or cut (the whole of it)."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else PIPED_WIDTH)


PIPED_WIDTH = 1000  # columns of a piped console: lines as long as the table's own


@dataclass(frozen=True)
class Col:
    name: str
    justify: str = "left"
    priority: int = 5  # 1: always shown; higher numbers give way first on a narrow terminal
    shrink: int | None = None  # an identifier: may shorten to this many cells (ending in …)
    wrap: int | None = None  # prose: wraps, needing at least this many cells
    min_width: int | None = None


def fitted_table(cols: Sequence[Col], rows: Sequence[Sequence[str]], console: Any = None, wide: bool = False,
                 **table_args: Any):
    """A Rich table of ``rows`` (markup strings) fitted to ``console``'s width (see the module)."""
    from rich.table import Table
    from rich.text import Text

    from qbench_tui.fit import FitColumn, fit_widths

    def natural(i: int) -> int:
        cells = [len(line) for row in rows for line in Text.from_markup(row[i]).plain.splitlines() or [""]]
        widest = max([len(cols[i].name), *cells])
        return min(widest, cols[i].wrap) if cols[i].wrap else widest

    keep = {c.name: None for c in cols}
    if console is not None and console.is_terminal and not wide:
        fits = [FitColumn(c.name, natural(i), c.priority, c.shrink) for i, c in enumerate(cols)]
        keep = fit_widths(fits, console.width - 1, gap=3)  # each column: its padding and a rule
        keep = {f.name: (keep[f.name] if keep[f.name] < n.width else None)
                for f, n in zip(cols, fits, strict=True) if f.name in keep}
    left_out = len(cols) - len(keep)
    if left_out:
        note = f"{left_out} column{'s' if left_out > 1 else ''} left out at this width: --wide shows all"
        table_args["caption"] = " · ".join(x for x in (table_args.get("caption"), note) if x)
    table = Table(header_style="bold", **table_args)
    for c in cols:
        if c.name in keep:
            cut = keep[c.name]
            table.add_column(c.name, justify=c.justify, no_wrap=c.wrap is None,  # type: ignore[arg-type]
                             min_width=c.min_width, max_width=cut, overflow="ellipsis" if cut else "fold")
    for row in rows:
        table.add_row(*(cell for c, cell in zip(cols, row, strict=True) if c.name in keep))
    return table


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


def results_table(results: list[dict[str, Any]], title: str = "", references: Sequence[dict[str, Any]] = (),
                  console: Any = None, wide: bool = False):
    """The results as a Rich table, with each variant's speed-up and size against the fp32 of its
    run on the same runtime, device and batch size (``references``: fp32 rows the list may lack),
    the spread of its timing rounds, and the variant's own memory where measured; fitted to
    ``console``'s width unless ``wide`` (see :func:`fitted_table`)."""
    from engines.core.schema import display_label
    from qbench_tui.analysis import fmt_ratio, result_key, size_ratios, speedups

    known = {result_key(r) for r in results}
    everything = [*results, *(r for r in references if result_key(r) not in known)]
    speedup, size_ratio = speedups(everything), size_ratios(everything)
    show_memory = any(r.get("memory_mb") is not None for r in results)
    show_energy = any(r.get("energy") for r in results)  # "–" where the machine has no readable counter
    show_host = len({r.get("host") for r in results}) > 1  # a fleet's run: which machine measured it
    # The id that export, register, version, serve and compare take (stored results have one).
    show_id = any(r.get("id") is not None for r in results)
    # Language models: generation figures beside the forward pass's (llama-bench's tg, first token, perplexity)
    show_lm = any((r.get("metrics") or {}).get("decode_tokens_per_s") is not None for r in results)
    cols = [
        *((Col("id", "right", 2),) if show_id else ()), Col("model", priority=2, shrink=10),
        Col("recipe", priority=1, shrink=14), Col("runtime", priority=4, shrink=6), Col("dev", priority=3),
        *((Col("host", priority=3, shrink=8),) if show_host else ()), Col("bs", "right", 4),
        Col("status", priority=2), Col("p50 ms", "right", 1), Col("±rounds", "right", 5),
        Col("p99 ms", "right", 3), Col("speedup", "right", 1, min_width=5), Col("items/s", "right", 4),
        *((Col("mem MB", "right", 5),) if show_memory else ()),
        *((Col("mJ/inf", "right", 4),) if show_energy else ()), Col("size MB", "right", 3),
        Col("size", "right", 2, min_width=5),
        *((Col("tok/s", "right", 1), Col("TTFT ms", "right", 2), Col("ppl", "right", 2)) if show_lm else ()),
        Col("acc", "right", 1), Col("top1", "right", 4),
        Col("SQNR dB", "right", 5), Col("note", priority=3, wrap=30),
    ]
    rows = []
    for r in results:
        lat = r.get("latency_ms") or {}
        agr = r.get("agreement") or {}
        key = result_key(r)
        status_style = {"ok": "green", "failed": "red", "unsupported": "yellow"}.get(r["status"], "magenta")
        rows.append([
            *((str(r.get("id") or ""),) if show_id else ()), r["model"], display_label(r), r["runtime"], r["device"],
            *((str(r.get("host") or ""),) if show_host else ()), str(r["batch_size"]),
            f"[{status_style}]{r['status']}[/]", _fmt(lat.get("p50"), ".3f"), _spread(r),
            _fmt(lat.get("p99"), ".3f"), fmt_ratio(speedup.get(key)), _fmt(r.get("throughput_per_s"), ",.0f"),
            *((_fmt(r.get("memory_mb"), ",.0f"),) if show_memory else ()),
            *((_millijoules(r),) if show_energy else ()), _fmt(r.get("size_mb"), ".2f"),
            fmt_ratio(size_ratio.get(key)),
            *(_lm_cells(r) if show_lm else ()),
            _fmt(r.get("accuracy"), ".3f"), _fmt(agr.get("top1"), ".3f"), _fmt(agr.get("sqnr_db"), ".1f"),
            _escape(" ".join(r.get("flags") or []) + ("; " if r.get("flags") and r.get("error") else "")
                    + (r.get("error") or "")),  # whole: the column wraps it
        ])
    return fitted_table(cols, rows, console, wide, title=title, show_lines=False)


def _lm_cells(r: dict[str, Any]) -> tuple[str, str, str]:
    """Decode tokens/s (llama-bench's tg: mean ± sd where the runtime repeats it), time to first token, perplexity."""
    m = r.get("metrics") or {}
    tg, sd = m.get("tg_tokens_per_s"), m.get("tg_tokens_per_s_sd")
    rate = f"{tg:,.0f}±{sd:,.0f}" if tg is not None and sd is not None else _fmt(m.get("decode_tokens_per_s"), ",.0f")
    return rate, _fmt(m.get("ttft_ms"), ".2f"), _fmt(m.get("perplexity"), ".3f")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
