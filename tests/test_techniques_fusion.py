"""Graph fusion (ONNX Runtime's transformer optimizer) as a recipe step: it chains before the ONNX
quantizers, records which fusions applied and the nodes each removed, and says so where none applies."""

from __future__ import annotations

from pathlib import Path

import pytest

from engines import catalog
from engines.methods.recipe import parse_recipe
from engines.passes import Format, plan
from engines.passes.onnx_passes import count_ops
from tests.conformance.contract import run_recipe
from tests.helpers import FAST, by_key, qbench_json


def test_fuse_chains_before_every_onnx_quantizer_and_only_onnxruntime_runs_it():
    ort, torch = catalog.RUNTIMES["onnxruntime"], catalog.RUNTIMES["torch"]
    for quant, last in (("dynamic-int8", "ort-dynamic-int8"), ("static-int8", "ort-static-int8"),
                        ("weight-int8", "ort-matmul-nbits-8"), ("int4", "ort-matmul-nbits-4")):
        chain = plan(parse_recipe(f"fuse+{quant}"), Format.TORCH, ort, "cpu")
        assert chain.names == ["export-onnx", "ort-fuse", last], (quant, chain)
    refused = plan(parse_recipe("fuse"), Format.TORCH, torch, "cpu")
    assert isinstance(refused, str) and "only onnxruntime" in refused


def test_a_graph_without_transformer_blocks_says_no_fusion_applies():
    fused = run_recipe("fuse", "onnxruntime")  # the contract's small MLP
    artifact = fused["artifact"]
    assert fused["top1"] == 1.0
    record = artifact.metrics["fusions"]
    assert record["applied"] == [] and record["operators"] == {}
    assert any(n.startswith("no transformer fusion applies to this graph") for n in artifact.notes), artifact.notes


@pytest.mark.slow
@pytest.mark.real_model
def test_fused_minilm_carries_the_fused_operators_and_lists_the_fusions(tmp_path):
    proc, payload = qbench_json("run", "--model", "all-MiniLM-L6-v2", "--methods", "fuse,fuse+dynamic-int8",
                                "--runtimes", "onnxruntime", "--db", str(tmp_path / "q.db"), *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = {r["label"]: r for r in payload["results"]}
    fused, quantized = table["fuse"], table["fuse+dynamic-int8"]
    assert {fused["status"], quantized["status"]} == {"ok"}, (fused["error"], quantized["error"])
    for result in (fused, quantized):  # the chained quantizer keeps the fusion record
        record = result["metrics"]["fusions"]
        assert record["operators"] == {"EmbedLayerNormalization": 1, "Attention": 6, "BiasGelu": 6,
                                       "SkipLayerNormalization": 12}, record["operators"]
        applied = {e["fusion"]: e for e in record["applied"]}
        assert applied["Attention"]["fused"] == {"Attention": 6} and applied["Attention"]["nodes_removed"] > 100
        assert record["nodes_after"] < record["nodes_before"] / 4
        assert any(n.startswith("fused (bert optimizer") for n in result["notes"]), result["notes"]
    ops = count_ops(Path(fused["artifact"]))
    assert ops["Attention"] == 6 and ops["SkipLayerNormalization"] == 12 and ops["EmbedLayerNormalization"] == 1
    assert "Softmax" not in ops and "Erf" not in ops
    q_ops = count_ops(Path(quantized["artifact"]))
    assert q_ops["QAttention"] == 6 and q_ops["MatMulInteger"] > 0, q_ops
    assert fused["agreement"]["cosine"] > 0.9999  # the same numbers, fewer nodes
    assert quantized["agreement"]["cosine"] >= 0.99
    assert by_key(payload["results"])  # keyed like every sweep
