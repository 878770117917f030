"""Hugging Face–format models from a local cache and from directories, loaded strictly offline:
a small GPT-2 with its own BPE tokenizer (made here, stored in a fake HF hub cache and run by
its ``org/name``), and a BERT classifier without a tokenizer (generated token ids)."""

from __future__ import annotations

import numpy as np
import pytest

from engines.models import load_model, resolve_model
from tests.helpers import FAST, by_key, qbench_json

pytestmark = [pytest.mark.real_model]


def _save_tiny_gpt2(directory) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from engines.models.corpus import lm_text

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([lm_text()], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(fast), n_positions=128, n_embd=64, n_layer=2, n_head=2)
    GPT2LMHeadModel(config).eval().save_pretrained(str(directory))
    fast.save_pretrained(str(directory))


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    hub = tmp_path_factory.mktemp("hf") / "hub"
    repo = hub / "models--acme--tiny-gpt2"
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    _save_tiny_gpt2(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    return hub


def test_cached_causal_lm_loads_offline(hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = resolve_model("acme/tiny-gpt2", {"seq_len": 32})
    assert (spec.task, spec.source) == ("causal-lm", "hf-cache")
    model = load_model(spec)
    ids, labels = model.eval_inputs["input_ids"], model.eval_labels
    assert ids.shape[1] == 32 and labels.shape == ids.shape
    assert np.array_equal(ids[:, 1:], labels[:, :-1])  # labels are the next tokens
    assert model.details["dataset"].startswith("qbench's own prose")
    assert model.output_axes == {0: "batch", 1: "seq"}


@pytest.mark.slow
def test_cached_causal_lm_sweep_reports_perplexity_kl_and_speed(hub_cache, tmp_path):
    proc, payload = qbench_json("run", "--model", "acme/tiny-gpt2", "--methods", "fp32,int4",
                                "--runtimes", "onnxruntime", "--seq-len", "64", "--db", str(tmp_path / "q.db"),
                                *FAST, env={"HF_HUB_CACHE": str(hub_cache)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = by_key(payload["results"])
    fp32, int4 = table[("fp32", "onnxruntime")], table[("int4", "onnxruntime")]
    assert fp32["status"] == int4["status"] == "ok", (fp32["error"], int4["error"])
    assert fp32["model"] == "acme/tiny-gpt2"
    # an untrained model: perplexity near the vocabulary size, and int4 moves the distribution
    assert 50 < fp32["metrics"]["perplexity"] < 2000
    assert fp32["metrics"]["kl_divergence"] == pytest.approx(0.0, abs=1e-6)
    assert int4["metrics"]["kl_divergence"] > 0
    for r in (fp32, int4):
        assert r["metrics"]["ttft_ms"] > 0 and r["metrics"]["decode_tokens_per_s"] > 0
        assert r["metrics"]["prefill_tokens_per_s"] > 0
    # GPT-2's Conv1D layers export as Gemm: rewritten to MatMul so that int4 reaches them
    notes = " ".join(int4["notes"])
    assert "MatMul nodes as MatMulNBits" in notes and "Gemm nodes rewritten" in notes, notes


def test_classifier_directory_without_tokenizer_gets_generated_ids(tmp_path):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=3000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=3, max_position_embeddings=64)
    BertForSequenceClassification(config).eval().save_pretrained(str(tmp_path / "clf"))
    spec = resolve_model(str(tmp_path / "clf"), {"seq_len": 24})
    assert spec.task == "classification" and spec.extra["tokenizer"] is False
    model = load_model(spec)
    assert model.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    assert model.eval_inputs["input_ids"].max() < 3000 and model.eval_labels is None
    assert "generated token ids" in model.details["dataset"]
    with torch.inference_mode():
        logits = model.module(*(torch.from_numpy(model.eval_inputs[n][:4]) for n in model.input_names))
    assert logits.shape == (4, 3)
    with pytest.raises(ValueError, match="longer than the model's 64 positions"):
        load_model(resolve_model(str(tmp_path / "clf"), {"seq_len": 100}))


def test_pytorch_bin_directory_is_refused_without_allow_pickle(tmp_path):
    d = tmp_path / "old"
    d.mkdir()
    (d / "config.json").write_text('{"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"}')
    (d / "pytorch_model.bin").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(ValueError, match="pickle"):
        resolve_model(str(d))
    assert resolve_model(str(d), {"allow_pickle": True}).extra["needs_pickle"] is True
