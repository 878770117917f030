"""tiny-lm: the zoo's small decoder LM, trained once on the shipped prose and cached, swept for
real through both runtimes: perplexity, KL to fp32 and generation speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from engines.models import load_model, resolve_model
from tests.helpers import FAST, by_key, qbench_json

pytestmark = [pytest.mark.slow, pytest.mark.real_model]


@pytest.fixture(scope="module")
def lm_sweep(tmp_path_factory):
    db = tmp_path_factory.mktemp("tinylm") / "q.db"
    proc, payload = qbench_json("run", "--model", "tiny-lm", "--methods", "fp32,dynamic-int8,int4",
                                "--runtimes", "onnxruntime,torch", "--db", str(db), *FAST)
    return proc, payload


def test_sweep_succeeds(lm_sweep):
    proc, payload = lm_sweep
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = payload["results"]
    assert len(results) == 6
    assert {r["status"] for r in results} == {"ok"}, [(r["method"], r["runtime"], r["error"]) for r in results]


def test_perplexity_and_kl_are_reported(lm_sweep):
    table = by_key(lm_sweep[1]["results"])
    fp32 = table[("fp32", "onnxruntime")]["metrics"]
    # trained: far below the 256 of uniform guessing over bytes
    assert fp32["perplexity"] < 20 and fp32["kl_divergence"] == pytest.approx(0.0, abs=1e-6)
    assert fp32["perplexity"] == pytest.approx(fp32["reference_perplexity"])
    for (method, runtime), r in table.items():
        m = r["metrics"]
        assert m["reference_perplexity"] == pytest.approx(fp32["reference_perplexity"], rel=1e-4)
        assert r["accuracy"] == m["next_token_accuracy"] and m["accuracy_kind"] == "next-token accuracy"
        if method != "fp32":
            assert 0 < m["kl_divergence"] < 0.1, (method, runtime, m["kl_divergence"])
            assert m["perplexity"] < fp32["perplexity"] * 1.1, (method, runtime)
            assert r["agreement"]["top1"] > 0.85  # most next-byte predictions unchanged


def test_tokens_per_second_and_time_to_first_token(lm_sweep):
    for r in lm_sweep[1]["results"]:
        m = r["metrics"]
        assert m["prefill_tokens_per_s"] > 0 and m["decode_tokens_per_s"] > 0 and m["ttft_ms"] > 0, m
        assert m["generation_new_tokens"] == 32 and m["nocache_decode_tokens_per_s"] > 0
        # with a KV cache where the variant has one (engines.bench.decode); else the reason is said
        assert m["decode_kv_cache"] == 1 or m["kv_cache_reason"], m
        if r["method"] == "fp32":
            assert m["decode_kv_cache"] == 1 and m["kv_tokens_match"] == 1.0, (r["runtime"], m)
        assert "generation_error" not in m
        assert r["peak_rss_mb"] > 0
    json.dumps(lm_sweep[1]["results"])


def test_int4_reaches_every_linear_layer(lm_sweep):
    r = by_key(lm_sweep[1]["results"])[("int4", "onnxruntime")]
    # 3 blocks x (qkv, proj, fc1, fc2) + the output head
    assert "13 MatMul nodes as MatMulNBits" in " ".join(r["notes"]), r["notes"]


def test_cached_model_is_reused_and_seq_len_is_an_option(lm_sweep, qbench_home):
    weights = qbench_home / "models" / "tiny-lm" / "weights.pt"
    meta = json.loads((qbench_home / "models" / "tiny-lm" / "meta.json").read_text())
    assert meta["recipe"]["text"] and meta["recipe"]["steps"] > 0
    stamp = weights.stat().st_mtime_ns
    model = load_model(resolve_model("tiny-lm", {"seq_len": 64}))
    assert weights.stat().st_mtime_ns == stamp  # loaded, not retrained
    assert model.eval_inputs["input_ids"].shape[1] == 64 and model.details["prompt_tokens"] == 32
    with pytest.raises(ValueError, match="context of 128"):
        load_model(resolve_model("tiny-lm", {"seq_len": 256}))


def test_onnx_runtime_variants_reuse_one_export_without_torch(lm_sweep, qbench_home):
    """After the first ONNX Runtime variant, the others load the cached fp32 export: no torch."""
    assert list((qbench_home / "models" / "onnx").glob("tiny-lm-*/model.onnx"))
    code = ("import sys; from dataclasses import replace; from engines.models import resolve_model, load_model;"
            "s = resolve_model('tiny-lm'); m = load_model(replace(s, extra={**s.extra, 'source_format': 'onnx'}));"
            "print('torch' in sys.modules, m.module is None, m.onnx_source.name, m.eval_labels.shape)")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "QBENCH_HOME": str(qbench_home)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[:3] == ["False", "True", "model.onnx"], out.stdout
