"""The llama.cpp runtime: GGUF files qbench writes (gguf package) and llama.cpp quantizes, run by
llama-cpp-python on the CPU, on tiny-lm (as llama.cpp's gpt2) and a local Llama folder.

What is checked: the file holds the expected tensors and types when read back (gguf.GGUFReader);
llama.cpp's logits agree with torch's (a wrong tensor name, transposition, q/k permutation or the
head-bias fold would break it); Q8_0 and 4-bit files are a fraction of the F16 one; a real sweep
reports llama-bench's figures, time to first token, perplexity and size; `export --format gguf`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from engines.bench.worker import open_recipe, reference_outputs, run_outputs
from engines.models import load_model, resolve_model
from engines.runtimes.base import UnsupportedVariant
from engines.runtimes.llamacpp.gguf_write import fold_bias, tensor_types
from tests.helpers import FAST, by_key, needs, qbench, qbench_json

# Found, not imported, at collection (every xdist worker collects every module).
pytestmark = [pytest.mark.real_model, needs("gguf", reason="gguf is not installed (`uv sync --extra llamacpp`)"),
              needs("llama_cpp", reason="llama-cpp-python is not installed (`uv sync --extra llamacpp`)")]

ROWS = 4  # held-out windows the agreement checks use (each is a full 128-byte context)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = load_model(resolve_model("tiny-lm"))
    model.eval_inputs = {"input_ids": model.eval_inputs["input_ids"][:ROWS]}
    model.eval_labels = model.eval_labels[:ROWS]
    return model, reference_outputs(model, tmp_path_factory.mktemp("ref"))


@pytest.fixture(scope="module")
def variants(tiny, tmp_path_factory):
    """fp32, fp16, weight-int8 and int4 of tiny-lm on llama.cpp: (artifact, session) each."""
    model, _ = tiny
    out = {}
    for method in ("fp32", "fp16", "weight-int8", "int4"):
        workdir = tmp_path_factory.mktemp(method)
        out[method] = open_recipe(model, method, "llama.cpp", "cpu", 1, workdir)
    return out


def test_fold_bias_adds_the_bias_after_any_layer_norm():
    rng = np.random.default_rng(0)
    gamma, beta = rng.normal(1, 0.2, 16), rng.normal(0, 0.1, 16)
    weight, bias = rng.normal(0, 0.1, (40, 16)), rng.normal(0, 1, 40)
    x = rng.normal(0, 1, (100, 16))
    n = (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True)
    beta2, weight2 = fold_bias(gamma, beta, weight, bias)
    expected = (gamma * n + beta) @ weight.T + bias
    np.testing.assert_allclose((gamma * n + beta2) @ weight2.T, expected, atol=1e-4)


def test_tiny_lm_gguf_has_gpt2_tensors_and_types(variants):
    import gguf

    fp16, _ = variants["fp16"]
    reader = gguf.GGUFReader(str(fp16.path))
    assert reader.get_field("general.architecture").contents() == "gpt2"
    assert reader.get_field("gpt2.context_length").contents() == 128
    types = tensor_types(fp16.path)
    expected = {"token_embd.weight", "position_embd.weight", "output_norm.weight", "output_norm.bias", "output.weight"}
    for i in range(3):
        for part in ("attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"):
            expected |= {f"blk.{i}.{part}.weight", f"blk.{i}.{part}.bias"}
    assert set(types) == expected
    assert types["blk.0.attn_qkv.weight"] == types["output.weight"] == types["token_embd.weight"] == "F16"
    assert types["blk.0.attn_qkv.bias"] == types["output_norm.weight"] == "F32"  # 1-D stays float32
    q8 = tensor_types(variants["weight-int8"][0].path)
    assert q8["blk.1.ffn_up.weight"] == q8["position_embd.weight"] == "Q8_0" and q8["blk.1.ffn_up.bias"] == "F32"
    q4 = tensor_types(variants["int4"][0].path)
    assert q4["blk.1.ffn_up.weight"] == "Q4_0"  # rows of 96 / 384: no K-quant super-blocks of 256
    # llama.cpp's own choices: the position table stays at its source type, the output matrix at 8 bits
    assert q4["position_embd.weight"] == "F16" and q4["output.weight"] == "Q8_0"


def test_llama_cpp_logits_agree_with_torch(tiny, variants):
    model, reference = tiny
    for method, (max_abs, min_top1) in {"fp32": (0.05, 0.99), "fp16": (0.05, 0.99), "weight-int8": (0.3, 0.95),
                                        "int4": (2.0, 0.75)}.items():
        outputs = run_outputs(variants[method][1], model.eval_inputs)
        assert outputs.shape == reference.shape
        top1 = float(np.mean(outputs.argmax(-1) == reference.argmax(-1)))
        assert np.abs(outputs - reference).max() < max_abs, (method, np.abs(outputs - reference).max())
        assert top1 >= min_top1, (method, top1)


def test_quantized_files_are_a_fraction_of_f16(variants):
    f16 = variants["fp16"][0].size_bytes
    assert variants["weight-int8"][0].size_bytes <= 0.55 * f16
    assert variants["int4"][0].size_bytes <= 0.35 * f16
    assert variants["fp32"][0].size_bytes > 1.9 * f16


def test_kv_decoder_chooses_the_tokens_full_recomputation_chooses(tiny, variants):
    from engines.bench.decode import generate_cached, generate_uncached

    model, _ = tiny
    session = variants["fp16"][1]
    prompt = model.eval_inputs["input_ids"][:1, :32]
    decoder, reason = session.kv_decoder()
    assert reason is None
    _, _, cached, cache_bytes = generate_cached(decoder, prompt, 8)
    _, _, full = generate_uncached(session, prompt, 8)
    assert np.array_equal(cached, full)
    # 32 prompt + 7 fed-back positions × keys and values × 3 blocks × width × F16
    assert cache_bytes == 39 * 2 * 3 * 96 * 2
    figures = session.generation_figures(16, 8)
    assert figures["pp_tokens_per_s"] > 0 and figures["tg_tokens_per_s"] > 0 and figures["tg_tokens_per_s_sd"] >= 0


def test_models_it_cannot_write_are_refused_with_a_reason(tmp_path):
    model = load_model(resolve_model("digits-mlp"))
    with pytest.raises(UnsupportedVariant, match="tiny-lm"):
        open_recipe(model, "fp16", "llama.cpp", "cpu", 1, tmp_path)


def save_llama(directory) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rope_theta=500000.0, tie_word_embeddings=True)
    LlamaForCausalLM(config).eval().save_pretrained(str(directory))


def test_llama_folder_as_gguf_agrees_with_torch(tmp_path):
    """Grouped-query attention, tied output and Llama 3's rope base: q/k rows permuted for llama.cpp."""
    save_llama(tmp_path / "tiny-llama")
    model = load_model(resolve_model(str(tmp_path / "tiny-llama"), {"seq_len": 32}))
    model.eval_inputs = {"input_ids": model.eval_inputs["input_ids"][:ROWS]}
    model.eval_labels = model.eval_labels[:ROWS]
    for name in ("ref", "fp16"):
        (tmp_path / name).mkdir()
    reference = reference_outputs(model, tmp_path / "ref")
    artifact, session = open_recipe(model, "fp16", "llama.cpp", "cpu", 1, tmp_path / "fp16")
    assert "output.weight" not in tensor_types(artifact.path)  # tied: llama.cpp reuses token_embd
    outputs = run_outputs(session, model.eval_inputs)
    assert np.abs(outputs - reference).max() < 0.02, np.abs(outputs - reference).max()


@pytest.mark.slow
def test_tiny_lm_sweep_on_llama_cpp_and_gguf_export(tmp_path):
    db = tmp_path / "q.db"
    proc, payload = qbench_json("run", "--model", "tiny-lm", "--methods", "fp16,weight-int8,int4", "--runtimes",
                                "llama.cpp", "--db", str(db), *FAST)
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = by_key(payload["results"])
    for method in ("fp16", "weight-int8", "int4"):
        r = table[(method, "llama.cpp")]
        assert r["status"] == "ok", r.get("error")
        m = r["metrics"]
        for key in ("perplexity", "kl_divergence", "ttft_ms", "decode_tokens_per_s", "pp_tokens_per_s",
                    "pp_tokens_per_s_sd", "tg_tokens_per_s", "tg_tokens_per_s_sd"):
            assert m.get(key) is not None and m[key] >= 0, (method, key, m.get(key))
        assert m["decode_kv_cache"] == 1
    sizes = {method: table[(method, "llama.cpp")]["size_mb"] for method in ("fp16", "weight-int8", "int4")}
    assert sizes["weight-int8"] <= 0.55 * sizes["fp16"] and sizes["int4"] <= 0.35 * sizes["fp16"], sizes
    out = tmp_path / "export"
    proc = qbench("--db", str(db), "export", str(table[("int4", "llama.cpp")]["id"]), "--format", "gguf", "--out",
                  str(out), "--json")
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout)
    assert report["validation"]["validated"] and report["validation"]["agrees"], report["validation"]["status"]
    from engines.export.targets import read_metadata as read

    assert read("gguf", out / "model.gguf")["qbench.source_model"] == "tiny-lm"
