"""Building a variant: the model's fp32 reference outputs, and the planned chain of passes applied
to the loaded model. Shared by the child worker (:mod:`engines.bench.worker`), the decode-step
graph (:mod:`engines.bench.decode`), evaluation and export, so that none of them imports another to
reach it. Heavy: imported in the child process (and by export), never by the sweep's parent.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engines.core.config import config_from_dict
from engines.models.base import EVAL_BATCH, LoadedModel, iter_batches, run_outputs
from engines.passes import Format, PassContext, get_pass
from engines.runtimes import runtime_spec
from engines.runtimes.base import Artifact

Emitter = Callable[..., None]  # the worker's channel: emit(event, **data)


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
        from engines.models.onnx_export import export_fp32

        return Artifact(export_fp32(model, workdir), format=Format.ONNX.value)  # copies the file
    # Saved (for its size) only if no pass replaces it: see apply_passes.
    return Artifact(workdir / "model.fp32.pt", payload=model.module, format=Format.TORCH.value)


def _context(model: LoadedModel, workdir: Path, runtime: str, device: str, threads: int,
             emit: Emitter | None = None, batch_sizes: tuple[int, ...] = (1,),
             runtime_config: dict[str, Any] | None = None) -> PassContext:
    """The passes' context; ``runtime_config`` is the variant's (plain, as the job carries it)."""
    progress = (lambda **data: emit("phase", phase="quantize", detail=data)) if emit else (lambda **data: None)
    config = config_from_dict(runtime_spec(runtime).config_class, runtime_config)
    return PassContext(model, workdir, runtime, device, threads, progress, tuple(batch_sizes), config)


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


