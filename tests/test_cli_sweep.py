"""The core loop from the command line, on the real built-in models, measured in real child
processes and stored in a real SQLite file."""

from __future__ import annotations

import csv
import io
import json
import platform

import pytest

from tests.helpers import FAST, by_key, qbench, qbench_json

ALL_METHODS = "fp32,fp16,weight-int8,dynamic-int8,static-int8,int4"
INT8 = ("weight-int8", "dynamic-int8", "static-int8")
# torch's CPU kernels for every core method exist on x86-64 (fbgemm, torchao); elsewhere (Arm's
# qnnpack) the int8 and int4 methods may be refused, with a reason, and fp32 / fp16 must still run.
TORCH_OK_HERE = (set(ALL_METHODS.split(",")) if platform.machine().lower() in ("x86_64", "amd64")
                 else {"fp32", "fp16"})
RESULT_KEYS = {"model", "method", "runtime", "device", "batch_size", "status", "error", "latency_ms",
               "throughput_per_s", "load_s", "peak_rss_mb", "size_mb", "accuracy", "agreement"}


@pytest.fixture(scope="module")
def mlp_sweep(tmp_path_factory):
    db = tmp_path_factory.mktemp("mlp") / "q.db"
    proc, payload = qbench_json(
        "run", "--model", "digits-mlp", "--methods", ALL_METHODS, "--runtimes", "torch,onnxruntime",
        "--batch-sizes", "1,32", "--db", str(db), *FAST,
    )
    return proc, payload, db


@pytest.mark.slow
def test_mlp_sweep_completes_with_every_onnx_method_ok(mlp_sweep):
    proc, payload, _ = mlp_sweep
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert payload["status"] == "finished"
    results = payload["results"]
    assert len(results) == 6 * 2 * 2
    for r in results:
        assert RESULT_KEYS <= set(r), r
        assert set(r["latency_ms"] or {}) >= {"p50", "p90", "p99", "mean", "std", "iqr"} or r["status"] != "ok"
    onnx = [r for r in results if r["runtime"] == "onnxruntime"]
    assert {r["status"] for r in onnx} == {"ok"}, [(r["method"], r["error"]) for r in onnx if r["status"] != "ok"]
    torch = [r for r in results if r["runtime"] == "torch"]
    must = [r for r in torch if r["method"] in TORCH_OK_HERE]
    assert {r["status"] for r in must} == {"ok"}, [(r["method"], r["error"]) for r in must if r["status"] != "ok"]
    for r in torch:  # elsewhere, a method not pinned runs or says why it cannot
        assert r["status"] == "ok" or (r["status"] == "unsupported" and r["error"]), (r["method"], r["error"])


@pytest.mark.slow  # shares the full digits-mlp sweep
def test_int8_variants_keep_accuracy_and_agree_with_fp32(mlp_sweep):
    _, payload, _ = mlp_sweep
    results = [r for r in payload["results"] if r["batch_size"] == 1]
    table = by_key(results)
    for runtime in ("onnxruntime", "torch"):
        fp32 = table[("fp32", runtime)]
        assert fp32["accuracy"] > 0.9
        for method in INT8:
            r = table[(method, runtime)]
            if runtime == "torch" and method not in TORCH_OK_HERE:
                continue  # unsupported on this machine's CPU (the test above checks it says why)
            assert r["status"] == "ok", (method, runtime, r["error"])
            assert r["accuracy"] >= fp32["accuracy"] - 0.02, (method, runtime, r["accuracy"])
            assert r["agreement"]["top1"] >= 0.95, (method, runtime, r["agreement"])
            assert r["agreement"]["cosine"] > 0.99


@pytest.mark.slow  # shares the full digits-mlp sweep
def test_onnx_artifacts_shrink_as_promised(mlp_sweep):
    _, payload, _ = mlp_sweep
    table = by_key([r for r in payload["results"] if r["batch_size"] == 1])
    fp32 = table[("fp32", "onnxruntime")]["size_mb"]
    for method in INT8:
        assert table[(method, "onnxruntime")]["size_mb"] <= 0.35 * fp32, method
    assert table[("int4", "onnxruntime")]["size_mb"] <= 0.25 * fp32
    assert 0.45 * fp32 <= table[("fp16", "onnxruntime")]["size_mb"] <= 0.55 * fp32


@pytest.mark.slow  # shares the full digits-mlp sweep
def test_every_result_records_its_measurements(mlp_sweep):
    _, payload, _ = mlp_sweep
    for r in payload["results"]:
        if r["status"] != "ok":
            continue
        lat = r["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        # --min-reps is shared by the rounds; rounds measured under load may be left out of the figures
        assert sum(x["latency"]["samples"] for x in r["rounds"]) >= 5
        assert r["throughput_per_s"] > 0 and r["load_s"] > 0 and r["peak_rss_mb"] > 50
        assert r["size_mb"] > 0 and r["config"]["version"] >= 1
    bs32 = by_key([r for r in payload["results"] if r["batch_size"] == 32])
    bs1 = by_key([r for r in payload["results"] if r["batch_size"] == 1])
    # a batch of 32 rows does more work per call than a batch of 1
    assert bs32[("fp32", "onnxruntime")]["latency_ms"]["p50"] > bs1[("fp32", "onnxruntime")]["latency_ms"]["p50"]


@pytest.mark.slow  # shares the full digits-mlp sweep
def test_run_stores_environment_and_results_command_returns_the_same_objects(mlp_sweep):
    _, payload, db = mlp_sweep
    proc = qbench("results", "--db", str(db), "--run", payload["run_id"], "--format", "json")
    assert proc.returncode == 0
    stored = json.loads(proc.stdout)
    assert [(r["method"], r["runtime"], r["batch_size"]) for r in stored] == \
        [(r["method"], r["runtime"], r["batch_size"]) for r in payload["results"]]
    assert stored[0]["latency_ms"] == payload["results"][0]["latency_ms"]
    runs = json.loads(qbench("runs", "--db", str(db), "--json").stdout)
    env = runs[0]["environment"]
    assert env["threads"] >= 1 and env["packages"]["onnxruntime"] and env["cpu"] and env["python"]
    rows = list(csv.DictReader(io.StringIO(qbench("results", "--db", str(db), "--format", "csv").stdout)))
    assert len(rows) == len(payload["results"]) and rows[0]["latency_p50_ms"]
    table = qbench("results", "--db", str(db), "--latest")
    assert "dynamic-int8" in table.stdout


@pytest.mark.slow
def test_cnn_static_int8_on_both_runtimes(tmp_path):
    proc, payload = qbench_json(
        "run", "--model", "digits-cnn", "--methods", "fp32,dynamic-int8,static-int8",
        "--runtimes", "torch,onnxruntime", "--db", str(tmp_path / "q.db"), *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = by_key(payload["results"])
    assert {r["status"] for r in payload["results"]} == {"ok"}, [(k, r["error"]) for k, r in table.items()]
    for runtime in ("onnxruntime", "torch"):
        fp32 = table[("fp32", runtime)]["accuracy"]
        for method in ("dynamic-int8", "static-int8"):
            r = table[(method, runtime)]
            assert r["accuracy"] >= fp32 - 0.02 and r["agreement"]["top1"] >= 0.95, (method, runtime)
    # ONNX static int8 quantizes the convolutions (QDQ around Conv), not only the Linear layer;
    # dynamic int8 leaves them float, saying so (run-time per-tensor scales wreck convolutions)
    assert any("convolutions kept float" in n for n in table[("dynamic-int8", "onnxruntime")]["notes"])
    assert any("QuantizeLinear" in n for n in table[("static-int8", "onnxruntime")]["notes"])
    assert table[("static-int8", "onnxruntime")]["size_mb"] <= 0.35 * table[("fp32", "onnxruntime")]["size_mb"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--model", "no-such-model", "--methods", "fp32"), "Known models: digits-mlp, digits-cnn"),
        (("--model", "digits-mlp", "--methods", "fp32,int3"), "valid: fp32, fp16, bf16, fuse, weight-int8"),
        (("--model", "digits-mlp", "--methods", "fp32", "--runtimes", "tensorrt"), "valid: torch, onnxruntime"),
        (("--model", "digits-mlp", "--methods", "fp32", "--devices", "tpu"), "valid: cpu, cuda, mps, gpu, ane"),
        (("--model", "digits-mlp", "--methods", "int4", "--set", "int4.group_size=48"), "group_size must be"),
        (("--model", "digits-mlp", "--methods", "int4", "--set", "int4.bits=3"), "no setting 'bits'"),
        (("--model", "digits-mlp", "--methods", "fp32", "--batch-sizes", "1,x"), "comma-separated integers"),
        (("--resume", "no-such-run",), "no run 'no-such-run'"),
    ],
)
def test_bad_arguments_exit_2_with_a_message_and_no_traceback(tmp_path, args, expected):
    proc = qbench("run", *args, "--db", str(tmp_path / "q.db"))
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_corrupt_database_is_reported_and_kept(tmp_path):
    db = tmp_path / "q.db"
    db.write_bytes(b"\x00garbage" * 512)
    proc = qbench("results", "--db", str(db))
    assert proc.returncode == 2 and "not a SQLite database" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert db.read_bytes() == b"\x00garbage" * 512


def test_catalog_commands_as_json():
    models = json.loads(qbench("models", "--json").stdout)
    assert {"digits-mlp", "digits-cnn"} <= {m["name"] for m in models}
    methods = {m["name"]: m for m in json.loads(qbench("methods", "--json").stdout)}
    core = ["fp32", "fp16", "bf16", "fuse", "weight-int8", "dynamic-int8", "static-int8", "int4"]
    assert list(methods)[:len(core)] == core and {"qat-int8", "mixed", "nf4", "palettize"} <= set(methods)
    assert methods["static-int8"]["needs_calibration"]
    assert methods["int4"]["settings"]["group_size"]["default"] == 64
    assert methods["int4"]["passes"]["torch"] == ["torchao-int4"]
    assert methods["int4"]["passes"]["onnxruntime"] == ["export-onnx", "ort-matmul-nbits-4"]
    assert methods["dynamic-int8"]["support"]["onnxruntime"]["cpu"] == "ok"
    devices = {d["name"]: d for d in json.loads(qbench("devices", "--json").stdout)}
    assert devices["cpu"]["present"]
    assert devices["ane"]["detail"]  # present, or the reason it is not


@pytest.mark.slow
def test_static_int8_calibration_methods_and_an_unsupported_combination(tmp_path):
    db = str(tmp_path / "q.db")
    proc, payload = qbench_json(
        "run", "--model", "digits-mlp", "--methods", "static-int8", "--runtimes", "onnxruntime,torch",
        "--set", "static-int8.calibration_method=entropy", "--set", "static-int8.calibration_samples=64",
        "--db", db, *FAST,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = by_key(payload["results"])
    onnx = table[("static-int8", "onnxruntime")]
    assert onnx["status"] == "ok" and onnx["config"]["calibration_method"] == "entropy"
    assert any("64 samples (entropy)" in n for n in onnx["notes"])
    assert onnx["agreement"]["top1"] >= 0.95
    torch = table[("static-int8", "torch")]
    assert torch["status"] == "unsupported" and "ONNX Runtime only" in torch["error"]


@pytest.mark.slow
def test_several_settings_of_one_method_in_one_run(tmp_path):
    db = tmp_path / "q.db"
    proc, payload = qbench_json("run", "--model", "digits-mlp", "--methods",
                                "int4,int4:group_size=128,int4:group_size=32", "--runtimes", "onnxruntime",
                                "--db", str(db), *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = payload["results"]
    assert [r["status"] for r in results] == ["ok"] * 3
    assert [r["label"] for r in results] == ["int4", "int4(g128)", "int4(g32)"]
    assert len({r["recipe_id"] for r in results}) == 3
    assert len({r["size_mb"] for r in results}) == 3  # the group size changes the number of scales stored
    assert all(r["passes"] == ["export-onnx", "ort-matmul-nbits-4"] for r in results)
    assert [r["config"]["group_size"] for r in results] == [64, 128, 32]
    table = qbench("results", "--db", str(db)).stdout
    assert "int4(g128)" in table and "int4(g32)" in table
    rows = list(csv.DictReader(io.StringIO(qbench("results", "--db", str(db), "--format", "csv").stdout)))
    assert [r["label"] for r in rows] == ["int4", "int4(g128)", "int4(g32)"]
