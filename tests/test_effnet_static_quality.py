"""EfficientNet-Lite0 static int8 on real photos: the held-out views, and the result's agreement
measured three ways (all views, the views fp32 is confident of with their count, top-5)."""

from __future__ import annotations

import pytest

from engines.models.vision import CALIBRATION_VIEWS, EVAL_VIEWS, MAX_IMAGES, photo_views
from tests.helpers import by_key, qbench_json

pytestmark = [pytest.mark.real_model]


def test_held_out_and_calibration_views_are_different_crops():
    assert not set(EVAL_VIEWS) & set(CALIBRATION_VIEWS)
    assert MAX_IMAGES == 25 * len(EVAL_VIEWS)  # scikit-image's 23 photos and scikit-learn's 2
    held_out, calibration = photo_views(32, EVAL_VIEWS[:1], 25), photo_views(32, CALIBRATION_VIEWS[:1], 25)
    assert held_out.shape == calibration.shape == (25, 32, 32, 3)
    assert not any((held_out[i] == calibration[i]).all() for i in range(25))


@pytest.mark.slow
def test_static_int8_reports_confident_views_and_keeps_them(tmp_path):
    proc, payload = qbench_json("run", "--model", "efficientnet-lite0", "--methods", "fp32,static-int8",
                                "--runtimes", "onnxruntime", "--db", str(tmp_path / "q.db"),
                                "--min-time", "0.1", "--min-reps", "3", "--repeat", "1")
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = by_key(payload["results"])
    static = table[("static-int8", "onnxruntime")]
    assert static["status"] == "ok", static["error"]
    agreement = static["agreement"]
    assert {"top1", "top1_confident", "confident_views", "top5"} <= set(agreement), agreement
    # the default held-out set: 200 views, of which fp32 is sure (top-1 probability ≥ 0.5) of 36
    assert agreement["confident_views"] >= 20, agreement
    assert agreement["top1_confident"] >= 0.97 and agreement["top5"] >= 0.98, agreement
    assert agreement["top1"] >= 0.85, agreement  # the views fp32 hesitates over flip more often
    assert table[("fp32", "onnxruntime")]["agreement"]["confident_views"] == agreement["confident_views"]
