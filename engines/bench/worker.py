"""The child process that measures one variant (recipe × runtime × device) at each batch size.

Started by :mod:`engines.bench.runner` as ``python -m engines.bench.worker FD``; reads the job as JSON on
stdin and writes events as JSON lines to file descriptor FD (stdout and stderr stay free for
the libraries' own chatter, which goes to the variant's log file). Everything heavy is imported
here, never in the parent.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from engines.bench.measure import LatencyStats, MeasureSettings, measure_latency
from engines.core.config import config_from_dict
from engines.devices.strategies import isa_notes
from engines.models import ModelSpec, load_model
from engines.models.base import LoadedModel, iter_batches
from engines.models.onnx_cache import SOURCE_FORMAT
from engines.passes import Format, PassContext, get_pass
from engines.runtimes import runtime_spec
from engines.runtimes.base import Artifact, UnsupportedVariant

EVAL_BATCH = 256


class Emitter:
    def __init__(self, fd: int):
        self._out = os.fdopen(fd, "w", buffering=1, encoding="utf-8")

    def __call__(self, event: str, **data: Any) -> None:
        self._out.write(json.dumps({"event": event, **data}, default=_json_default) + "\n")
        self._out.flush()


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def current_rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _inject_fault(method: str) -> None:
    """Test aid: ``QBENCH_FAULT=crash:METHOD`` (or hang/oom) makes that variant misbehave for real."""
    fault = os.environ.get("QBENCH_FAULT", "")
    kind, _, target = fault.partition(":")
    if target != method:
        return
    if kind == "crash":
        os.abort()
    if kind == "hang":
        time.sleep(3600)
    if kind == "oom":
        hog = []
        while True:
            hog.append(np.ones(64 * 2**20 // 8))  # 64 MiB at a time, touched


def run_outputs(session, data: dict[str, np.ndarray], batch_size: int = EVAL_BATCH) -> np.ndarray:
    return np.concatenate([session.run(batch) for batch in iter_batches(data, batch_size)])


def reference_outputs(model, workdir: Path) -> np.ndarray:
    """fp32 outputs on the held-out set: torch eager for torch models, ORT for ONNX files."""
    if model.module is not None:
        import torch

        with torch.inference_mode():
            outs = [
                model.module(*(torch.from_numpy(batch[n]) for n in model.input_names)).float().numpy()
                for batch in iter_batches(model.eval_inputs, model.fixed_batch or EVAL_BATCH)
            ]
        return np.concatenate(outs)
    from engines.runtimes.ort.session import OnnxSession

    session = OnnxSession(model.onnx_source, "cpu", threads=1)
    return run_outputs(session, model.eval_inputs, model.fixed_batch or EVAL_BATCH)


def source_artifact(model: LoadedModel, workdir: Path) -> Artifact:
    """The loaded model as the first artifact of the chain: its ONNX file, or its torch module."""
    if model.module is None:
        from engines.passes.onnx_passes import export_fp32

        return Artifact(export_fp32(model, workdir), format=Format.ONNX.value)  # copies the file
    # Saved (for its size) only if no pass replaces it: see apply_passes.
    return Artifact(workdir / "model.fp32.pt", payload=model.module, format=Format.TORCH.value)


def _context(model: LoadedModel, workdir: Path, runtime: str, device: str, threads: int,
             emit: Emitter | None = None) -> PassContext:
    progress = (lambda **data: emit("phase", phase="quantize", detail=data)) if emit else (lambda **data: None)
    return PassContext(model, workdir, runtime, device, threads, progress)


def apply_passes(model: LoadedModel, planned: list[dict[str, Any]], ctx: PassContext) -> tuple[Artifact, list[str]]:
    """Run the planned chain; returns the last artifact and the names of the passes applied.

    A chain that starts with ``export-onnx`` on a model that already is an ONNX graph (the
    export cache) skips that pass."""
    artifact = source_artifact(model, ctx.workdir)
    applied: list[str] = []
    for step in planned:
        spec = get_pass(step["pass"])
        if spec.input.value != artifact.format and spec.config_class is None and spec.output.value == artifact.format:
            continue  # the conversion is already done (the model came as that format)
        config = config_from_dict(spec.config_class, step["config"]) if spec.config_class else None
        notes = artifact.notes
        artifact = spec.fn(ctx, artifact, config)
        artifact.notes = notes + [n for n in artifact.notes if n not in notes]
        applied.append(spec.name)
    if artifact.payload is not None and not artifact.path.exists():
        from engines.passes.torch_passes import save_module

        artifact = save_module(artifact.payload, ctx, "fp32")
    return artifact, applied


def open_variant(model: LoadedModel, job: dict[str, Any], ctx: PassContext) -> tuple[Artifact, Any, list[str], Any]:
    """Apply the job's passes and open the result: (artifact, session, passes applied, runtime module).

    The benchmark scripts in ``bench/`` call this too, so they measure exactly what a sweep does."""
    runtime = runtime_spec(job["runtime"])
    artifact, applied = apply_passes(model, job["plan"], ctx)
    session_module = importlib.import_module(runtime.session)
    runtime_config = config_from_dict(runtime.config_class, job.get("runtime_config"))
    session = session_module.open_session(artifact, model, ctx.device, ctx.threads, runtime_config)
    return artifact, session, applied, session_module


def open_recipe(model: LoadedModel, recipe: str, runtime: str, device: str, threads: int, workdir: Path,
                runtime_config: dict[str, Any] | None = None) -> tuple[Artifact, Any]:
    """Plan, apply and open one recipe in this process: (artifact, session). For ``bench/`` scripts,
    which time several variants side by side in one process; raises UnsupportedVariant."""
    from engines import catalog

    source = Format.ONNX if model.module is None else Format.TORCH
    planned = catalog.plan_variant(recipe, runtime, device, source)
    if isinstance(planned, str):
        raise UnsupportedVariant(planned)
    job = {"runtime": runtime, "plan": [p.to_dict() for p in planned.passes], "runtime_config": runtime_config}
    artifact, session, _, _ = open_variant(model, job, _context(model, workdir, runtime, device, threads))
    return artifact, session


def run_job(job: dict[str, Any], emit: Emitter) -> None:
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
    _inject_fault(job["method"])
    model = load_model(spec)
    reference = reference_outputs(model, workdir)
    session_module = importlib.import_module(runtime_spec(runtime).session)
    emit("runtime_info", info=session_module.runtime_info())

    phase("quantize")
    ctx = _context(model, workdir, runtime, device, threads, emit)
    t0 = time.perf_counter()
    artifact, applied = apply_passes(model, job["plan"], ctx)
    quantize_s = time.perf_counter() - t0
    emit("passes", passes=applied)

    phase("cold-start")
    rss_before = current_rss_mb()
    t0 = time.perf_counter()
    runtime_config = config_from_dict(runtime_spec(runtime).config_class, job.get("runtime_config"))
    try:
        session = session_module.open_session(artifact, model, device, threads, runtime_config)
    except UnsupportedVariant as exc:
        # --- a runtime that cannot run here (Core ML on Linux): the artifact still has figures ---
        for batch_size in batch_sizes:
            emit("result", batch_size=batch_size, status="unsupported", error=str(exc), quantize_s=quantize_s,
                 size_mb=artifact.size_bytes / 2**20, metrics=dict(artifact.metrics), notes=artifact.notes,
                 artifact=str(artifact.path))
        return
    session.run(model.example_inputs(batch_sizes[0]))
    load_s = time.perf_counter() - t0
    if artifact.payload is not None:  # quantized in memory at load time: part of its cold start
        load_s += quantize_s
    rss_delta = current_rss_mb() - rss_before

    phase("accuracy")
    outputs = run_outputs(session, model.eval_inputs, model.fixed_batch or EVAL_BATCH)
    from engines.bench.evaluate import evaluate, extra_measurements

    quality = evaluate(model, outputs, reference)
    size_mb = artifact.size_bytes / 2**20

    for batch_size in batch_sizes:
        fn = session.bind(model.example_inputs(batch_size))
        stats: LatencyStats = measure_latency(
            fn, settings,
            on_phase=lambda name, bs=batch_size: phase(name, batch_size=bs),
            on_samples=lambda ms: emit("latency", ms=ms),
        )
        warnings = stats.noise_warnings()
        if model.task == "causal-lm":
            phase("generate", batch_size=batch_size)
        # task-specific figures (causal LMs: time to first token, prefill/decode tokens/s)
        extra = extra_measurements(model, session, batch_size, stats.p50)
        emit(
            "result",
            batch_size=batch_size,
            status="ok",
            latency_ms=stats.to_dict(),
            throughput_per_s=batch_size * 1000.0 / stats.mean if stats.mean > 0 else None,
            load_s=load_s,
            quantize_s=quantize_s,
            peak_rss_mb=peak_rss_mb(),
            size_mb=size_mb,
            accuracy=quality["accuracy"],
            agreement=quality["agreement"],
            metrics={**artifact.metrics, **quality["metrics"], **extra, **artifact.facts.get("metrics", {}),
                     "rss_delta_mb": rss_delta,
                     "device_memory_mb": session.device_memory_mb()},
            notes=artifact.notes + isa_notes(device, [p["config"] for p in job["plan"] if p["config"]]) + warnings,
            artifact=str(artifact.path),
        )


def main() -> int:
    emit = Emitter(int(sys.argv[1]))
    job = json.load(sys.stdin)
    try:
        run_job(job, emit)
    except UnsupportedVariant as exc:
        emit("unsupported", reason=str(exc))
        return 0
    except MemoryError:
        emit("error", error="out of memory (MemoryError) while measuring this variant")
        return 1
    except Exception as exc:  # one broken variant must end as a readable status, not a crash
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        emit("error", error=f"{type(exc).__name__}: {exc}{where}".strip())
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
