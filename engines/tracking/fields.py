"""What qbench logs to MLflow: a stored run and result as params, metrics and tags.

Pure mapping (no MLflow import), shared by the sender and the registry, so a run's tags, a nested
run's params and a model version's tags spell each field the same way:

* params: the recipe and its config (``config.<field>``), the runtime and its settings
  (``runtime_config.<field>``), the device, threads, batch size, the passes;
* metrics: latency percentiles (``latency_p50_ms`` …), throughput, memory, size, accuracy,
  agreement, speedup against fp32, load and quantize time, the rounds' spread;
* tags: ``quant.*`` (method, label, bits, group size, symmetric, calibration, recipe id) and
  ``bench.*`` (runtime, device, batch size, status, flags), plus ``qbench.*`` identifiers.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

from engines.core.schema import AGREEMENT_KEYS, LATENCY_KEYS, display_label

MAX_PARAM_LENGTH = 6000  # MLflow's limit on a param value
MAX_TAG_LENGTH = 5000
EXPERIMENT_PREFIX = "qbench/"


def experiment_name(model: str) -> str:
    """One MLflow experiment per model."""
    return EXPERIMENT_PREFIX + model


def model_name(model: str) -> str:
    """A registered model's default name: the qbench model's, in the characters MLflow keeps."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", model).strip("-") or "model"


def millis(iso: str | None) -> int | None:
    if not iso:
        return None
    try:
        return int(datetime.fromisoformat(iso).timestamp() * 1000)
    except ValueError:
        return None


def _text(value: Any, limit: int = MAX_PARAM_LENGTH) -> str:
    if isinstance(value, (dict, list, tuple)):
        value = json.dumps(value, sort_keys=True, default=str)
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def run_name(result: dict[str, Any]) -> str:
    return f"{display_label(result)} · {result['runtime']} · {result['device']} · bs{result['batch_size']}"


# --- a qbench run: the parent MLflow run ----------------------------------------------------------


def run_params(run: dict[str, Any]) -> dict[str, str]:
    request = run.get("request") or {}
    params = {"model": run.get("model")}
    for key in ("methods", "runtimes", "devices", "batch_sizes", "threads", "timeout_s", "memory_limit_mb"):
        if request.get(key) is not None:
            params[key] = request[key]
    measure = request.get("measure") or {}
    for key, value in measure.items():
        params[f"measure.{key}"] = value
    for name, values in (request.get("configs") or {}).items():
        for key, value in (values or {}).items():
            params[f"defaults.{name}.{key}"] = value
    return {k: _text(v) for k, v in params.items() if v is not None}


def run_tags(run: dict[str, Any]) -> dict[str, str]:
    env = run.get("environment") or {}
    tags = {"qbench.run_id": run["id"], "qbench.model": run.get("model"), "bench.source": run.get("source"),
            "bench.host": run.get("host"), "bench.cpu": env.get("cpu"), "bench.os": env.get("os"),
            "bench.python": env.get("python"), "qbench.version": env.get("qbench")}
    return {k: _text(v, MAX_TAG_LENGTH) for k, v in tags.items() if v is not None}


# --- a result: a nested MLflow run -----------------------------------------------------------------


def result_params(result: dict[str, Any], run: dict[str, Any] | None = None) -> dict[str, str]:
    request = (run or {}).get("request") or {}
    params: dict[str, Any] = {
        "recipe": display_label(result), "recipe_id": result.get("recipe_id"), "method": result.get("method"),
        "recipe_steps": result.get("recipe") or None, "runtime": result["runtime"], "device": result["device"],
        "batch_size": result["batch_size"], "threads": request.get("threads") or (run or {}).get(
            "environment", {}).get("threads"),
        "passes": ",".join(result.get("passes") or []) or None,
    }
    for key, value in (result.get("config") or {}).items():
        params[f"config.{key}"] = value
    for key, value in (result.get("runtime_config") or {}).items():
        params[f"runtime_config.{key}"] = value
    return {k: _text(v) for k, v in params.items() if v is not None}


def result_metrics(result: dict[str, Any]) -> dict[str, float]:
    metrics: dict[str, Any] = {}
    latency = result.get("latency_ms") or {}
    for key in LATENCY_KEYS:
        name = "latency_samples" if key == "samples" else f"latency_{key}_ms"
        metrics[name] = latency.get(key)
    agreement = result.get("agreement") or {}
    for key in AGREEMENT_KEYS:
        metrics[f"agreement_{key}"] = agreement.get(key)
    for key in ("throughput_per_s", "memory_mb", "peak_rss_mb", "size_mb", "accuracy", "load_s", "quantize_s",
                "spread"):
        metrics[key] = result.get(key)
    extra = result.get("metrics") or {}
    speedup = extra.get("speedup_vs_fp32")
    if isinstance(speedup, dict):  # the runner's paired rounds: the median ratio and its range
        metrics["speedup_vs_fp32_low"], metrics["speedup_vs_fp32_high"] = speedup.get("low"), speedup.get("high")
        speedup = speedup.get("ratio")
    metrics["speedup_vs_fp32"] = speedup
    energy = result.get("energy") or {}  # over the timed calls, idle power subtracted
    metrics["energy_j_per_inference"], metrics["energy_watts"] = energy.get("joules_per_inference"), energy.get("watts")
    metrics["energy_j_per_token"] = energy.get("joules_per_token")
    for key, value in extra.items():  # task metrics (perplexity, f1…), named as the worker named them
        if key not in metrics:
            metrics[key] = value
    return {k: v for k, v in ((k, _finite(v)) for k, v in metrics.items()) if v is not None}


def round_metrics(result: dict[str, Any]) -> list[tuple[str, float, int]]:
    """Each timing round's p50 as a step of ``latency_round_p50_ms``."""
    out = []
    for r in result.get("rounds") or []:
        p50 = _finite((r.get("latency") or {}).get("p50"))
        if p50 is not None:
            out.append(("latency_round_p50_ms", p50, int(r.get("round") or 0)))
    return out


def quant_tags(result: dict[str, Any]) -> dict[str, str]:
    """The quantization metadata: what a model version carries and is searched by."""
    config = result.get("config") or {}
    steps = result.get("recipe") or [{"method": result.get("method"), "config": config}]
    tags: dict[str, Any] = {
        "quant.method": result.get("method"), "quant.label": display_label(result),
        "quant.recipe_id": result.get("recipe_id"), "quant.bits": _bits(steps),
        "quant.steps": "+".join(str(s.get("method")) for s in steps),
    }
    for step in steps:  # the first step that names a setting gives it (group size, symmetry, calibration)
        step_config = step.get("config") or {}
        for key, tag in (("group_size", "quant.group_size"), ("symmetric", "quant.symmetric"),
                         ("calibration_method", "quant.calibration"), ("calibration_samples",
                                                                        "quant.calibration_samples"),
                         ("granularity", "quant.granularity"), ("algorithm", "quant.algorithm")):
            if key in step_config and tag not in tags:
                tags[tag] = step_config[key]
    return {k: _text(v, MAX_TAG_LENGTH).lower() if isinstance(v, bool) else _text(v, MAX_TAG_LENGTH)
            for k, v in tags.items() if v is not None}


def _bits(steps: list[dict[str, Any]]) -> int | None:
    """The fewest bits a step of the recipe stores weights in (a config's own ``bits`` first)."""
    from engines.methods.registry import all_methods

    methods = all_methods()
    found = []
    for step in steps:
        config = step.get("config") or {}
        if isinstance(config.get("bits"), int):
            found.append(config["bits"])
        elif step.get("method") in methods:
            found.append(methods[step["method"]].bits)
    return min(found) if found else None


def bench_tags(result: dict[str, Any]) -> dict[str, str]:
    tags: dict[str, Any] = {
        "bench.runtime": result["runtime"], "bench.device": result["device"], "bench.batch_size": result["batch_size"],
        "bench.status": result["status"], "bench.flags": ",".join(result.get("flags") or []) or None,
        "bench.error": result.get("error"), "qbench.run_id": result.get("run_id"), "qbench.result_id": result.get("id"),
        "qbench.model": result.get("model"),
    }
    return {k: _text(v, MAX_TAG_LENGTH) for k, v in tags.items() if v is not None}


def figure_tags(result: dict[str, Any]) -> dict[str, str]:
    """The measured figures as tags (a model version has no metrics of its own)."""
    metrics = result_metrics(result)
    out = {}
    for key in ("speedup_vs_fp32", "latency_p50_ms", "latency_p99_ms", "throughput_per_s", "accuracy",
                "agreement_top1", "size_mb", "memory_mb"):
        if key in metrics:
            out[f"bench.{key}"] = f"{metrics[key]:.6g}"
    return out


def result_tags(result: dict[str, Any]) -> dict[str, str]:
    return {**quant_tags(result), **bench_tags(result)}


# --- a registered model version -------------------------------------------------------------------


def version_as_result(version: dict[str, Any]) -> dict[str, Any]:
    """A registered version in the result shape the app's compare view reads (from its tags)."""
    tags = version.get("tags") or {}

    def num(key: str) -> float | None:
        try:
            return float(tags[key])
        except (KeyError, ValueError):
            return None

    p50, p99 = num("bench.latency_p50_ms"), num("bench.latency_p99_ms")
    return {
        "model": tags.get("qbench.model") or version["name"], "method": tags.get("quant.method") or "?",
        "label": tags.get("quant.label") or tags.get("quant.method") or "?", "recipe_id": tags.get("quant.recipe_id"),
        "runtime": tags.get("bench.runtime") or "?", "device": tags.get("bench.device") or "?",
        "batch_size": int(num("bench.batch_size") or 1), "status": "ok",
        "run_id": f"{version['name']} v{version['version']}",
        "latency_ms": {"p50": p50, "p99": p99} if p50 is not None else None,
        "throughput_per_s": num("bench.throughput_per_s"), "accuracy": num("bench.accuracy"),
        "size_mb": num("bench.size_mb"), "memory_mb": num("bench.memory_mb"),
        "agreement": {"top1": num("bench.agreement_top1")} if num("bench.agreement_top1") is not None else None,
        "metrics": {"speedup_vs_fp32": num("bench.speedup_vs_fp32")}, "flags": [], "notes": [],
    }
