"""The child process that measures one variant (recipe × runtime × device) at each batch size.

Started by :mod:`engines.bench.child` (forked from a server with the heavy modules loaded, or as
``python -m engines.bench.worker FD``), it talks JSON lines over one socket: the first line it
reads is the job; it loads the model, applies the passes, opens the session, evaluates it and
says ``ready``; then it waits, loaded, for ``measure`` commands (one timing round of one batch
size each, answered by a ``round`` event) until ``exit``. Keeping it alive between rounds is what
lets a sweep interleave short timing blocks across its variants. stdout and stderr stay free for
the libraries' own chatter, which goes to the variant's log file. Everything heavy is imported
here, never in the parent.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engines.bench.build import (  # noqa: F401 - re-exported: tests, bench scripts and export use them
    EVAL_BATCH,
    _context,
    apply_passes,
    reference_outputs,
    run_outputs,
    source_artifact,
)
from engines.analysis.placement import flag as placement_flag
from engines.bench.conditions import NeighbourCpu, PeakRss, process_peak_mb, release_memory, rss_mb
from engines.bench.measure import LatencyStats, MeasureSettings, measure_latency
from engines.core.config import config_from_dict
from engines.core.errors import ModelLoadError
from engines.devices.energy import idle_watts, open_meter
from engines.devices.energy import window as energy_window
from engines.devices.strategies import isa_notes
from engines.methods.recipe import Recipe, parse_recipe
from engines.models import ModelSpec, load_model
from engines.models.base import LoadedModel
from engines.models.onnx_cache import SOURCE_FORMAT
from engines.passes import Format, PassContext
from engines.runtimes import runtime_spec
from engines.runtimes.base import Artifact, UnsupportedVariant
from engines.test_hooks import inject_worker_fault


class Channel:
    """The child's end of its socket: JSON lines both ways. ``emit`` sends an event; ``recv``
    returns the next command, or None when the parent has gone."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._in = sock.makefile("rb")
        self._out = sock.makefile("wb", buffering=0)

    def __call__(self, event: str, **data: Any) -> None:
        self._out.write(json.dumps({"event": event, **data}, default=_json_default).encode() + b"\n")

    emit = __call__

    def recv(self) -> dict[str, Any] | None:
        line = self._in.readline()
        return json.loads(line) if line.strip() else None


Emitter = Channel  # the name passes and bench scripts know


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


peak_rss_mb = process_peak_mb
current_rss_mb = rss_mb




def add_kv_graph(model: LoadedModel, planned: list[dict[str, Any]], ctx: PassContext, artifact: Artifact) -> None:
    """Causal LMs headed for ONNX Runtime: the decode-step graph with past keys / values, through
    the same passes (engines.bench.decode), named in the artifact's facts for the session."""
    if model.task == "causal-lm" and artifact.format == Format.ONNX.value:
        from engines.bench.decode import kv_artifact

        kv_path, artifact.facts["kv_reason"] = kv_artifact(model, planned, ctx)
        artifact.facts["kv_graph"] = str(kv_path) if kv_path else None


def open_recipe(model: LoadedModel, recipe: Recipe | str, runtime: str, device: str, threads: int, workdir: Path,
                runtime_config: dict[str, Any] | None = None) -> tuple[Artifact, Any]:
    """Plan, apply and open one recipe in this process: (artifact, session). For ``bench/`` scripts,
    which time several variants side by side in one process (their text is parsed here, where it
    enters); raises UnsupportedVariant."""
    from engines import catalog

    recipe = recipe if isinstance(recipe, Recipe) else parse_recipe(recipe)

    source = Format.ONNX if model.module is None else Format.TORCH
    planned = catalog.plan_variant(recipe, runtime, device, source)
    if isinstance(planned, str):
        raise UnsupportedVariant(planned)
    ctx = _context(model, workdir, runtime, device, threads, runtime_config=runtime_config)
    artifact, _ = apply_passes(model, [p.to_dict() for p in planned.passes], ctx)
    add_kv_graph(model, [p.to_dict() for p in planned.passes], ctx, artifact)
    spec = runtime_spec(runtime)
    session = importlib.import_module(spec.session).open_session(
        artifact, model, device, threads, config_from_dict(spec.config_class, runtime_config))
    return artifact, session


@dataclass
class Prepared:
    """A variant loaded, quantized, opened and evaluated: what each timing round needs."""

    model: LoadedModel
    session: Any
    settings: MeasureSettings
    base_mb: float  # RSS before the session opened, less the passes' in-memory module
    memory: dict[str, Any] = field(default_factory=dict)
    warm: set[int] = field(default_factory=set)  # batch sizes warmed up once already
    extras: dict[int, dict[str, Any]] = field(default_factory=dict)
    device: str = "cpu"
    energy: dict[str, Any] | None = None  # {"meter", "idle_w", "reason"}: opened at the first round


def thread_pool_info(runtime: str, threads: int, rule: str | None = None) -> dict[str, Any]:
    """How the intra-op pool was set up, stored with each result (engines.bench.child sets the
    environment: OpenMP threads sleep at a barrier instead of spinning, so a busy neighbour on a
    shared machine does not stall the whole pool)."""
    return {"threads": threads, "threads_rule": rule or "given",
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default (active)"),
            "launcher": os.environ.get("QBENCH_LAUNCHER", "spawn")}


def _load(spec: ModelSpec, workdir: Path) -> tuple[LoadedModel, np.ndarray]:
    """The model and its fp32 reference outputs; any failure is the model's, not the variant's."""
    try:
        model = load_model(spec)
        for key in ("prompt_tokens", "new_tokens"):  # the sweep's generation lengths (causal LMs)
            if spec.extra.get(key):
                model.details[key] = int(spec.extra[key])
        return model, reference_outputs(model, workdir)
    except (UnsupportedVariant, MemoryError, ModelLoadError):
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the loader or the forward raised
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        traceback.print_exc()
        raise ModelLoadError(f"{spec.name} cannot be loaded and run: {type(exc).__name__}: {exc}{where}") from None


def prepare(job: dict[str, Any], emit: Channel) -> Prepared:
    """Load → quantize → open → evaluate; emits ``ready`` with everything but the timings."""
    runtime, device = job["runtime"], job["device"]
    batch_sizes: list[int] = job["batch_sizes"]
    threads: int = job["threads"]
    workdir = Path(job["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    settings = MeasureSettings(**job["measure"])
    # A chain that starts with an ONNX export may take the model from the fp32 export cache and
    # skip importing torch (engines.models.onnx_cache).
    extra = dict(job["model"].get("extra", {}))
    if job["plan"] and job["plan"][0]["pass"] == "export-onnx":
        extra[SOURCE_FORMAT] = "onnx"
    spec = ModelSpec(**{**job["model"], "extra": extra})

    def phase(name: str, **data: Any) -> None:
        emit("phase", phase=name, **data)

    phase("load")
    inject_worker_fault(job["method"])  # a test hook: inert unless QBENCH_FAULT names this method
    # The harness's own memory (interpreter, numpy, the runtime's modules) is the baseline every
    # phase is measured from: it is the same for every variant and none of the variant's.
    session_module = importlib.import_module(runtime_spec(runtime).session)
    release_memory()
    baseline = rss_mb()
    emit("baseline", rss_mb=baseline)  # the memory limit counts what the variant adds to it
    model, reference = _load(spec, workdir)
    load_mb = rss_mb() - baseline
    info = {**session_module.runtime_info(),
            "thread_pool": thread_pool_info(runtime, threads, job.get("threads_rule"))}
    emit("runtime_info", info=info)

    phase("quantize")
    ctx = _context(model, workdir, runtime, device, threads, emit, tuple(batch_sizes), job.get("runtime_config"))
    t0 = time.perf_counter()
    artifact, applied = apply_passes(model, job["plan"], ctx)
    add_kv_graph(model, job["plan"], ctx, artifact)
    quantize_s = time.perf_counter() - t0
    emit("passes", passes=applied)

    # What the variant does not hold stays out of its working set: the fp32 module a quantized
    # copy was made from (the reference outputs are already computed).
    if model.module is not None and artifact.payload is not None and artifact.payload is not model.module:
        model.module = None
    ctx = None
    release_memory()

    phase("cold-start")
    rss_before = rss_mb()
    t0 = time.perf_counter()
    runtime_config = config_from_dict(runtime_spec(runtime).config_class, job.get("runtime_config"))
    try:
        session = session_module.open_session(artifact, model, device, threads, runtime_config)
    except UnsupportedVariant as exc:
        # A runtime that cannot run here (Core ML prediction off macOS): the artifact still has
        # figures worth keeping with the refusal — its size, quantize time, op counts.
        raise RefusedWithFigures(str(exc), {
            "quantize_s": quantize_s, "size_mb": artifact.size_bytes / 2**20, "notes": artifact.notes,
            "metrics": {**artifact.metrics, **artifact.facts.get("metrics", {})}, "artifact": str(artifact.path),
        }) from None
    session.run(model.example_inputs(batch_sizes[0]))
    load_s = time.perf_counter() - t0
    if artifact.payload is not None:  # quantized in memory at load time: part of its cold start
        load_s += quantize_s
    open_mb = rss_mb() - rss_before

    phase("accuracy")
    outputs = run_outputs(session, model.eval_inputs, model.fixed_batch or EVAL_BATCH)
    from engines.bench.evaluate import evaluate

    quality = evaluate(model, outputs, reference)
    size_mb = artifact.size_bytes / 2**20
    del outputs, reference
    release_memory()
    # The variant's memory is what it adds to the process from the moment its session opens
    # (weights the runtime loads, arenas, compiled code, the timing loop's working set), plus
    # for a module built in memory by the passes its tensors, which exist before the session
    # opens (their saved size on disk).
    payload_mb = size_mb if artifact.payload is not None else 0.0
    memory = {"baseline_mb": baseline, "load_mb": load_mb, "open_mb": open_mb, "payload_mb": payload_mb,
              "session_base_mb": rss_before}
    flags = ["simulated"] if artifact.facts.get("simulated") else []
    flags += [f] if (f := placement_flag(artifact.metrics.get("placement"), device)) else []  # off its device?
    notes = artifact.notes + isa_notes(device, [p["config"] for p in job["plan"] if p["config"]])
    metrics = {**artifact.metrics, **quality["metrics"], **artifact.facts.get("metrics", {})}
    emit("ready", load_s=load_s, quantize_s=quantize_s, size_mb=size_mb, accuracy=quality["accuracy"],
         agreement=quality["agreement"], metrics=metrics, notes=notes,
         artifact=str(artifact.path), memory=memory, flags=flags)
    return Prepared(model, session, settings, rss_before - payload_mb, memory, device=device)


LIVE_SAMPLES = 240  # latencies per live report (the app's sparkline keeps fewer)


class RefusedWithFigures(UnsupportedVariant):
    """The runtime refused the artifact after the passes made it: the refusal carries its figures."""

    def __init__(self, reason: str, figures: dict[str, Any]):
        super().__init__(reason)
        self.figures = figures


def measure_round(state: Prepared, cmd: dict[str, Any], emit: Channel) -> dict[str, Any]:
    """One timing round of one batch size, with its memory peak and the neighbours' CPU use."""
    batch_size, index = cmd["batch_size"], cmd["round"]
    settings = state.settings.for_round(first=batch_size not in state.warm)
    state.warm.add(batch_size)
    fn = state.session.bind(state.model.example_inputs(batch_size))
    meter = _energy_meter(state)
    mark: list[Any] = [None]

    def on_phase(name: str) -> None:
        emit("phase", phase=name, batch_size=batch_size, detail={"round": index + 1})
        if name == "measure" and meter is not None:  # the timed calls only, not the warm-up
            mark[0] = meter.start()

    peak, neighbours = PeakRss(), NeighbourCpu()
    start_mb = peak.start()
    neighbours.start()
    state.session.reset_device_peak()
    t0 = time.perf_counter()
    stats: LatencyStats = measure_latency(
        fn, settings, on_phase=on_phase,
        # Only the latest samples travel: the live trace shows a few hundred, and a 0.05 ms model
        # makes thousands per report, which the app would decode for nothing.
        # The device memory rides along where the RSS does not show it (Metal): the watchdog adds it.
        on_samples=lambda ms: emit("latency", ms=ms[-LIVE_SAMPLES:], device_mb=state.session.live_device_mb()),
    )
    wall = time.perf_counter() - t0
    device_mb = state.session.device_memory_mb()  # the timed calls' peak (reset just before them)
    energy = energy_window(meter, state.energy["idle_w"], state.energy["reason"], mark[0], stats.samples)
    other = neighbours.stop()
    peak_mb = peak.stop()
    out: dict[str, Any] = {
        "batch_size": batch_size, "round": index, "latency": stats.to_dict(), "other_cpu": round(other, 3),
        "wall_s": wall, "timing_peak_mb": peak_mb, "timing_growth_mb": max(0.0, peak_mb - start_mb),
        # the session (weights, arenas, compiled code, its first call) + a module the passes built
        # in memory + what this batch size's loop adds: not the accuracy pass's 256-row batches,
        # whose arena growth a runtime keeps but this batch size does not need
        "memory_mb": state.memory["open_mb"] + state.memory["payload_mb"] + max(0.0, peak_mb - start_mb),
        "memory_method": peak.method,
        "warnings": stats.noise_warnings(), "energy": energy, "device_memory_mb": device_mb,
    }
    if batch_size not in state.extras:
        # task-specific figures (causal LMs: time to first token, prefill/decode tokens/s), once
        from engines.bench.evaluate import extra_measurements

        if state.model.task == "causal-lm":
            emit("phase", phase="generate", batch_size=batch_size)
        gen_mark = meter.start() if meter is not None and state.model.task == "causal-lm" else None
        state.extras[batch_size] = extra_measurements(state.model, state.session, batch_size, stats.p50)
        if gen_mark is not None and "joules" in energy:  # power while generating, for joules per token
            gen = energy_window(meter, None, None, gen_mark, 0)
            if "joules" in gen:
                energy["generation"] = {"joules": gen["joules"], "wall_s": gen["wall_s"]}
        out["extra"] = state.extras[batch_size]
        out["process_peak_mb"] = process_peak_mb()
    return out


def _energy_meter(state: Prepared) -> Any:
    """The child's energy meter (engines.devices.energy), opened and measured at rest on first use."""
    if state.energy is None:
        meter, reason = open_meter(state.device)
        idle = None
        if meter is not None:
            try:
                idle = idle_watts(meter)
            except Exception as exc:  # noqa: BLE001 - a meter that fails is a reason, never a failed result
                meter.close()
                meter, reason = None, f"{meter.source}: {type(exc).__name__}: {exc}"
        state.energy = {"meter": meter, "idle_w": idle, "reason": reason}
    return state.energy["meter"]


def serve(channel: Channel) -> int:
    """The child's life: the job, ``ready``, then rounds until ``exit`` (or the parent goes)."""
    job = channel.recv()
    if job is None:
        return 0
    os.environ.update(job.get("env") or {})
    state: Prepared | None = None
    try:
        state = prepare(job, channel)
        while (cmd := channel.recv()) is not None and cmd.get("cmd") == "measure":
            channel.emit("round", **measure_round(state, cmd, channel))
    except UnsupportedVariant as exc:
        channel.emit("unsupported", reason=str(exc), **getattr(exc, "figures", {}))
    except ModelLoadError as exc:
        channel.emit("model_error", error=str(exc))
        return 1
    except MemoryError:
        channel.emit("error", error="out of memory (MemoryError) while measuring this variant")
        return 1
    except Exception as exc:  # noqa: BLE001 - one broken variant must end as a readable status, not a crash
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        channel.emit("error", error=f"{type(exc).__name__}: {exc}{where}".strip())
        traceback.print_exc()
        return 1
    finally:
        if state is not None and state.energy and state.energy["meter"] is not None:
            state.energy["meter"].close()  # a macmon child must not outlive this worker
    return 0


def main() -> int:
    """Spawned as ``python -m engines.bench.worker FD``: FD is this child's end of the socket."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    return serve(Channel(sock))


if __name__ == "__main__":
    sys.exit(main())
