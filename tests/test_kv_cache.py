"""Causal LMs decoded with a KV cache, as deployed: tiny-lm and a Llama-style folder made here
(random weights, save_pretrained), on torch and ONNX Runtime. Timed claims live in
bench/kv_cache_decode.py; these tests check that the cached path runs, matches the uncached
tokens, and is labelled in the result."""

from __future__ import annotations

import numpy as np
import pytest

from engines.models import load_model, resolve_model
from tests.helpers import by_key, qbench_json

pytestmark = [pytest.mark.real_model]
LEAN = ("--min-time", "0.2", "--min-reps", "5", "--repeat", "1")


def save_tiny_llama(directory) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    LlamaForCausalLM(config).eval().save_pretrained(str(directory))


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("llama") / "tiny-llama"
    save_tiny_llama(directory)
    return directory


def _step_matches_full_forward(module, ids: np.ndarray) -> None:
    import torch

    with torch.inference_mode():
        full = module(torch.from_numpy(ids)).numpy()
        logits, past = module.decode_step(torch.from_numpy(ids[:, :-3]))
        steps = [logits[:, -1].numpy()]
        for i in range(ids.shape[1] - 3, ids.shape[1]):
            logits, past = module.decode_step(torch.from_numpy(ids[:, i : i + 1]), past)
            steps.append(logits[:, -1].numpy())
    cached = np.stack(steps[1:], axis=1)
    np.testing.assert_allclose(cached, full[:, -3:], atol=1e-4)
    assert past[0][0].shape[2] == ids.shape[1]


def test_llama_folder_decode_step_matches_the_uncached_forward(llama_dir):
    model = load_model(resolve_model(str(llama_dir), {"seq_len": 32}))
    assert model.details["kv_cache"]["layers"] == 2 and model.details["kv_cache"]["heads"] == 2
    assert resolve_model(str(llama_dir)).family == "decoder"
    _step_matches_full_forward(model.module, model.eval_inputs["input_ids"][:2, :20])


@pytest.mark.slow
def test_tiny_lm_cached_decode_on_torch_and_onnxruntime(tmp_path):
    from dataclasses import replace

    from engines.bench.evaluate import extra_measurements
    from engines.bench.worker import open_recipe

    spec = resolve_model("tiny-lm")
    torch_model = load_model(spec)
    _step_matches_full_forward(torch_model.module, torch_model.eval_inputs["input_ids"][:2, :40])
    onnx_model = load_model(replace(spec, extra={**spec.extra, "source_format": "onnx"}))
    assert onnx_model.kv_onnx is not None and onnx_model.kv_onnx.exists()
    for model, runtime in ((torch_model, "torch"), (onnx_model, "onnxruntime")):
        model.details.update(prompt_tokens=96, new_tokens=32)  # a 128-token context at the end
        for recipe in ("fp32", "dynamic-int8"):
            workdir = tmp_path / f"{runtime}-{recipe}"
            workdir.mkdir()
            _, session = open_recipe(model, recipe, runtime, "cpu", 1, workdir)
            m = extra_measurements(model, session, batch_size=1, p50_ms=5.0, repeats=1)
            assert m["decode_kv_cache"] == 1, (runtime, recipe, m)
            assert m["kv_decode_tokens_per_s"] > 0 and m["nocache_decode_tokens_per_s"] > 0
            assert m["decode_tokens_per_s"] == m["kv_decode_tokens_per_s"]
            assert m["generation_context_tokens"] == 128
            # 3 blocks × (k, v) × 4 heads × 128 positions × 24 floats, less the last token's
            assert m["kv_cache_mb"] == pytest.approx(3 * 2 * 4 * 127 * 24 * 4 / 2**20)
            if recipe == "fp32":
                assert m["kv_tokens_match"] == 1.0, (runtime, m)


@pytest.mark.slow
def test_llama_folder_sweep_labels_the_cached_decode(llama_dir, tmp_path):
    proc, payload = qbench_json("run", "--model", str(llama_dir), "--methods", "fp32,static-int8",
                                "--runtimes", "torch,onnxruntime", "--seq-len", "32", "--prompt-len", "24",
                                "--gen-len", "8", "--db", str(tmp_path / "q.db"), *LEAN)
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = by_key(payload["results"])
    for runtime in ("torch", "onnxruntime"):
        m = table[("fp32", runtime)]["metrics"]
        assert m["decode_kv_cache"] == 1 and m["kv_tokens_match"] == 1.0, (runtime, m)
        assert m["generation_prompt_tokens"] == 24 and m["generation_new_tokens"] == 8
        assert m["kv_cache_mb"] > 0 and m["ttft_ms"] == m["kv_ttft_ms"]
    # ONNX Runtime's static int8 is not carried to the decode-step graph: said, and the uncached figures stay
    static = table[("static-int8", "onnxruntime")]["metrics"]
    assert static["decode_kv_cache"] == 0 and "ort-static-int8" in static["kv_cache_reason"]
    assert static["decode_tokens_per_s"] == static["nocache_decode_tokens_per_s"]
