"""Generation timings of causal LMs with a KV cache, and without one for comparison.

A runtime's session offers ``kv_decoder()`` → ``(decoder, None)`` or ``(None, reason)``. A
decoder keeps its cache between calls: ``start(prompt_ids)`` runs the prefill and returns the last
position's logits (batch, vocab); ``step(token_ids)`` feeds one token per row and returns the
next logits; ``cache_bytes()`` is the cache's size now. torch drives the model's own cache
(``decode_step``, :mod:`engines.models.kv_cache`); ONNX Runtime runs the decode-step graph with
past keys / values, quantized by the same passes as the variant (:func:`kv_artifact`).

The figures (``metrics`` of the result): ``ttft_ms`` and ``decode_tokens_per_s`` are the cached
path's where it ran — what people deploy — and ``decode_kv_cache`` says which was measured
(1: with the cache, 0: each token recomputes the whole sequence). Both paths' figures are kept
side by side: ``kv_ttft_ms``, ``kv_decode_tokens_per_s``, ``kv_cache_mb`` (the cache at the end of
generation) and ``nocache_ttft_ms``, ``nocache_decode_tokens_per_s``; ``kv_tokens_match`` is 1
when greedy decoding with the cache chose the same tokens as without it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

# Passes that carry over to the decode-step graph unchanged (they transform any graph). Static
# int8 would need calibration data for the cache inputs, QAT and mixed a training / sensitivity
# run of their own: those variants report the cached decode as not measured, with this reason.
KV_PASSES = ("export-onnx", "ort-float16", "ort-matmul-nbits-8", "ort-matmul-nbits-4", "ort-dynamic-int8")


def generate_cached(decoder: Any, prompt: np.ndarray, new_tokens: int) -> tuple[float, float, np.ndarray, int]:
    """Greedy decoding with the cache: (seconds to the first new token, seconds for the rest, the
    generated tokens (batch, new_tokens), the cache's bytes at the end)."""
    clock = time.perf_counter
    t0 = clock()
    logits = decoder.start(prompt)
    token = logits.argmax(axis=-1)[:, None]
    t1 = clock()
    tokens = [token]
    for _ in range(new_tokens - 1):
        logits = decoder.step(token)
        token = logits.argmax(axis=-1)[:, None]
        tokens.append(token)
    t2 = clock()
    return t1 - t0, t2 - t1, np.concatenate(tokens, axis=1), decoder.cache_bytes()


def generate_uncached(session: Any, prompt: np.ndarray, new_tokens: int) -> tuple[float, float, np.ndarray]:
    """Greedy decoding that feeds the whole sequence each time (no cache)."""
    clock = time.perf_counter
    t0 = clock()
    context = prompt
    logits = session.run({"input_ids": context})
    context = np.concatenate([context, logits[:, -1].argmax(axis=-1)[:, None]], axis=1)
    t1 = clock()
    for _ in range(new_tokens - 1):
        logits = session.run({"input_ids": context})
        context = np.concatenate([context, logits[:, -1].argmax(axis=-1)[:, None]], axis=1)
    return t1 - t0, clock() - t1, context[:, prompt.shape[1]:]


def kv_measurements(session: Any, prompt: np.ndarray, new_tokens: int, repeats: int,
                    reference_tokens: np.ndarray | None) -> dict[str, Any]:
    """The cached path's figures, or ``kv_cache_reason`` saying why it did not run."""
    getter = getattr(session, "kv_decoder", None)
    decoder, reason = getter() if getter else (None, "this runtime has no KV-cache path in qbench yet")
    if decoder is None:
        return {"kv_cache_reason": reason}
    try:
        generate_cached(decoder, prompt, new_tokens)  # warm-up: arenas, first shapes
        runs = [generate_cached(decoder, prompt, new_tokens) for _ in range(repeats)]
    except Exception as exc:  # noqa: BLE001 - reported with the result, never failing it
        return {"kv_cache_reason": f"the cached decode failed: {type(exc).__name__}: {str(exc)[:200]}"}
    batch = prompt.shape[0]
    decode = float(np.median([r[1] for r in runs]))
    out: dict[str, Any] = {
        "kv_ttft_ms": float(np.median([r[0] for r in runs])) * 1000.0,
        "kv_decode_tokens_per_s": batch * (new_tokens - 1) / decode if decode > 0 else None,
        "kv_cache_mb": runs[-1][3] / 2**20,
    }
    if reference_tokens is not None:
        out["kv_tokens_match"] = float(np.array_equal(runs[-1][2], reference_tokens))
    return out


def kv_artifact(model: Any, planned: list[dict[str, Any]], ctx: Any) -> tuple[Path | None, str | None]:
    """The decode-step graph with the variant's passes applied: (path, None) or (None, reason).

    ``model.kv_onnx`` is the fp32 graph from the export cache; the passes run on it in a folder of
    their own, exactly as on the main graph."""
    if model.kv_onnx is None:
        why = model.details.get("kv_cache_error")
        return None, ("the decode-step graph could not be exported: " + why) if why else (
            "the model has no KV-cache decode step (engines.models.kv_cache)")
    refused = [p["pass"] for p in planned if p["pass"] not in KV_PASSES]
    if refused:
        return None, f"{', '.join(refused)} is not applied to the decode-step graph yet (no cached decode)"
    from dataclasses import replace

    from engines.bench.build import apply_passes
    from engines.models.kv_cache import past_names
    from engines.passes import PassContext

    layers = int(model.details["kv_cache"]["layers"])
    step_model = replace(model, onnx_source=model.kv_onnx, kv_onnx=None, module=None,
                         inputs=[*model.inputs, *[type(model.inputs[0])(n, ("batch", "heads", "past", "dim"), "float32")
                                                  for n in past_names(layers)]])
    workdir = Path(ctx.workdir) / "kv"
    workdir.mkdir(parents=True, exist_ok=True)
    step_ctx = PassContext(step_model, workdir, ctx.runtime, ctx.device, ctx.threads, lambda **data: None,
                           runtime_config=ctx.runtime_config)
    artifact, _ = apply_passes(step_model, planned, step_ctx)
    return artifact.path, None
