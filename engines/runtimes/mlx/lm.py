"""Hugging Face causal LMs in MLX through ``mlx-lm``, and their KV-cache decoder.

The MLX model is mlx-lm's own class for the config's ``model_type`` (its ``_get_classes``, the
lookup ``mlx_lm.load`` uses), filled with the weights of the torch module qbench measures — not
re-read from the folder, which may hold bfloat16 or pickled weights — through the model's
``sanitize`` (drops rotary tables, a tied ``lm_head``…). Nothing is downloaded: no mlx-lm loader
that resolves Hub names is called.

Heavy (imports mlx, mlx-lm, torch); only the MLX passes and session import it, in the child.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
import numpy as np
from mlx import nn

from engines.runtimes.base import UnsupportedVariant


def matches(module: Any) -> bool:
    """The ``causal-lm`` wrapper of engines.models.hf around a transformers model."""
    return type(module).__name__.startswith("CausalLMLogits") and hasattr(getattr(module, "model", None), "config")


def _mlx_lm_config(config: dict[str, Any]) -> dict[str, Any]:
    """transformers 5 nests rope settings in ``rope_parameters``; mlx-lm 0.32 reads ``rope_theta``
    and ``rope_scaling`` (its defaults would silently give Llama 3's 500000 base as 10000)."""
    config = dict(config)
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" in rope:  # a per-layer-type mapping is left to the model
        config.setdefault("rope_theta", rope["rope_theta"])
        if rope.get("rope_type", "default") != "default" and not config.get("rope_scaling"):
            config["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
    return config


def convert(module: Any) -> tuple[nn.Module, str]:
    try:
        from mlx_lm.utils import _get_classes
    except ImportError:
        raise UnsupportedVariant("Hugging Face causal LMs on MLX need mlx-lm (`uv sync --extra mlx`)") from None
    torch_model = module.model
    config = _mlx_lm_config(torch_model.config.to_dict())
    model_type = config.get("model_type")
    try:
        model_class, args_class = _get_classes(config)
    except ValueError:
        raise UnsupportedVariant(f"mlx-lm has no model for model_type {model_type!r}") from None
    model = model_class(args_class.from_dict(config))
    weights = {name: mx.array(t.detach().cpu().float().numpy() if t.is_floating_point() else t.cpu().numpy())
               for name, t in torch_model.state_dict().items()}
    if hasattr(model, "sanitize"):
        weights = model.sanitize(weights)
    try:
        model.load_weights(list(weights.items()), strict=True)
    except ValueError as exc:  # a checkpoint variant mlx-lm's class does not describe
        raise UnsupportedVariant(f"mlx-lm's {model_type} model does not take this checkpoint's weights: "
                                 f"{str(exc)[:200]}") from None
    return model, f"mlx-lm {model_type}"


def is_mlx_lm(module: Any) -> bool:
    return type(module).__module__.startswith("mlx_lm.")


class MlxLmKvDecoder:
    """Greedy generation with mlx-lm's prompt cache (``make_prompt_cache``: the model's own cache
    kinds, e.g. rotating caches for sliding-window layers)."""

    def __init__(self, model: nn.Module):
        from mlx_lm.models.cache import make_prompt_cache

        self._model, self._make, self._cache = model, make_prompt_cache, None

    def _call(self, ids: np.ndarray) -> np.ndarray:
        logits = self._model(mx.array(np.ascontiguousarray(ids).astype(np.int32)), cache=self._cache)
        return np.array(logits[:, -1].astype(mx.float32))  # np.array evaluates the lazy graph, cache included

    def start(self, prompt: np.ndarray) -> np.ndarray:
        self._cache = self._make(self._model)
        return self._call(prompt)

    def step(self, ids: np.ndarray) -> np.ndarray:
        return self._call(ids)

    def cache_bytes(self) -> int:
        """What the cache holds in memory: mlx-lm's KVCache grows its buffers 256 positions at a
        time, so a short generation holds more than its positions' keys and values."""
        return sum(int(getattr(c, "nbytes", 0)) for c in self._cache or ())


def kv_decoder(module: Any, family: str | None = None) -> tuple[MlxLmKvDecoder | None, str | None]:
    if is_mlx_lm(module):
        return MlxLmKvDecoder(module), None
    return None, f"the MLX {family or type(module).__name__} model has no KV-cache path in qbench (mlx-lm models do)"
