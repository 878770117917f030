"""The child process that measures one variant (method × runtime × device) at each batch size.

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

from engines import catalog
from engines.bench.measure import LatencyStats, MeasureSettings, measure_latency
from engines.methods import configs
from engines.models import ModelSpec, load_model
from engines.models.base import iter_batches
from engines.runtimes.base import UnsupportedVariant

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
    from engines.runtimes import onnx_runtime

    session = onnx_runtime.OnnxSession(model.onnx_source, "cpu", threads=1)
    return run_outputs(session, model.eval_inputs, model.fixed_batch or EVAL_BATCH)


def run_job(job: dict[str, Any], emit: Emitter) -> None:
    method, runtime, device = job["method"], job["runtime"], job["device"]
    batch_sizes: list[int] = job["batch_sizes"]
    threads: int = job["threads"]
    workdir = Path(job["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    settings = MeasureSettings(**job["measure"])
    # The loader learns which runtime will run the model: ONNX Runtime variants of a torch model
    # can then use a cached fp32 ONNX export instead of importing torch (engines.models.onnx_cache).
    spec = ModelSpec(**{**job["model"], "extra": {**job["model"].get("extra", {}), "runtime": runtime}})
    config = configs.config_from_dict(catalog.METHODS[method].config_class, job.get("config"))

    def phase(name: str, **extra: Any) -> None:
        emit("phase", phase=name, **extra)

    phase("load")
    _inject_fault(method)
    model = load_model(spec)
    reference = reference_outputs(model, workdir)
    rt = importlib.import_module(catalog.RUNTIMES[runtime].module)
    if hasattr(rt, "runtime_info"):
        emit("runtime_info", info=rt.runtime_info())

    phase("quantize")
    t0 = time.perf_counter()
    artifact = rt.quantize(model, method, config, workdir)
    quantize_s = time.perf_counter() - t0

    phase("cold-start")
    rss_before = current_rss_mb()
    t0 = time.perf_counter()
    session = rt.open_session(artifact, model, device, threads)
    session.run(model.example_inputs(batch_sizes[0]))
    load_s = time.perf_counter() - t0
    if artifact.payload is not None:  # quantized at load time: that is part of its cold start
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
            metrics={**quality["metrics"], **extra, "rss_delta_mb": rss_delta,
                     "device_memory_mb": session.device_memory_mb()},
            notes=artifact.notes + warnings,
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
