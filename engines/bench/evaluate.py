"""Task metrics and agreement with the fp32 reference, per task.

* ``classification``: accuracy on the held-out labels; agreement as in :func:`engines.bench.measure.agreement`
  with ``top1_confident`` / ``confident_views`` (views where fp32's top-1 probability ≥ 0.5) and ``top5``,
  plus ``metrics.top5_agreement`` (the share of rows whose fp32 top-1 class is among the variant's
  five most likely) where there are more than five classes (image classifiers).
* ``embedding``: cosine of each embedding to its fp32 embedding (mean and worst), and retrieval
  agreement on the shipped sentence corpus: each sentence queries the others, and the variant's
  top-k neighbours are compared with fp32's. ``agreement.top1`` is the share of queries whose
  nearest neighbour is unchanged; ``accuracy`` is paraphrase recall@1 (the partner sentence is
  the nearest neighbour) where the corpus pairs are known.
* ``causal-lm``: perplexity on the held-out text, KL(fp32 ‖ variant) of the next-token
  distributions, next-token accuracy (``accuracy``); ``agreement.top1`` is the share of
  positions whose most likely next token is unchanged. :func:`extra_measurements` adds time to
  first token, prefill and decode tokens/s (and a session's own ``generation_figures``, e.g.
  llama.cpp's pp / tg tokens/s mean ± sd).
* ``generic`` (a file without labels): agreement with its own fp32 outputs only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engines.bench.measure import agreement
from engines.models.base import LoadedModel

RETRIEVAL_K = 5


def evaluate(model: LoadedModel, outputs: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """``accuracy`` (task metric where labels exist), ``agreement`` and task-specific ``metrics``."""
    if outputs.shape != reference.shape:
        raise ValueError(f"the variant's output has shape {outputs.shape}, fp32's {reference.shape}")
    report: dict[str, Any] = {"accuracy": None, "agreement": agreement(reference, outputs), "metrics": {}}
    if model.task == "classification" and outputs.ndim == 2 and outputs.shape[1] > 5:
        report["metrics"]["top5_agreement"] = topk_agreement(reference, outputs, 5)
        report["agreement"].update(confident_agreement(reference, outputs), top5=report["metrics"]["top5_agreement"])
    if model.task == "classification" and model.eval_labels is not None:
        report["accuracy"] = float(np.mean(outputs.argmax(axis=-1) == model.eval_labels))
        report["metrics"]["reference_accuracy"] = float(np.mean(reference.argmax(axis=-1) == model.eval_labels))
    elif model.task == "embedding":
        _embedding_quality(model, outputs, reference, report)
    elif model.task == "causal-lm":
        _causal_lm_quality(model, outputs, reference, report)
    return report


def topk_agreement(reference: np.ndarray, outputs: np.ndarray, k: int) -> float:
    """Share of rows whose fp32 top-1 class is among the variant's ``k`` highest scores."""
    top = np.argsort(-outputs, axis=-1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == reference.argmax(axis=-1)[:, None], axis=1)))


CONFIDENT = 0.5  # fp32's top-1 probability from which a view counts as one fp32 is sure of


def confident_agreement(reference: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
    """Top-1 agreement on the views where fp32 is confident (its top-1 probability ≥ 0.5; rows that
    are not probabilities are softmaxed first) and how many such views there are: disagreement on a
    view fp32 itself hesitates over is a coin flip, not lost quality."""
    ref = reference.astype(np.float64)
    sums = ref.sum(axis=-1)
    if not (np.all(ref >= 0) and np.allclose(sums, 1.0, atol=1e-3)):
        ref = np.exp(ref - ref.max(axis=-1, keepdims=True))
        ref /= ref.sum(axis=-1, keepdims=True)
    sure = ref.max(axis=-1) >= CONFIDENT
    count = int(sure.sum())
    same = outputs.argmax(axis=-1) == reference.argmax(axis=-1)
    return {"top1_confident": float(np.mean(same[sure])) if count else None, "confident_views": count}


# --- embeddings -------------------------------------------------------------------------------


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    denom = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    denom[denom == 0] = 1.0
    return np.sum(a * b, axis=1) / denom


def neighbours(embeddings: np.ndarray, k: int) -> np.ndarray:
    """Indices of each row's ``k`` nearest other rows by cosine similarity, nearest first."""
    e = embeddings.reshape(len(embeddings), -1).astype(np.float64)
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    e = e / np.where(norms == 0, 1.0, norms)
    sims = e @ e.T
    np.fill_diagonal(sims, -np.inf)
    # stable sort: ties resolve the same way for the reference and the variant
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def retrieval_agreement(reference: np.ndarray, outputs: np.ndarray, k: int = RETRIEVAL_K) -> dict[str, float]:
    k = max(1, min(k, len(reference) - 1))
    ref_nn, out_nn = neighbours(reference, k), neighbours(outputs, k)
    overlap = [len(set(r) & set(o)) / k for r, o in zip(ref_nn, out_nn)]
    return {
        "retrieval_k": float(k),
        "retrieval_top1_agreement": float(np.mean(ref_nn[:, 0] == out_nn[:, 0])),
        f"retrieval_top{k}_overlap": float(np.mean(overlap)),
        f"retrieval_top{k}_unchanged": float(np.mean([set(r) == set(o) for r, o in zip(ref_nn, out_nn)])),
    }


def _embedding_quality(model: LoadedModel, outputs: np.ndarray, reference: np.ndarray, report: dict) -> None:
    cos = cosine_rows(reference, outputs)
    metrics = report["metrics"]
    metrics["cosine_mean"] = float(cos.mean())
    metrics["cosine_min"] = float(cos.min())
    if len(reference) > 1:
        metrics.update(retrieval_agreement(reference, outputs))
        report["agreement"]["top1"] = metrics["retrieval_top1_agreement"]
    if model.eval_labels is not None and len(reference) > 1:
        partner = np.asarray(model.eval_labels)
        report["accuracy"] = float(np.mean(neighbours(outputs, 1)[:, 0] == partner))
        metrics["reference_accuracy"] = float(np.mean(neighbours(reference, 1)[:, 0] == partner))
        metrics["accuracy_kind"] = "paraphrase recall@1"


# --- causal language models ---------------------------------------------------------------------


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def lm_scores(outputs: np.ndarray, reference: np.ndarray, labels: np.ndarray | None) -> dict[str, float]:
    """Perplexity, KL(fp32 ‖ variant) in nats per token and next-token accuracy, one window at a
    time (a large vocabulary would not fit in memory in float64 all at once)."""
    nll = ref_nll = kl = kl_max = 0.0
    hits = ref_hits = 0
    count = 0
    for i in range(len(outputs)):
        logp, ref_logp = log_softmax(outputs[i]), log_softmax(reference[i])
        per_pos_kl = np.sum(np.exp(ref_logp) * (ref_logp - logp), axis=-1)
        kl += float(per_pos_kl.sum())
        kl_max = max(kl_max, float(per_pos_kl.max()))
        if labels is not None:
            target = labels[i]
            idx = np.arange(len(target))
            nll -= float(logp[idx, target].sum())
            ref_nll -= float(ref_logp[idx, target].sum())
            hits += int(np.sum(logp.argmax(axis=-1) == target))
            ref_hits += int(np.sum(ref_logp.argmax(axis=-1) == target))
        count += per_pos_kl.size
    scores = {"kl_divergence": kl / count, "kl_max": kl_max, "tokens_scored": float(count)}
    if labels is not None:
        scores.update({
            "perplexity": math.exp(nll / count), "reference_perplexity": math.exp(ref_nll / count),
            "next_token_accuracy": hits / count, "reference_accuracy": ref_hits / count,
        })
    return scores


def _causal_lm_quality(model: LoadedModel, outputs: np.ndarray, reference: np.ndarray, report: dict) -> None:
    scores = lm_scores(outputs, reference, model.eval_labels)
    report["metrics"].update(scores)
    if "next_token_accuracy" in scores:
        report["accuracy"] = scores["next_token_accuracy"]
        report["metrics"]["accuracy_kind"] = "next-token accuracy"


# --- measurements beyond per-call latency ----------------------------------------------------


def extra_measurements(model: LoadedModel, session: Any, batch_size: int, p50_ms: float | None = None,
                       repeats: int = 3) -> dict[str, Any]:
    """Task-specific speed figures for one batch size, merged into the result's ``metrics``.

    Causal LMs: ``prefill_tokens_per_s`` from the timed full-window call (``p50_ms``), and a short
    greedy generation of ``new_tokens`` after ``prompt_tokens`` (the model's details, or the
    sweep's model options), repeated, twice: with the runtime's KV cache where the session has
    one, and recomputing the whole sequence for each token (:mod:`engines.bench.decode`, which
    names every figure). ``ttft_ms`` / ``decode_tokens_per_s`` are the cached path's when it ran,
    and ``decode_kv_cache`` (1 or 0) says which. A variant whose graph fixes the sequence length
    cannot generate without a cache; that is reported in ``generation_error`` rather than
    failing the result.
    """
    if model.task != "causal-lm":
        return {}
    from engines.bench.decode import generate_uncached, kv_measurements

    seq = int(model.details.get("seq_len") or model.eval_inputs["input_ids"].shape[1])
    out: dict[str, Any] = {"decode_kv_cache": 0}
    if p50_ms:
        out["prefill_tokens_per_s"] = batch_size * seq * 1000.0 / p50_ms
    prompt_len = int(model.details.get("prompt_tokens") or min(32, seq // 2))
    new_tokens = int(model.details.get("new_tokens") or min(16, seq - prompt_len))
    if new_tokens < 2:
        return out
    # the prompt: the start of the held-out text, as long as asked (rows are tiled if too short)
    rows = model.example_inputs(batch_size)["input_ids"]
    if rows.shape[1] < prompt_len:
        rows = np.concatenate([rows] * (-(-prompt_len // rows.shape[1])), axis=1)
    prompt = np.ascontiguousarray(rows[:, :prompt_len])
    out.update({"generation_prompt_tokens": prompt_len, "generation_new_tokens": new_tokens,
                "generation_context_tokens": prompt_len + new_tokens, "generation_repeats": repeats})
    reference_tokens = None
    try:
        generate_uncached(session, prompt, new_tokens)  # warm-up, and the shapes' first compilation
        runs = [generate_uncached(session, prompt, new_tokens) for _ in range(repeats)]
    except Exception as exc:  # noqa: BLE001 - e.g. a graph specialised to one sequence length
        out["generation_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    else:
        decode = float(np.median([r[1] for r in runs]))
        out["nocache_ttft_ms"] = float(np.median([r[0] for r in runs])) * 1000.0
        out["nocache_decode_tokens_per_s"] = batch_size * (new_tokens - 1) / decode if decode > 0 else None
        out["ttft_ms"], out["decode_tokens_per_s"] = out["nocache_ttft_ms"], out["nocache_decode_tokens_per_s"]
        reference_tokens = runs[-1][2]
    kv = kv_measurements(session, prompt, new_tokens, repeats, reference_tokens)
    out.update(kv)
    if kv.get("kv_decode_tokens_per_s"):
        out.update({"decode_kv_cache": 1, "ttft_ms": kv["kv_ttft_ms"], "decode_tokens_per_s": kv["kv_decode_tokens_per_s"]})
    # A runtime's own benchmark figures where it has them (llama.cpp: llama-bench's pp / tg tokens/s ± sd)
    figures = getattr(session, "generation_figures", None)
    if figures is not None:
        try:
            out.update(figures(prompt_len, new_tokens))
        except Exception as exc:  # noqa: BLE001 - reported with the result, never failing it
            out["generation_figures_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return out
