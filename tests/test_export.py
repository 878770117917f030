"""qbench export: real models, real converters and runtimes, a real SQLite store, real HTTP on loopback.

A stored result is made the way a sweep stores one (a run with its request, a result with its
recipe), without timing anything: the export rebuilds the variant from its recipe, so what is
tested is the export itself. One sweep-made result checks the measured-file path.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engines.core.schema import Result
from engines.export import EXPORT_FORMATS, ExportError, export_result
from engines.export.metadata import read as read_metadata
from engines.methods.recipe import parse_recipe
from engines.store import Store

ROOT = Path(__file__).resolve().parents[1]


def stored_result(db: Path, model: str, spec: str, runtime: str = "torch", **figures) -> int:
    """A run and one ok result for ``model`` × ``spec`` on ``runtime``, as a sweep stores them."""
    from engines.bench.runner import new_run_id

    recipe = parse_recipe(spec)
    store = Store(db)
    try:
        run_id = new_run_id()
        store.create_run(run_id, model, {"model": model, "model_options": {}}, {}, source="test")
        store.add_result(run_id, Result(
            model=model, method=recipe.method, runtime=runtime, device="cpu", batch_size=1, recipe_id=recipe.id,
            label=recipe.label, recipe=recipe.to_list(), config=recipe.to_list()[0]["config"],
            latency_ms={"p50": figures.get("p50", 0.1), "p99": 0.2}, size_mb=figures.get("size_mb", 0.1),
            accuracy=figures.get("accuracy", 0.98), agreement={"top1": 1.0, "cosine": 1.0, "sqnr_db": 40.0}))
        store.set_run_status(run_id, "finished")
        return store.results(run_id)[-1]["id"]
    finally:
        store.close()


def cli(*args: str, db: Path) -> subprocess.CompletedProcess:
    code = "from qbench_tui.cli import main; raise SystemExit(main())"
    return subprocess.run([sys.executable, "-c", code, "--db", str(db), *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def cnn_static_onnx(tmp_path_factory):
    """digits-cnn static-int8 exported to ONNX (shared by the ONNX and template tests)."""
    tmp = tmp_path_factory.mktemp("cnn-onnx")
    db = tmp / "qbench.db"
    result_id = stored_result(db, "digits-cnn", "static-int8")
    report = export_result(db, result_id, "onnx", tmp / "out")
    return db, tmp / "out", report, result_id


def test_onnx_export_keeps_qdq_metadata_and_validates(cnn_static_onnx):
    db, out, report, result_id = cnn_static_onnx
    assert (out / "model.onnx").is_file()
    assert report["passes"] == ["export-onnx", "ort-static-int8"]
    assert report["facts"]["quantized_ops"].get("QuantizeLinear", 0) > 0  # QDQ kept
    # the metadata reads back from inside the file, through ONNX Runtime
    meta = read_metadata("onnx", out / "model.onnx")
    assert meta["qbench.method"] == "static-int8" and meta["qbench.bits"] == "8"
    assert meta["qbench.source_model"] == "digits-cnn" and meta["qbench.source_model_hash"].startswith("sha256:")
    assert "minmax" in meta["qbench.calibration"].lower()
    assert json.loads(meta["qbench.recipe"])[0]["method"] == "static-int8"
    assert json.loads(meta["qbench.figures"])["latency_p50_ms"] == 0.1
    assert meta["qbench.qbench_version"]
    v = report["validation"]
    assert v["validated"] and v["agrees"], v["status"]
    assert v["agreement_source"]["top1"] >= 0.99 and v["agreement_fp32"]["top1"] >= 0.99
    assert v["accuracy"] > 0.9 and v["latency_ms"]["p50"] > 0
    # side-cars
    side = json.loads((out / "qbench.json").read_text())
    assert side["metadata"] == meta | {k: v for k, v in side["metadata"].items() if k not in meta}
    assert json.loads((out / "validation.json").read_text())["agrees"] is True
    # the validation is a result of its own, on the format's runtime
    store = Store(db)
    try:
        stored = store.results(where="id = ?", params=[report["validation_result_id"]])[0]
        assert stored["runtime"] == "onnxruntime" and stored["status"] == "ok"
        assert stored["metrics"]["export"]["source_result_id"] == result_id
        assert store.get_run(stored["run_id"])["source"] == "export"
    finally:
        store.close()


def test_triton_config_has_the_files_real_io(cnn_static_onnx):
    import onnxruntime as ort

    _, out, report, _ = cnn_static_onnx
    configs = list((out / "deploy" / "triton" / "model_repository").glob("*/config.pbtxt"))
    assert len(configs) == 1
    text = configs[0].read_text()
    check_triton_config(text)
    assert (configs[0].parent / "1" / "model.onnx").is_file()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for value in [*session.get_inputs(), *session.get_outputs()]:
        assert f'name: "{value.name}"' in text
        dims = ", ".join(str(d) if isinstance(d, int) else "-1" for d in value.shape[1:])
        assert f"dims: [ {dims} ]" in text
    assert "data_type: TYPE_FP32" in text and 'platform: "onnxruntime_onnx"' in text


def check_triton_config(text: str) -> None:
    """A strict structural check of a config.pbtxt (tritonclient's ModelConfig parser is not
    installable next to protobuf 7): balanced blocks, known top-level fields, every tensor entry
    with exactly name, data_type and dims, and Triton's data type names."""
    import re

    assert text.count("{") == text.count("}") and text.count("[") == text.count("]")
    top = re.findall(r"^([a-z_]+)\s*[:\[{]", text, flags=re.M)
    assert set(top) <= {"name", "platform", "max_batch_size", "input", "output", "instance_group",
                        "dynamic_batching"}, top
    entries = re.findall(r"\{\s*name: \"[^\"]+\"\s*data_type: (\w+)\s*dims: \[ ([-\d, ]+) \]\s*\}", text)
    assert len(entries) == text.count("data_type:") >= 2
    for data_type, dims in entries:
        assert data_type.startswith("TYPE_")
        assert all(int(d) == -1 or int(d) > 0 for d in dims.split(","))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_fastapi_service_answers_with_the_validated_outputs(cnn_static_onnx):
    import httpx
    import numpy as np
    import onnxruntime as ort

    _, out, _, _ = cnn_static_onnx
    folder = out / "deploy" / "fastapi"
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port)],
                            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "the service did not start within 60 s"
                time.sleep(0.3)
        assert health.json()["metadata"]["qbench.method"] == "static-int8"
        body = json.loads((out / "deploy" / "example_request.json").read_text())
        rows = np.asarray(body["inputs"]["input"], dtype=np.float32)
        answer = httpx.post(f"{base}/predict", json=body, timeout=10).json()
        expected = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"]).run(
            None, {"input": rows})[0]
        np.testing.assert_allclose(np.asarray(answer["outputs"]["logits"]), expected, rtol=1e-5, atol=1e-5)
        assert answer["top1"] == expected.argmax(-1).tolist()
        bad = httpx.post(f"{base}/predict", json={"inputs": {"input": [[1.0, 2.0]]}}, timeout=10)
        assert bad.status_code == 422
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert 'qbench_requests_total{status="200"} 1.0' in metrics
        assert 'qbench_requests_total{status="422"} 1.0' in metrics
        assert "qbench_request_latency_seconds_bucket" in metrics and 'method="static-int8"' in metrics
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=10)


def test_export_errors_are_one_line_exit_2(tmp_path):
    db = tmp_path / "qbench.db"
    result_id = stored_result(db, "digits-mlp", "fp32")
    bad_id = cli("export", "999", "--format", "onnx", "--out", str(tmp_path / "x"), db=db)
    assert bad_id.returncode == 2 and bad_id.stderr.strip().count("\n") == 0, bad_id.stderr
    assert "no result with id 999" in bad_id.stderr
    bad_format = cli("export", str(result_id), "--format", "tensorrt", db=db)
    assert bad_format.returncode == 2 and "unknown format 'tensorrt'" in bad_format.stderr
    assert bad_format.stderr.strip().count("\n") == 0
    assert not (tmp_path / "x").exists()


def test_missing_extra_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from qbench_tui.cli import main

    db = tmp_path / "qbench.db"
    result_id = stored_result(db, "digits-mlp", "fp32")
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # importlib.util.find_spec then finds nothing
    code = main(["--db", str(db), "export", str(result_id), "--format", "tflite", "--out", str(tmp_path / "t")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "uv sync --extra tflite" in err


def test_a_format_that_cannot_express_the_method_offers_the_nearest(tmp_path):
    db = tmp_path / "qbench.db"
    result_id = stored_result(db, "digits-mlp", "nf4")
    with pytest.raises(ExportError, match="nearest it can express is int4: add --recipe int4"):
        export_result(db, result_id, "onnx", tmp_path / "out")


def test_best_of_a_run_picks_the_fastest_that_keeps_quality(tmp_path):
    from engines.export import pick_best

    results = [
        {"id": 1, "status": "ok", "method": "fp32", "latency_ms": {"p50": 1.0}, "agreement": {"top1": 1.0}},
        {"id": 2, "status": "ok", "method": "int4", "latency_ms": {"p50": 0.2}, "agreement": {"top1": 0.5}},
        {"id": 3, "status": "ok", "method": "dynamic-int8", "latency_ms": {"p50": 0.5}, "agreement": {"top1": 0.995},
         "size_mb": 0.2},
        {"id": 4, "status": "failed", "method": "static-int8"},
    ]
    assert pick_best(results, "latency")["id"] == 3
    assert pick_best(results, "size")["id"] == 3
    assert set(EXPORT_FORMATS) == {"onnx", "tflite", "coreml", "mlx"}
