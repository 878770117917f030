"""MLX sessions: run an MLX module on the CPU build or on Metal (``gpu``), timed to completion.

MLX is lazy: a call only builds a graph, so the timed callable ends with ``mx.eval`` (the
equivalent of a CUDA/MPS synchronisation). Memory comes from MLX's own counters. Causal LMs
converted through mlx-lm also decode with its KV cache (``kv_decoder``, engines.bench.decode).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engines.models.base import LoadedModel
from engines.runtimes.base import Artifact, Session, UnsupportedVariant
from engines.runtimes.mlx import MlxRuntimeConfig


class MlxSession(Session):
    def __init__(self, module: Any, model: LoadedModel, half_inputs: bool, compiled: bool):
        import mlx.core as mx

        self._mx = mx
        self._module = module
        self._fn = mx.compile(module) if compiled else module
        self._names = model.input_names
        self._half = half_inputs

    def _arrays(self, inputs: dict[str, np.ndarray]) -> list[Any]:
        mx = self._mx
        out = []
        for name in self._names:
            value = np.ascontiguousarray(inputs[name])
            if np.issubdtype(value.dtype, np.integer):
                out.append(mx.array(value.astype(np.int32)))  # token ids: MLX indexes with int32
            else:
                out.append(mx.array(value, dtype=mx.float16 if self._half else mx.float32))
        return out

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        out = self._fn(*self._arrays(inputs))
        return np.array(out.astype(self._mx.float32))

    def bind(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        args, fn, evaluate = self._arrays(inputs), self._fn, self._mx.eval
        evaluate(*args)

        def call():
            out = fn(*args)
            evaluate(out)  # lazy graph: time it to completion
            return out

        return call

    def kv_decoder(self) -> tuple[Any, str | None]:
        """Hugging Face causal LMs (mlx-lm models): greedy decoding with mlx-lm's KV cache."""
        from engines.runtimes.mlx.lm import kv_decoder

        return kv_decoder(self._module)

    def reset_device_peak(self) -> None:
        self._mx.reset_peak_memory()  # the peak is the timed calls', not the accuracy pass's

    def device_memory_mb(self) -> float | None:
        return self._mx.get_peak_memory() / 2**20


def _recommended_working_set() -> int | None:
    import mlx.core as mx

    try:
        return int(mx.device_info().get("max_recommended_working_set_size", 0)) or None
    except (AttributeError, RuntimeError):
        return None


def open_session(artifact: Artifact, model: LoadedModel, device: str, threads: int,
                 config: MlxRuntimeConfig | None = None) -> Session:
    import mlx.core as mx

    config = config or MlxRuntimeConfig()
    if device == "gpu":
        if not mx.is_available(mx.gpu):
            raise UnsupportedVariant("MLX on the GPU needs Metal (macOS on Apple Silicon); this MLX build has none")
        mx.set_default_device(mx.gpu)
        from engines.devices.memory import device_memory_metrics, working_set_warning

        limit = _recommended_working_set()
        if warning := working_set_warning(device, artifact.size_bytes, limit):
            artifact.notes.append(warning)
        artifact.facts.setdefault("metrics", {}).update(device_memory_metrics(device, limit))
    else:
        mx.set_default_device(mx.cpu)
    if artifact.payload is None:
        raise UnsupportedVariant("the MLX runtime opens MLX modules converted in this process")
    mx.reset_peak_memory()
    if config.compile:
        artifact.notes.append("forward pass traced with mx.compile")
    return MlxSession(artifact.payload, model, bool(artifact.facts.get("half_inputs")), config.compile)


def runtime_info() -> dict[str, Any]:
    import mlx.core as mx

    return {"mlx": mx.__version__, "default_device": str(mx.default_device()), "metal": mx.is_available(mx.gpu)}
