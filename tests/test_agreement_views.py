"""A classifier's agreement with fp32 three ways: all views, the views fp32 is confident of
(top-1 probability ≥ 0.5, with their count), and top-5 containment."""

from __future__ import annotations

import numpy as np
import pytest

from engines.bench.evaluate import evaluate
from engines.models.base import LoadedModel


def _model(rows: int) -> LoadedModel:
    return LoadedModel("m", "classification", None, [], "logits", {"x": np.zeros((rows, 1))})


def test_confident_views_are_counted_and_scored_on_their_own():
    ref = np.zeros((4, 8), dtype=np.float32)
    ref[0, 0] = ref[1, 1] = 10.0  # fp32 is sure of views 0 and 1 (softmax ≈ 1)
    ref[2, 2], ref[2, 3] = 0.1, 0.05  # views 2 and 3: nearly flat logits, fp32 hesitates
    ref[3, 4] = 0.2
    out = ref.copy()
    out[1, 1], out[1, 5] = 0.0, 20.0  # a confident view flips (fp32's class stays in the top 5)
    out[2, 2], out[2, 6] = 0.0, 1.0  # an unsure view flips
    report = evaluate(_model(4), out, ref)
    agreement = report["agreement"]
    assert agreement["top1"] == pytest.approx(0.5)
    assert agreement["confident_views"] == 2 and agreement["top1_confident"] == pytest.approx(0.5)
    assert agreement["top5"] == report["metrics"]["top5_agreement"]


def test_probabilities_are_read_as_they_are_and_no_confident_view_gives_none():
    flat = np.full((3, 8), 1 / 8, dtype=np.float32)
    flat[:, 0] += 1e-3
    flat /= flat.sum(axis=1, keepdims=True)
    agreement = evaluate(_model(3), flat, flat)["agreement"]
    assert agreement["confident_views"] == 0 and agreement["top1_confident"] is None
    sure = np.eye(8, dtype=np.float32)[:3]  # probabilities already: not softmaxed again (1 → 0.25)
    assert evaluate(_model(3), sure, sure)["agreement"]["confident_views"] == 3


def test_the_store_keeps_the_three_views_of_agreement(tmp_path):
    from engines.store import Store

    store = Store(tmp_path / "q.db")
    store.create_run("r", "m", {"model": "m"}, {}, "test")
    agreement = {"top1": 0.9, "sqnr_db": 20.0, "cosine": 0.99, "top1_confident": 1.0, "confident_views": 21,
                 "top5": 1.0}
    store.add_result("r", {"model": "m", "method": "static-int8", "runtime": "onnxruntime", "device": "cpu",
                           "batch_size": 1, "status": "ok", "agreement": agreement, "metrics": {"top5_agreement": 1.0}})
    (result,) = store.results("r")
    store.close()
    assert result["agreement"] == agreement and result["metrics"] == {"top5_agreement": 1.0}
