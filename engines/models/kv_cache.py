"""Causal LMs with a KV cache, as people run them (child process only: imports torch).

A causal-LM module that can generate with a cache has a method
``decode_step(input_ids, past=None) -> (logits, present)``: ``past`` and ``present`` hold one
``(keys, values)`` pair per layer, each ``(batch, kv heads, positions, head width)``. ``tiny-lm``
writes its cache out by hand; Hugging Face decoders use their own ``DynamicCache``
(:mod:`engines.models.hf`). One call with the prompt and no past is the prefill; each following
call feeds one token and the cache.

For ONNX Runtime the step is exported once more as its own graph with the cache as inputs and
outputs (``input_ids, past_0_k, past_0_v, …`` → ``logits, present_0_k, present_0_v, …``), batch and
positions dynamic; a prompt runs with empty (zero-length) past tensors, so one graph serves the
prefill and every decoding step, as Optimum's decoder exports do. The fp32 export cache keeps it
beside the main graph (:mod:`engines.models.onnx_cache`), and each ONNX Runtime variant applies
its recipe's passes to it too (:func:`engines.bench.decode.kv_artifact`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

KV_GRAPH = "decoder_with_past.onnx"


def has_decode_step(module: Any) -> bool:
    module = getattr(module, "_orig_mod", module)  # a torch.compile'd module wraps the original
    return callable(getattr(module, "decode_step", None))


def cache_layout(module: Any) -> dict[str, int] | None:
    """``{"layers", "heads", "head_dim"}`` from one prefill of one token, or None when the module
    has no ``decode_step`` or its cache is not one (keys, values) pair of 4-d tensors per layer
    (a sliding-window or state-space model)."""
    if not has_decode_step(module):
        return None
    try:
        with torch.inference_mode():
            _, present = module.decode_step(torch.zeros((1, 1), dtype=torch.long))
        keys = [kv[0] for kv in present]
        if not keys or any(k.dim() != 4 or k.shape != keys[0].shape for k in keys):
            return None
    except Exception:  # noqa: BLE001 - an architecture whose cache qbench does not drive
        return None
    return {"layers": len(keys), "heads": int(keys[0].shape[1]), "head_dim": int(keys[0].shape[3])}


def past_names(layers: int) -> list[str]:
    return [f"past_{i}_{kv}" for i in range(layers) for kv in ("k", "v")]


def present_names(layers: int) -> list[str]:
    return [f"present_{i}_{kv}" for i in range(layers) for kv in ("k", "v")]


class FlatDecodeStep(torch.nn.Module):
    """``decode_step`` with flat tensors, for the exporter: (input_ids, *past) → (logits, *present)."""

    def __init__(self, module: Any, layers: int):
        super().__init__()
        self.inner = module
        self.layers = layers

    def forward(self, input_ids, *past):
        pairs = [(past[2 * i], past[2 * i + 1]) for i in range(self.layers)]
        logits, present = self.inner.decode_step(input_ids, pairs)
        return (logits, *[t for kv in present for t in kv])


def export_kv_onnx(module: Any, layout: dict[str, int], target: Path, opset: int = 17) -> Path:
    """The fp32 decode-step graph (TorchScript exporter, like the main graph), traced with a
    cache of 3 positions; batch, new positions and cached positions are dynamic."""
    layers = int(layout["layers"])
    ids = torch.zeros((2, 2), dtype=torch.long)
    past = [torch.zeros((2, layout["heads"], 3, layout["head_dim"])) for _ in range(2 * layers)]
    axes: dict[str, dict[int, str]] = {"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
    axes.update({n: {0: "batch", 2: "past"} for n in past_names(layers)})
    axes.update({n: {0: "batch", 2: "total"} for n in present_names(layers)})
    with torch.no_grad():
        torch.onnx.export(
            FlatDecodeStep(module, layers).eval(), (ids, *past), str(target),
            input_names=["input_ids", *past_names(layers)], output_names=["logits", *present_names(layers)],
            dynamic_axes=axes, opset_version=opset, dynamo=False,
        )
    return target
