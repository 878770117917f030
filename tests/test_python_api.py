"""The Python API (engines.api): typed names that match the registries, the same request the CLI
builds, results as typed objects / JSON / a DataFrame equal to `qbench results --json`, the
recommendation `qbench recommend --json` gives, and the documented example run as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import qbench

from engines import api, catalog
from engines.core.schema import Result
from engines.devices import device_names
from engines.store import Store

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python-api.md"


def test_typed_names_are_the_registered_ones():
    assert {m.value for m in api.Method} - {"auto"} == set(catalog.METHODS)
    assert {r.value for r in api.Runtime} == set(catalog.RUNTIMES)
    assert {t.value for t in api.Target} - {"auto"} == set(device_names())


def test_typed_names_and_strings_build_the_same_request():
    typed = api.prepare("digits-mlp", methods=[api.Method.FP32, api.Method.INT4], runtimes=api.Runtime.ONNXRUNTIME,
                        devices=[api.Target.CPU], method_settings={api.Method.INT4: {"group_size": 32}},
                        min_time=0.1, repeat=1)
    plain = api.prepare("digits-mlp", methods=["fp32", "int4"], runtimes=["onnxruntime"], devices="cpu",
                        method_settings={"int4": {"group_size": 32}}, min_time=0.1, repeat=1)
    assert typed.request == plain.request
    assert [r.label for r in typed.request.methods] == ["fp32", "int4(g32)"] and typed.request.measure.repeat == 1
    assert typed.request.to_dict()["methods"] == ["fp32", "int4"]  # stored as text against its settings
    assert not typed.choose_device


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"model": "no-such-model", "methods": ["fp32"]}, "no-such-model"),
    ({"model": "digits-mlp", "methods": ["fp32"], "runtimes": ["tensorrt"]}, "unknown runtime"),
    ({"model": "digits-mlp", "methods": ["fp32"], "devices": ["tpu"]}, "unknown device"),
    ({"model": "digits-mlp", "methods": ["int9"]}, "int9"),
    ({"model": "digits-mlp", "methods": ["fp32"], "min_tme": 1}, "unknown setting"),
    ({"model": "digits-mlp", "methods": ["int4"], "method_settings": {"int4": {"group_size": "x"}}}, "int4"),
])
def test_bad_names_are_one_clear_error(kwargs, message):
    model = kwargs.pop("model")
    with pytest.raises(api.ApiError, match=re.escape(message)):
        api.prepare(model, **kwargs)


def test_the_cli_refuses_what_the_api_refuses(tmp_path):
    """`qbench run` builds its request with api.prepare: the same message, as a usage error."""
    with pytest.raises(api.ApiError) as err:
        api.prepare("digits-mlp", methods=["fp32"], runtimes=["tensorrt"])
    proc = qbench("run", "--model", "digits-mlp", "--methods", "fp32", "--runtimes", "tensorrt",
                  "--db", str(tmp_path / "q.db"), timeout=120)
    assert proc.returncode == 2 and str(err.value) in proc.stderr, proc.stderr


def _filled(path: Path) -> Path:
    store = Store(path)
    store.create_run("r1", "digits-mlp", {}, {}, "cli")
    for method, p50, top1 in (("fp32", 1.0, 1.0), ("dynamic-int8", 0.5, 0.995), ("int4", 0.4, 0.9)):
        store.add_result("r1", Result(model="digits-mlp", method=method, runtime="onnxruntime", device="cpu",
                                      batch_size=1, recipe_id=method, label=method,
                                      recipe=[{"method": method, "config": {}}], latency_ms={"p50": p50},
                                      size_mb=1.0, accuracy=top1 - 0.05, agreement={"top1": top1}))
    store.set_run_status("r1", "finished")
    store.close()
    return path


def test_results_are_typed_and_agree_with_the_cli(tmp_path):
    db = _filled(tmp_path / "q.db")
    found = api.results(db, run_id="r1")
    assert len(found) == 3 and all(isinstance(r, Result) for r in found)
    assert [r.label for r in found] == ["fp32", "dynamic-int8", "int4"]
    proc = qbench("results", "--run", "r1", "--format", "json", "--db", str(db), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(found.to_json()) == json.loads(proc.stdout)
    assert [r.label for r in api.results(db, latest=True, limit=2)] == ["dynamic-int8", "int4"]
    assert [r.label for r in api.results(db, method=api.Method.INT4)] == ["int4"]
    frame = found.to_pandas()
    assert list(frame["label"]) == ["fp32", "dynamic-int8", "int4"]
    assert list(frame["latency_ms.p50"]) == [1.0, 0.5, 0.4]
    with pytest.raises(api.ApiError, match="unknown filter"):
        api.results(db, modle="digits-mlp")
    with pytest.raises(api.ApiError, match="no run"):
        api.results(db, run_id="r9")


def test_recommend_is_what_the_cli_recommends(tmp_path):
    db = _filled(tmp_path / "q.db")
    rec = api.recommend("digits-mlp", db=db)
    assert rec["best"]["label"] == "dynamic-int8" and "digits-mlp" in rec["pool"]
    proc = qbench("recommend", "--model", "digits-mlp", "--json", "--db", str(db), timeout=300)
    assert proc.returncode == 0, proc.stderr
    cli = json.loads(proc.stdout)
    assert (cli["best"], cli["frontier"], cli["pool"]) == (rec["best"], rec["frontier"], rec["pool"])
    with pytest.raises(api.ApiError, match="no stored results"):
        api.recommend("digits-cnn", db=db)


def test_importing_the_api_stays_light():
    code = "import engines.api, sys; print(sorted({m.split('.')[0] for m in sys.modules}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    loaded = set(json.loads(out.stdout.replace("'", '"')))
    assert not loaded & {"torch", "numpy", "onnxruntime", "pandas", "textual"}


@pytest.mark.slow
def test_the_documented_example_runs(tmp_path):
    """docs/python-api.md's example, run as written (a real sweep of digits-mlp)."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks, "docs/python-api.md has no python example"
    proc = subprocess.run([sys.executable, "-c", "\n".join(blocks)], check=False, capture_output=True, text=True, cwd=ROOT,
                          timeout=900, env={**os.environ, "QBENCH_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert " finished" in proc.stdout and "pooled: run " in proc.stdout, proc.stdout
    assert "latency_ms.p50" in proc.stdout
