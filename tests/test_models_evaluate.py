"""Task metrics of engines.evaluate, checked against hand computations (no model, no torch)."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pytest

from engines.bench.evaluate import evaluate, extra_measurements, lm_scores, neighbours, retrieval_agreement
from engines.models.base import InputSpec, LoadedModel


def _model(task: str, inputs: dict, labels=None, **details) -> LoadedModel:
    specs = [InputSpec(k, ("batch", "seq"), str(v.dtype)) for k, v in inputs.items()]
    return LoadedModel("m", task, None, specs, "out", inputs, eval_labels=labels, details=details)


def test_neighbours_exclude_the_query_itself():
    e = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    nn = neighbours(e, 1)
    assert nn[:, 0].tolist() == [1, 0, 3, 2]


def test_retrieval_agreement_sees_a_changed_neighbourhood():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((40, 16))
    same = retrieval_agreement(ref, ref * 3.0)  # scaling keeps every cosine
    assert same["retrieval_top1_agreement"] == 1.0 and same["retrieval_top5_overlap"] == 1.0
    shuffled = retrieval_agreement(ref, rng.standard_normal((40, 16)))
    assert shuffled["retrieval_top5_overlap"] < 0.5


def test_embedding_report_has_cosine_retrieval_and_paraphrase_recall():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((10, 8))
    ref = np.repeat(base, 2, axis=0) + 0.01 * rng.standard_normal((20, 8))  # pairs 2i, 2i+1
    partner = np.array([i ^ 1 for i in range(20)])
    model = _model("embedding", {"input_ids": np.zeros((20, 4), np.int64)}, labels=partner)
    noisy = ref + 0.05 * rng.standard_normal(ref.shape)
    report = evaluate(model, noisy.astype(np.float32), ref.astype(np.float32))
    m = report["metrics"]
    assert report["accuracy"] == 1.0 and m["reference_accuracy"] == 1.0
    assert 0.9 < m["cosine_mean"] < 1.0 and m["cosine_min"] <= m["cosine_mean"]
    assert report["agreement"]["top1"] == m["retrieval_top1_agreement"]
    assert {"retrieval_top5_overlap", "retrieval_top5_unchanged"} <= set(m)


def test_lm_scores_match_a_hand_computation():
    rng = np.random.default_rng(2)
    ref = rng.standard_normal((2, 3, 5))
    out = ref + 0.3 * rng.standard_normal(ref.shape)
    labels = rng.integers(0, 5, size=(2, 3))
    scores = lm_scores(out, ref, labels)

    def logp(x):
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    lp, lr = logp(out), logp(ref)
    nll = -np.mean(np.take_along_axis(lp, labels[..., None], -1))
    kl = np.mean(np.sum(np.exp(lr) * (lr - lp), -1))
    assert scores["perplexity"] == pytest.approx(math.exp(nll))
    assert scores["kl_divergence"] == pytest.approx(kl)
    assert scores["next_token_accuracy"] == pytest.approx(np.mean(lp.argmax(-1) == labels))
    same = lm_scores(ref, ref, labels)
    assert same["kl_divergence"] == pytest.approx(0.0, abs=1e-12)
    assert same["perplexity"] == pytest.approx(same["reference_perplexity"])


def test_causal_lm_report_and_generation_timings():
    vocab, seq = 7, 12
    ids = np.arange(4 * seq).reshape(4, seq) % vocab
    labels = (ids + 1) % vocab
    model = _model("causal-lm", {"input_ids": ids}, labels=labels, seq_len=seq, prompt_tokens=4, new_tokens=5)
    perfect = np.eye(vocab)[labels] * 10.0  # always predicts the right next token
    report = evaluate(model, perfect.astype(np.float32), perfect.astype(np.float32))
    assert report["accuracy"] == 1.0
    assert report["metrics"]["perplexity"] < 1.01 and report["metrics"]["kl_divergence"] == pytest.approx(0)

    class Session:  # predicts "previous token + 1", like the data
        calls: ClassVar[list[int]] = []

        def run(self, inputs):
            x = inputs["input_ids"]
            self.calls.append(x.shape[1])
            return np.eye(vocab)[(x + 1) % vocab].astype(np.float32)

    timing = extra_measurements(model, Session(), batch_size=2, p50_ms=10.0, repeats=2)
    assert timing["prefill_tokens_per_s"] == pytest.approx(2 * seq * 1000 / 10.0)
    assert timing["ttft_ms"] > 0 and timing["decode_tokens_per_s"] > 0
    assert timing["decode_kv_cache"] == 0
    # prompt of 4, then the context grows by one token per step, 5 new tokens, 3 generations
    assert Session.calls == [4, 5, 6, 7, 8] * 3


def test_generation_failure_is_reported_not_raised():
    model = _model("causal-lm", {"input_ids": np.zeros((2, 16), np.int64)}, seq_len=16)

    class FixedShape:
        def run(self, inputs):
            raise RuntimeError("Got invalid dimensions for input: input_ids")

    timing = extra_measurements(model, FixedShape(), batch_size=1, p50_ms=1.0)
    assert "invalid dimensions" in timing["generation_error"]
    assert "prefill_tokens_per_s" in timing


def test_other_tasks_have_no_extra_measurements():
    model = _model("embedding", {"input_ids": np.zeros((2, 4), np.int64)})
    assert extra_measurements(model, None, 1, 1.0) == {}


def test_mismatched_output_shape_is_a_readable_error():
    model = _model("generic", {"x": np.zeros((2, 4), np.float32)})
    with pytest.raises(ValueError, match="shape"):
        evaluate(model, np.zeros((2, 3), np.float32), np.zeros((2, 4), np.float32))
