"""The one result schema: a dataclass and its codecs (JSON dict, SQLite row, CSV).

Every layer speaks it: the worker fills the measured fields, the runner adds the identity
(model × recipe × runtime × device × batch size), the store writes :meth:`Result.to_row`, and
the CLI, the app and the analysis read :meth:`Result.to_dict` dicts. A field is added here once;
the codecs below are the only places that spell the columns.

Plain Python only (no numpy, no engine imports): the UI process uses this module.
"""

from __future__ import annotations

import csv
import io
import json
import math
import socket
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

# ``interrupted``: a fleet host was lost while it measured the variant (``--resume`` measures it again).
RESULT_STATUSES = ("ok", "failed", "unsupported", "interrupted")
LATENCY_KEYS = ("p50", "p90", "p99", "mean", "std", "iqr", "min", "max", "samples")
AGREEMENT_KEYS = ("top1", "sqnr_db", "cosine")
# A classifier's further agreement figures (top1_confident, confident_views, top5) have no column:
# the row keeps them in its metrics JSON under this key, and reading the row puts them back.
AGREEMENT_MORE = "agreement_more"
# Per-phase memory (MB): RSS after imports, the model load's and the session's growth, the
# timing loop's peak (absolute, and above the loop's start), the framework's device memory.
MEMORY_KEYS = ("baseline_mb", "load_mb", "open_mb", "payload_mb", "session_base_mb", "timing_peak_mb",
               "timing_growth_mb", "device_mb", "process_peak_mb")
# Why a figure deserves a second look: its rounds disagree, other processes used the CPU while it
# was timed, or the kernels only simulate the method (eager Q/DQ).
RESULT_FLAGS = ("unstable", "under-load", "simulated")
UNSTABLE_SPREAD = 0.10  # rounds' p50s further apart than 10 % of their median (torch's IQR warning level)


def local_host() -> str:
    """The name results measured on this machine carry (a fleet worker's ``--name`` elsewhere)."""
    return socket.gethostname()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Result:
    """One measured (or refused) variant at one batch size."""

    # identity: model × recipe × runtime × device × batch size (one per run)
    model: str
    method: str  # the recipe's first method: filters and legacy readers use it
    runtime: str
    device: str
    batch_size: int
    recipe_id: str = ""  # stable hash of the recipe's steps and their configs
    label: str = ""  # short human name of the recipe, e.g. "int4(g128)"
    recipe: list[dict[str, Any]] = field(default_factory=list)  # [{"method", "config"}, ...]
    config: dict[str, Any] = field(default_factory=dict)  # the first step's config (legacy shape)
    runtime_config: dict[str, Any] = field(default_factory=dict)
    passes: list[str] = field(default_factory=list)  # the realised chain, e.g. export-onnx, ort-nbits
    status: str = "ok"
    error: str | None = None
    # measurements
    latency_ms: dict[str, float] | None = None  # LATENCY_KEYS
    throughput_per_s: float | None = None
    load_s: float | None = None
    quantize_s: float | None = None
    peak_rss_mb: float | None = None  # the measuring process's lifetime peak (imports, reference…): a detail
    size_mb: float | None = None
    accuracy: float | None = None
    agreement: dict[str, float] | None = None  # AGREEMENT_KEYS
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    artifact: str | None = None
    runtime_info: dict[str, Any] = field(default_factory=dict)
    # The variant's own memory: what its session adds to the process when it opens (weights,
    # arenas, compiled code, the first call), plus the tensors of a module the passes built in
    # memory, plus the timing loop's growth at this batch size — not the harness (interpreter,
    # imports, the fp32 reference, the accuracy pass's large batches). ``memory`` holds the per-phase figures
    # (MEMORY_KEYS); the process peak stays in ``peak_rss_mb``.
    memory_mb: float | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    # --repeat: one entry per timing round ({"round", "p50", "mean", "samples", "other_cpu", …});
    # ``spread`` is (max - min) / median of the rounds' p50s; ``flags`` holds RESULT_FLAGS.
    rounds: list[dict[str, Any]] = field(default_factory=list)
    spread: float | None = None
    flags: list[str] = field(default_factory=list)
    # Energy over the timed calls, idle power subtracted (engines.devices.energy.energy_figure):
    # {"joules_per_inference", "watts", "source", …} or {"joules_per_inference": None, "reason"}.
    energy: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    # The machine that measured it: this one by default, a fleet worker's name otherwise.
    host: str = ""
    # set by the store
    id: int | None = None
    run_id: str | None = None

    def __post_init__(self) -> None:
        if self.status not in RESULT_STATUSES:
            raise ValueError(f"unknown result status {self.status!r}")
        if not self.label:
            self.label = self.method
        if not self.host:
            self.host = local_host()

    # --- dict (JSON) ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The public shape: what ``--json`` writes and the app reads (floats as measured).

        Shallow: the containers are shared with this Result, not copied (``dataclasses.asdict``
        deep-copies and cost seconds on 20,000 stored results)."""
        return {name: getattr(self, name) for name in _FIELD_NAMES}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        """From the public shape; unknown keys are ignored (older or newer writers)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    # --- SQLite row -------------------------------------------------------------------------

    def to_row(self) -> dict[str, Any]:
        row: dict[str, Any] = {}
        more = {k: v for k, v in (self.agreement or {}).items() if k not in AGREEMENT_KEYS}
        for name, kind in ROW_FIELDS.items():
            value = getattr(self, name)
            if name == "metrics" and more:
                value = {**value, AGREEMENT_MORE: more}
            row[name] = json.dumps(value, default=str) if kind is str and name in _JSON_FIELDS else value
        latency = self.latency_ms or {}
        for key in LATENCY_KEYS:
            row[_latency_column(key)] = _finite_or_none(latency.get(key))
        agreement = self.agreement or {}
        for key in AGREEMENT_KEYS:
            # SQLite keeps an infinite REAL (an exact match's SQNR); NaN becomes NULL.
            value = agreement.get(key)
            row[f"agreement_{key}"] = None if isinstance(value, float) and math.isnan(value) else value
        row["finished_at"] = self.finished_at or now_iso()
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Result:
        data: dict[str, Any] = {}
        for name in ROW_FIELDS:
            value = row.get(name)
            if name in _JSON_FIELDS:
                value = json.loads(value) if value else _JSON_FIELDS[name]()
            data[name] = value
        latency = {k: row.get(_latency_column(k)) for k in LATENCY_KEYS}
        if latency["samples"] is not None:
            latency["samples"] = int(latency["samples"])
        data["latency_ms"] = latency if latency["p50"] is not None else None
        agreement = {k: row.get(f"agreement_{k}") for k in AGREEMENT_KEYS}
        has_agreement = agreement["top1"] is not None or agreement["cosine"] is not None
        more = data["metrics"].pop(AGREEMENT_MORE, None)
        data["agreement"] = {**agreement, **(more or {})} if has_agreement else None
        data["id"], data["run_id"] = row.get("id"), row.get("run_id")
        return cls(**data)


_FIELD_NAMES = tuple(f.name for f in fields(Result))

# Columns of the results table that hold one field each (JSON text for the containers); the
# latency and agreement dicts are spread over columns of their own (filterable, sortable).
ROW_FIELDS: dict[str, type] = {
    "model": str, "method": str, "runtime": str, "device": str, "batch_size": int,
    "recipe_id": str, "label": str, "recipe": str, "config": str, "runtime_config": str, "passes": str,
    "status": str, "error": str, "throughput_per_s": float, "load_s": float, "quantize_s": float,
    "peak_rss_mb": float, "size_mb": float, "accuracy": float, "metrics": str, "notes": str,
    "artifact": str, "runtime_info": str, "started_at": str, "finished_at": str,
    "memory_mb": float, "memory": str, "rounds": str, "spread": float, "flags": str, "host": str,
    "energy": str,
}
_JSON_FIELDS = {"recipe": list, "config": dict, "runtime_config": dict, "passes": list, "metrics": dict,
                "notes": list, "runtime_info": dict, "memory": dict, "rounds": list, "flags": list,
                "energy": dict}


def _latency_column(key: str) -> str:
    return "latency_samples" if key == "samples" else f"latency_{key}_ms"


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and (math.isnan(value) or math.isinf(value)) else value


# --- keys ------------------------------------------------------------------------------------


def variant_key(r: dict[str, Any]) -> tuple[str, str, str, int]:
    """What a run measures once: recipe × runtime × device × batch size."""
    return (r.get("recipe_id") or r["method"], r["runtime"], r["device"], r["batch_size"])


def result_key(r: dict[str, Any]) -> str:
    """Unique across the store: the run plus the variant key (plus ``@host`` for another machine's)."""
    recipe, runtime, device, batch = variant_key(r)
    key = f"{r.get('run_id')}/{recipe}/{runtime}/{device}/{batch}"
    host = r.get("host")
    return key if not host or host == local_host() else f"{key}@{host}"


def display_label(r: dict[str, Any]) -> str:
    return r.get("label") or r["method"]


# --- JSON and CSV writers ----------------------------------------------------------------------


def public_json(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results with non-finite floats turned into null (an exact match's SQNR), for json.dumps."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return _finite_or_none(value)

    return [clean(r) for r in results]


CSV_COLUMNS = ("id", "run_id", "host", "model", "label", "recipe_id", "method", "runtime", "device", "batch_size",
               "status", "error", "latency_p50_ms", "latency_p90_ms", "latency_p99_ms", "latency_mean_ms",
               "latency_std_ms", "latency_iqr_ms", "throughput_per_s", "load_s", "memory_mb", "spread", "flags",
               "peak_rss_mb", "size_mb", "accuracy", "agreement_top1", "agreement_sqnr_db", "agreement_cosine")


def results_csv(results: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for r in results:
        lat, agr = r.get("latency_ms") or {}, r.get("agreement") or {}
        flat = {**r, "label": display_label(r), "flags": " ".join(r.get("flags") or []) or None, **{_latency_column(k): v for k, v in lat.items()},
                **{f"agreement_{k}": v for k, v in agr.items()}}
        writer.writerow(["" if flat.get(c) is None else flat.get(c) for c in CSV_COLUMNS])
    return buf.getvalue()
