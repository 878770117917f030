"""Model files given by path, measured for real: an ONNX file qbench did not produce, a torch
ExportedProgram, TorchScript, and a pickled module (only with --allow-pickle). Inputs are
generated from what each file declares; agreement is with the file's own fp32 outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engines.models import load_model, resolve_model
from tests.helpers import FAST, by_key, qbench, qbench_json

VOCAB, SEQ, DIM = 500, 16, 32


def make_text_classifier_onnx(path: Path, fixed_batch: int | None = None) -> Path:
    """A bag-of-embeddings classifier built node by node with onnx.helper (not by qbench):
    int64 ids -> Gather(500 x 32) -> ReduceMean -> MatMul+Add -> Relu -> MatMul -> 10 logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = {
        "emb": rng.standard_normal((VOCAB, DIM)).astype(np.float32),
        "w1": (rng.standard_normal((DIM, 64)) / 6).astype(np.float32),
        "b1": np.zeros(64, np.float32),
        "w2": (rng.standard_normal((64, 10)) / 8).astype(np.float32),
    }
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"], name="embed"),
        helper.make_node("ReduceMean", ["e"], ["pooled"], axes=[1], keepdims=0, name="pool"),
        helper.make_node("MatMul", ["pooled", "w1"], ["h0"], name="fc1"),
        helper.make_node("Add", ["h0", "b1"], ["h1"], name="bias1"),
        helper.make_node("Relu", ["h1"], ["h"], name="relu"),
        helper.make_node("MatMul", ["h", "w2"], ["logits"], name="fc2"),
    ]
    batch = fixed_batch or "batch"
    graph = helper.make_graph(
        nodes, "bag_of_embeddings",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, [batch, "seq"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 10])],
        initializer=[numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="hand-made")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_onnx_file_loader_generates_inputs_within_the_embedding_table(tmp_path):
    model = load_model(resolve_model(str(make_text_classifier_onnx(tmp_path / "clf.onnx")), {"seq_len": SEQ}))
    ids = model.eval_inputs["ids"]
    assert model.task == "generic" and model.module is None and model.onnx_source is not None
    assert ids.dtype == np.int64 and ids.shape[1] == SEQ
    assert ids.min() >= 0 and ids.max() < VOCAB and len(np.unique(ids)) > 50
    assert model.inputs[0].shape == ("batch", "seq") and model.fixed_batch is None
    assert model.details["producer"].startswith("hand-made")


def test_onnx_file_sweep_on_onnxruntime(tmp_path):
    path = make_text_classifier_onnx(tmp_path / "clf.onnx")
    proc, payload = qbench_json("run", "--model", str(path), "--methods", "fp32,dynamic-int8",
                                "--runtimes", "onnxruntime,torch", "--batch-sizes", "1,8",
                                "--db", str(tmp_path / "q.db"), *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = payload["results"]
    ok = [r for r in results if r["runtime"] == "onnxruntime"]
    assert {r["status"] for r in ok} == {"ok"}, [(r["method"], r["error"]) for r in ok]
    table = by_key([r for r in results if r["batch_size"] == 1])
    fp32, dyn = table[("fp32", "onnxruntime")], table[("dynamic-int8", "onnxruntime")]
    assert fp32["model"] == "clf" and fp32["accuracy"] is None  # no labels: agreement only
    assert fp32["agreement"]["cosine"] == pytest.approx(1.0, abs=1e-6)
    assert dyn["agreement"]["cosine"] > 0.98 and dyn["agreement"]["top1"] > 0.8
    assert dyn["size_mb"] < 0.4 * fp32["size_mb"]  # the embedding Gather is quantized too
    # the torch runtime cannot run an ONNX file, and says so
    torch_rows = [r for r in results if r["runtime"] == "torch"]
    assert {r["status"] for r in torch_rows} == {"unsupported"}
    assert "ONNX" in torch_rows[0]["error"]


def test_onnx_file_with_a_fixed_batch_runs_at_that_batch_only(tmp_path):
    path = make_text_classifier_onnx(tmp_path / "b1.onnx", fixed_batch=1)
    proc, payload = qbench_json("run", "--model", str(path), "--methods", "fp32", "--runtimes", "onnxruntime",
                                "--batch-sizes", "1,4", "--db", str(tmp_path / "q.db"), *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = {r["batch_size"]: r for r in payload["results"]}
    assert status[1]["status"] == "ok"
    assert status[4]["status"] == "unsupported" and "fixes the batch size at 1" in status[4]["error"]


def _mlp():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(20, 64), torch.nn.ReLU(), torch.nn.Linear(64, 5)).eval()


@pytest.mark.slow
def test_exported_program_sweep(tmp_path):
    import torch

    program = torch.export.export(_mlp(), (torch.randn(2, 20),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    path = tmp_path / "mlp.pt2"
    torch.export.save(program, str(path))
    spec = resolve_model(str(path))
    assert spec.extra["format"] == "pt2"
    proc, payload = qbench_json("run", "--model", str(path), "--methods", "fp32,dynamic-int8",
                                "--runtimes", "onnxruntime", "--batch-sizes", "1,4",
                                "--db", str(tmp_path / "q.db"), *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {r["status"] for r in payload["results"]} == {"ok"}
    dyn = by_key(payload["results"])[("dynamic-int8", "onnxruntime")]
    assert dyn["agreement"]["cosine"] > 0.9  # random weights and inputs: a loose bound


def test_torchscript_and_exported_program_loaders(tmp_path):
    import torch

    from engines.passes import onnx_passes

    scripted = tmp_path / "mlp.ts.pt"
    torch.jit.trace(_mlp(), torch.randn(2, 20)).save(str(scripted))
    spec = resolve_model(str(scripted))
    assert spec.extra["format"] == "torchscript"  # a TorchScript zip is not treated as a pickle
    model = load_model(spec)
    assert model.inputs[0].shape == ("batch", 20) and model.eval_inputs["input"].dtype == np.float32
    with torch.inference_mode():
        out = model.module(torch.from_numpy(model.eval_inputs["input"]))
    assert out.shape == (len(model.eval_inputs["input"]), 5)
    onnx_path = onnx_passes.export_fp32(model, tmp_path)  # the ONNX route works from TorchScript
    assert onnx_path.exists()

    static = tmp_path / "static.pt2"  # exported without a dynamic batch: batch 2 only
    torch.export.save(torch.export.export(_mlp(), (torch.randn(2, 20),)), str(static))
    model = load_model(resolve_model(str(static)))
    assert model.fixed_batch == 2 and len(model.eval_inputs["input"]) % 2 == 0


def test_pickled_module_needs_allow_pickle(tmp_path):
    import torch

    path = tmp_path / "mlp.pth"
    torch.save(_mlp(), str(path))
    refused = qbench("run", "--model", str(path), "--methods", "fp32", "--db", str(tmp_path / "q.db"))
    assert refused.returncode == 2 and "--allow-pickle" in refused.stderr and "Traceback" not in refused.stderr
    proc, payload = qbench_json("run", "--model", str(path), "--allow-pickle", "--methods", "fp32,dynamic-int8",
                                "--runtimes", "torch", "--db", str(tmp_path / "q.db"), *FAST)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {r["status"] for r in payload["results"]} == {"ok"}, payload["results"]


def test_a_state_dict_is_not_a_model(tmp_path):
    import torch

    path = tmp_path / "weights.pt"
    torch.save(_mlp().state_dict(), str(path))
    with pytest.raises(ValueError, match="state_dict"):
        load_model(resolve_model(str(path), {"allow_pickle": True}))


def test_a_damaged_onnx_file_that_passes_the_quick_check_fails_as_a_result(tmp_path):
    """Corruption inside the graph is only found when ONNX parses it: a failed result, with the
    reason, rather than a crash of the sweep."""
    path = make_text_classifier_onnx(tmp_path / "bad.onnx")
    data = bytearray(path.read_bytes())
    start = data.find(b"bag_of_embeddings")
    data[start - 40 : start - 20] = b"\xff" * 20  # garbage inside the graph message
    path.write_bytes(bytes(data))
    proc = qbench("run", "--model", str(path), "--methods", "fp32", "--runtimes", "onnxruntime",
                  "--db", str(tmp_path / "q.db"), "--json", "-", *FAST)
    assert "Traceback" not in proc.stderr
    if proc.returncode == 2:  # the quick check caught it after all: also a clear error
        return
    assert proc.returncode == 1, proc.stderr[-2000:]
    (result,) = json.loads(proc.stdout)["results"]
    assert result["status"] == "failed" and result["error"]
    assert "Traceback" not in result["error"]
