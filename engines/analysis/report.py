"""A dashboard to share: one self-contained HTML file of a run's or a model's results.

Plotly charts with plotly.js inlined once (the file opens with no network): quality against
latency and against size with the Pareto frontier, speed-ups over fp32 with their intervals,
memory and size per variant; then the recommendation with its reasons, the insights per family,
the results table and each run's environment. A small script records any page error in
``#qbench-errors`` (empty when all is well), which the browser test reads.
"""

from __future__ import annotations

import html
import json
from typing import Any

from engines.analysis.recommend import assess, fmt_speedup, frontier, label, latest, quality, where
from engines.analysis.rules import is_reference

_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px; color: #1f2328; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.5rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
.chart { min-height: 420px; } .best { font-weight: bold; } .muted { color: #656d76; }
"""

_ERROR_HOOK = """<script>
window.__qbenchErrors = [];
window.addEventListener('error', function (e) {
  window.__qbenchErrors.push(String(e.message || e));
  var box = document.getElementById('qbench-errors'); if (box) { box.textContent = window.__qbenchErrors.join('\\n'); }
});
</script>"""


def _variant(r: dict[str, Any]) -> str:
    return f"{label(r)} · {where(r)}"


def charts(results: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(title, plotly Figure) for each chart of the report."""
    import plotly.graph_objects as go

    rows = [r for r in assess(latest(results)) if quality(r) is not None]
    figures: list[tuple[str, Any]] = []
    for objective, axis, title in (("latency", "p50 latency (ms)", "Quality vs latency"),
                                   ("size", "size on disk (MB)", "Quality vs size")):
        fig = go.Figure()
        for runtime in sorted({r["result"]["runtime"] for r in rows}):
            mine = [r for r in rows if r["result"]["runtime"] == runtime]
            xs = [(r["result"].get("latency_ms") or {}).get("p50") if objective == "latency"
                  else r["result"].get("size_mb") for r in mine]
            fig.add_trace(go.Scatter(x=xs, y=[quality(r) for r in mine], mode="markers", name=runtime,
                                     text=[_variant(r["result"]) for r in mine], marker={"size": 10},
                                     hovertemplate="%{text}<br>x=%{x:.4g}<br>quality=%{y:.4f}<extra></extra>"))
        front = frontier(rows, objective)
        fig.add_trace(go.Scatter(
            x=[(r["result"].get("latency_ms") or {}).get("p50") if objective == "latency" else r["result"].get("size_mb")
               for r in front], y=[quality(r) for r in front], mode="lines+markers", name="Pareto frontier",
            line={"dash": "dash", "color": "#444"}, line_shape="hv",
            marker={"size": 16, "symbol": "circle-open", "color": "#444"}, hoverinfo="skip"))
        fig.update_layout(title=title, xaxis_title=axis, yaxis_title="accuracy (or agreement with fp32)",
                          xaxis_type="log" if objective == "latency" else None, height=420,
                          margin={"l": 60, "r": 20, "t": 50, "b": 50})
        figures.append((title, fig))
    timed = [r for r in assess(latest(results)) if r["speedup"] and not is_reference(r["result"])]
    if timed:
        names = [_variant(r["result"]) for r in timed]
        ratios = [r["speedup"]["ratio"] for r in timed]
        fig = go.Figure(go.Bar(
            x=names, y=ratios, name="speed-up",
            error_y={"type": "data", "symmetric": False,
                     "array": [r["speedup"]["high"] - r["speedup"]["ratio"] for r in timed],
                     "arrayminus": [r["speedup"]["ratio"] - r["speedup"]["low"] for r in timed]}))
        fig.add_hline(y=1.0, line_dash="dot", annotation_text="fp32")
        fig.update_layout(title="Speed-up over fp32 (median of per-round ratios, range of the rounds)",
                          yaxis_title="× fp32", height=420, margin={"l": 60, "r": 20, "t": 50, "b": 120})
        figures.append(("Speed-ups", fig))
    ok = [r for r in latest(results) if r["status"] == "ok"]
    if ok:
        names = [_variant(r) for r in ok]
        fig = go.Figure([go.Bar(x=names, y=[r.get("memory_mb") for r in ok], name="memory (MB)"),
                         go.Bar(x=names, y=[r.get("size_mb") for r in ok], name="size on disk (MB)")])
        fig.update_layout(title="Memory and size", barmode="group", yaxis_title="MB", height=420,
                          margin={"l": 60, "r": 20, "t": 50, "b": 120})
        figures.append(("Memory and size", fig))
    return figures


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td class='num'>{html.escape(str(c))}</td>" if i in numeric
                                    else f"<td>{html.escape(str(c))}</td>" for i, c in enumerate(row)) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v: Any, spec: str) -> str:
    return "" if v is None else format(v, spec)


def _mj(joules: float | None) -> float | None:
    return None if joules is None else joules * 1000


def _energy_note(results: list[dict[str, Any]]) -> str:
    """What the energy column means: its sources (idle power subtracted) or why it is empty."""
    from engines.devices.energy import describe

    read = {(r.get("energy") or {}).get("source") for r in results if (r.get("energy") or {}).get("source")}
    if read:
        return (f"<p class='muted'>Energy per inference over the timed calls, the machine's idle power "
                f"subtracted; source: {html.escape(', '.join(sorted(read)))}.</p>")
    why = {describe(r.get("energy")) for r in results if r.get("energy")}
    return f"<p class='muted'>Energy {html.escape('; '.join(sorted(why)))}.</p>" if why else ""


def build_html(title: str, results: list[dict[str, Any]], recommendation: dict[str, Any] | None = None,
               insight: dict[str, Any] | None = None, runs: list[dict[str, Any]] | None = None) -> str:
    """The whole page. ``runs`` (store rows with their environment) fill the environment section."""
    import plotly.io as pio

    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{_CSS}</style>{_ERROR_HOOK}</head><body>",
             f"<h1>{html.escape(title)}</h1><pre id='qbench-errors' class='muted'></pre>"]
    if recommendation is not None:
        best = recommendation.get("best")
        parts.append("<h2>Recommendation</h2>")
        head = (f"<p class='best'>{html.escape(best['label'])} on {html.escape(best['runtime'])} · "
                f"{html.escape(best['device'])} — {html.escape(recommendation['objective'])}, "
                f"{html.escape(recommendation['budget'])}</p>" if best else "<p>No variant qualifies.</p>")
        parts.append(head + "<ul>" + "".join(f"<li>{html.escape(t)}</li>" for t in recommendation["reasons"])
                     + "</ul>")
    figures = charts(results)
    parts.append("<h2>Charts</h2><div class='charts'>")
    for i, (_, fig) in enumerate(figures):
        parts.append("<div class='chart'>" + pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False,
                                                         config={"displaylogo": False, "responsive": True})
                     + "</div>")
    parts.append("</div>")
    if insight is not None and insight["rows"]:
        parts.append("<h2>Insights per architecture</h2><ul>"
                     + "".join(f"<li>{html.escape(v)}</li>" for v in insight["winners"]) + "</ul>")
        parts.append(_table(["", "family", "device", "runtime", "technique", "models", "speed-up (median)",
                             "range", "size ×", "keeps quality", "regime"],
                            [["★" if r["winner"] else "", r["family"], r["device"], r["runtime"], r["technique"],
                              ", ".join(r["models"]), f"{r['speedup']:.2f}×",
                              f"{r['speedup_low']:.2f}–{r['speedup_high']:.2f}", _fmt(r["size_ratio"], ".2f"),
                              f"{r['kept']}/{r['n']}", ", ".join(r["regimes"])] for r in insight["rows"]],
                            numeric={6, 7, 8}))
        if insight["surprises"]:
            parts.append("<h3>Surprises</h3><ul>" + "".join(f"<li>{html.escape(s['text'])}</li>"
                                                             for s in insight["surprises"]) + "</ul>")
    parts.append("<h2>Results</h2>")
    table_rows = []
    for row in assess(latest(results)):
        r = row["result"]
        lat = r.get("latency_ms") or {}
        agr = row["agreement"]
        table_rows.append([r["model"], label(r), r["runtime"], r["device"], r["batch_size"], _fmt(lat.get("p50"), ".4f"),
                           _fmt(lat.get("p99"), ".4f"), fmt_speedup(row["speedup"]), _fmt(r.get("throughput_per_s"), ",.0f"),
                           _fmt(r.get("size_mb"), ".3f"), _fmt(r.get("memory_mb"), ".1f"),
                           _fmt(_mj((r.get("energy") or {}).get("joules_per_inference")), ".3g"),
                           _fmt(r.get("accuracy"), ".4f"),
                           f"{agr[0]} {agr[1]:.4f}" if agr else "", " ".join(r.get("flags") or [])])
    parts.append(_table(["model", "recipe", "runtime", "device", "bs", "p50 ms", "p99 ms", "speed-up [interval]",
                         "items/s", "size MB", "memory MB", "mJ/inference", "accuracy", "agreement", "flags"],
                        table_rows, numeric={4, 5, 6, 7, 8, 9, 10, 11, 12}))
    parts.append(_energy_note(latest(results)))
    others = [r for r in latest(results) if r["status"] != "ok"]
    if others:
        parts.append("<h3>Not measured</h3>" + _table(
            ["variant", "status", "why"], [[_variant(r), r["status"], r.get("error") or ""] for r in others]))
    if runs:
        parts.append("<h2>Environment</h2>")
        for run in runs:
            env = run.get("environment") or {}
            flat = {k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in env.items()}
            parts.append(f"<h3>run {html.escape(run['id'])} · {html.escape(str(run.get('model')))} · "
                         f"{html.escape(str(run.get('created_at')))}</h3>"
                         + _table(["key", "value"], [[k, v] for k, v in flat.items()]))
    parts.append("</body></html>")
    return "\n".join(parts)
