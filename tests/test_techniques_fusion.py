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
    # 32 tokens a row, as test_real_minilm's sweep: the run's workers share that fp32 ONNX export
    proc, payload = qbench_json("run", "--model", "all-MiniLM-L6-v2", "--methods", "fuse,fuse+dynamic-int8",
                                "--seq-len", "32", "--runtimes", "onnxruntime", "--db", str(tmp_path / "q.db"), *FAST)
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


def _ffn_graph(path: Path) -> None:
    """x → MatMul(up) → GELU (erf form) → MatMul(down) → y: the down-projection reads the GELU."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 16)).astype(np.float32), "w_up"),
             numpy_helper.from_array(rng.normal(size=(16, 8)).astype(np.float32), "w_down"),
             numpy_helper.from_array(np.array(2 ** -0.5, np.float32), "r2"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one"),
             numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    nodes = [helper.make_node("MatMul", ["x", "w_up"], ["h"], name="up"),
             helper.make_node("Mul", ["h", "r2"], ["hs"], name="scale"),
             helper.make_node("Erf", ["hs"], ["e"], name="erf"),
             helper.make_node("Add", ["e", "one"], ["e1"], name="add1"),
             helper.make_node("Mul", ["h", "e1"], ["g0"], name="mul1"),
             helper.make_node("Mul", ["g0", "half"], ["g"], name="mul2"),
             helper.make_node("MatMul", ["g", "w_down"], ["y"], name="down")]
    graph = helper.make_graph(nodes, "ffn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_static_int8_finds_the_matmuls_a_gelu_feeds(tmp_path):
    from engines.methods.int8 import GeluInputs, StaticInt8Config
    from engines.passes.onnx_outliers import gelu_fed_matmuls

    _ffn_graph(tmp_path / "ffn.onnx")
    assert gelu_fed_matmuls(tmp_path / "ffn.onnx") == ["down"]  # not the up-projection, which reads x
    assert StaticInt8Config().gelu_inputs is GeluInputs.DYNAMIC
    old = StaticInt8Config.upgrade({"calibration_method": "minmax"}, 3)  # stored before: all static
    assert old["gelu_inputs"] == "int8"
