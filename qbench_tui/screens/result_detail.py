"""Everything stored about one result: measurements, settings, notes, the runtime and the
environment of its run, and the same variant's earlier measurements."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Static

from engines.analysis.figures import metric
from qbench_tui.analysis import display_label, fmt_num, fmt_time, latency, variant_label

STATUS_STYLE = {"ok": "$text-success", "failed": "$text-error", "unsupported": "$text-warning"}


class ResultDetailScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,enter", "dismiss", "Close")]

    def __init__(self, result: dict[str, Any], run: dict[str, Any] | None,
                 earlier: list[dict[str, Any]] | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.result, self.run, self.earlier = result, run or {}, earlier or []

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog -tall", id="detail-dialog") as dialog:
            dialog.border_title = f"{self.result['model']} · {variant_label(self.result)}"
            dialog.border_subtitle = "escape closes"
            with VerticalScroll():
                yield Static(self._text(), id="detail-text")

    def _text(self) -> Content:
        r = self.result
        out: list[Content] = []

        def section(title: str) -> None:
            if out:
                out.append(Content(""))
            out.append(Content.from_markup("[b $text-accent]$t[/]", t=title))

        def row(key: str, value: Any, style: str = "") -> None:
            text = value if isinstance(value, str) else fmt_num(value)
            markup = f"  [$text-muted]$k[/] [{style}]$v[/]" if style else "  [$text-muted]$k[/] $v"
            out.append(Content.from_markup(markup, k=key.ljust(20), v=text))

        section("Result")
        row("status", r["status"], STATUS_STYLE.get(r["status"], ""))
        if r.get("id") is not None:  # what export, serve, version and compare take
            row("id", f"{r['id']}  (qbench export {r['id']} · qbench compare {r['id']} OTHER_ID)")
        if r.get("error"):
            row("error", r["error"], "$text-error")
        row("model", r["model"])
        row("recipe", display_label(r) + (f"  (id {r['recipe_id']})" if r.get("recipe_id") else ""))
        if r["method"] != display_label(r):
            row("method", r["method"])
        if r.get("passes"):
            row("passes", " → ".join(str(p) for p in r["passes"]))
        row("runtime · device", f"{r['runtime']} · {r['device']}")
        row("batch size", r["batch_size"])
        row("run", f"{r.get('run_id') or '–'} ({self.run.get('source', '?')}, {self.run.get('status', '?')})")
        row("measured", f"{fmt_time(r.get('started_at'))} → {fmt_time(r.get('finished_at'))}")
        if r.get("config"):
            section("Method settings")
            for key, value in r["config"].items():
                row(key, str(value))
        if len(r.get("recipe") or []) > 1:  # a chain: each step's method and settings
            section("Recipe steps")
            for i, step in enumerate(r["recipe"], 1):
                settings = ", ".join(f"{k}={v}" for k, v in (step.get("config") or {}).items() if k != "version")
                row(f"{i}. {step.get('method', '?')}", settings or "defaults")
        if r.get("runtime_config"):
            section("Runtime settings")
            for key, value in r["runtime_config"].items():
                row(key, value if isinstance(value, str) else json.dumps(value, default=str))
        lat = r.get("latency_ms") or {}
        if lat:
            section("Latency per call (ms)")
            for key in ("p50", "p90", "p99", "mean", "std", "iqr", "min", "max"):
                row(key, lat.get(key))
            row("samples", lat.get("samples"))
            row("throughput", f"{fmt_num(r.get('throughput_per_s'), 0)} items/s")
        if r.get("rounds"):
            section(f"Rounds ({len(r['rounds'])}, interleaved with the sweep's other variants)")
            for rd in r["rounds"]:
                load = f", others used {rd['other_cpu']:.1f} cores" if rd.get("other_cpu") else ""
                row(f"round {rd['round'] + 1}", f"p50 {fmt_num(rd['latency']['p50'])} ms{load}")
            row("spread of p50s", "–" if r.get("spread") is None else f"{r['spread']:.1%}")
        if r.get("flags"):
            row("flags", ", ".join(r["flags"]))
        if any(r.get(k) is not None for k in ("load_s", "quantize_s", "peak_rss_mb", "size_mb")):
            section("Cost")
            row("cold start (load+1st)", _unit(r.get("load_s"), "s"))
            row("quantize", _unit(r.get("quantize_s"), "s"))
            row("memory (the variant's)", _unit(r.get("memory_mb"), "MB"))
            memory = r.get("memory") or {}
            for key, label in (("load_mb", "  model load"), ("open_mb", "  session open"),
                               ("payload_mb", "  in-memory module"), ("timing_growth_mb", "  timing loop growth"),
                               ("device_mb", "  device memory"), ("baseline_mb", "  harness baseline")):
                if memory.get(key) is not None:
                    row(label, _unit(memory[key], "MB"))
            row("process peak RSS", _unit(r.get("peak_rss_mb"), "MB"))
            row("size on disk", _unit(r.get("size_mb"), "MB"))
            if r.get("energy"):  # over the timed calls, idle power subtracted (engines.devices.energy)
                from engines.devices.energy import describe

                row("energy", describe(r["energy"]))
            if r.get("artifact"):
                row("artifact", str(r["artifact"]))
        agreement = r.get("agreement") or {}
        if r.get("accuracy") is not None or agreement:
            section("Quality")
            row("accuracy", r.get("accuracy"))
            row("top-1 agreement", agreement.get("top1"))
            row("SQNR", _unit(agreement.get("sqnr_db"), "dB"))
            row("cosine", agreement.get("cosine"))
        metrics = r.get("metrics") or {}
        if metrics.get("sensitivity"):
            section("Layer sensitivity (most sensitive first)")
            out.extend(sensitivity_chart(metrics["sensitivity"], metrics.get("mixed_plan") or {}))
        if metrics.get("qat_history"):
            section("Quantization-aware training")
            for step in metrics["qat_history"]:
                row(f"epoch {step.get('epoch')}", f"loss {fmt_num(step.get('loss'))}  "
                                                   f"accuracy {fmt_num(step.get('accuracy'), 3)}")
        other = {k: v for k, v in metrics.items() if k not in _CHARTED}
        if other:
            section("Other metrics")
            for key, value in other.items():  # each with its unit (and interval), named from its key
                row(key.replace("_", " "), metric(key, value))
        if r.get("notes"):
            section("Notes")
            for note in r["notes"]:
                out.append(Content.from_markup("  [$text-warning]•[/] $n", n=str(note)))
        if r.get("runtime_info"):
            section("Runtime")
            for key, value in r["runtime_info"].items():
                row(key.replace("_", " "), _words(value))
        env = self.run.get("environment") or {}
        if env:
            section("Environment of the run")
            for key in ("qbench", "python", "os", "machine", "cpu", "physical_cores", "logical_cores",
                        "memory_gib", "threads"):
                if key in env:
                    row(key.replace("_", " "), str(env[key]))
            for name, version in (env.get("packages") or {}).items():
                row(name, str(version))
            for name, dev in (env.get("devices") or {}).items():
                row(f"device {name}", ("present · " if dev.get("present") else "absent · ") + str(dev.get("detail", "")))
        measure = (self.run.get("request") or {}).get("measure") or {}
        if measure:
            section("Measurement settings")
            for key, value in measure.items():
                row(key, str(value))
        if self.earlier:
            section("Same variant in other runs")
            for other in self.earlier[:12]:
                out.append(Content.from_markup(
                    "  [$text-muted]$when[/] $run  p50 [b]$p[/] ms  acc $acc",
                    when=fmt_time(other.get("finished_at")), run=str(other.get("run_id")),
                    p=fmt_num(latency(other)), acc=fmt_num(other.get("accuracy"), 3)))
        return Content("\n").join(out)


_CHARTED = ("sensitivity", "mixed_plan", "qat_history")
BAR_WIDTH = 30


def sensitivity_chart(rows: list[dict[str, Any]], plan: dict[str, str]) -> list[Content]:
    """A sorted bar per layer: the output's noise when only that layer is quantized (or, without
    that measurement, the weight's), relative to the worst layer; its precision in the mixed plan."""
    def noise(row: dict[str, Any]) -> float:
        db = row.get("output_sqnr_db") if row.get("output_sqnr_db") is not None else row.get("weight_sqnr_db")
        return 0.0 if db is None else 10 ** (-db / 10)

    ranked = sorted(rows, key=noise, reverse=True)
    worst = max((noise(r) for r in ranked), default=0.0) or 1.0
    width = min(28, max((len(str(r["layer"])) for r in ranked), default=8))
    lines = []
    for r in ranked:
        filled = max(1, round(BAR_WIDTH * noise(r) / worst))
        precision = plan.get(r["layer"], "")
        style = "$text-warning" if precision in ("fp32", "fp16") else "$text-primary"
        db = r.get("output_sqnr_db") if r.get("output_sqnr_db") is not None else r.get("weight_sqnr_db")
        lines.append(Content.from_markup(
            f"  $name [{style}]$bar[/]$pad $db dB  [$text-muted]$p[/]", name=str(r["layer"])[-width:].ljust(width),
            bar="█" * filled, pad=" " * (BAR_WIDTH - filled), db=fmt_num(db), p=precision))
    return lines


def _words(value: Any) -> str:
    """A runtime fact in words: yes/no, lists joined, settings as "name value"."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k.replace('_', ' ')} {_words(v)}" for k, v in value.items()) or "–"
    if isinstance(value, (list, tuple)):
        return ", ".join(_words(v) for v in value) or "–"
    return "–" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)


def _unit(value: Any, unit: str) -> str:
    return "–" if value is None else f"{fmt_num(value)} {unit}"
