"""Export targets are a registry: a new target is one folder (or plugin module) plus its ``SPEC``.

Real parts: a plugin target written into a temporary package is found through ``$QBENCH_PLUGINS``
as any plugin is, and a stored result is exported through it (the real ONNX passes build the file,
ONNX Runtime validates it, the store keeps the validation); nothing in engines/export names it.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from engines.export import EXPORT_FORMATS, ExportError, export_result
from engines.export import targets as registry
from engines.export.targets import all_targets, export_target, implementation, read_metadata
from engines.export.targets.base import REQUIRED, ExportTarget
from engines.store import Store

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = textwrap.dedent('''
    """A made-up target: the ONNX file under another name, its metadata in a JSON file beside it."""
    import json
    import shutil
    from pathlib import Path

    from engines.export.build import apply_planned
    from engines.export.targets.base import ExportTarget, Exported

    SPEC = ExportTarget(name="qonnx", title="ONNX, renamed", filename="model.qonnx", runtime="onnxruntime",
                        packages=("onnxruntime",), extra="", validates_with="ONNX Runtime", module=__name__,
                        quick_start="python deploy/run.txt")


    def write(model, source, recipe, planned, target, work):
        artifact, passes = apply_planned(model, planned, work, SPEC.runtime)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact.path, target)
        return Exported(target, passes, ["written by the qonnx plugin"], {"quantization": "as planned"})


    def write_metadata(path, metadata):
        Path(str(path) + ".meta.json").write_text(json.dumps(metadata))


    def read_metadata(path):
        return json.loads(Path(str(path) + ".meta.json").read_text())


    def open_file(path, model):
        from engines.runtimes.ort.session import OnnxSession

        return OnnxSession(path, "cpu", threads=1)


    def templates(deploy, out_dir, report, model):
        (deploy / "run.txt").write_text("onnxruntime.InferenceSession('model.qonnx')\\n")
        return {"python": {"path": "deploy/run.txt", "run": "read it"}}
''')


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registry as it is, restored after the test (a plugin registered here stays here)."""
    monkeypatch.setattr(registry, "_TARGETS", dict(all_targets()))
    monkeypatch.setattr(registry, "_plugins_seen", set(registry._plugins_seen))
    return registry


def test_every_builtin_target_is_a_folder_with_the_whole_contract():
    folders = sorted(p.name for p in (ROOT / "engines/export/targets").iterdir()
                     if (p / "__init__.py").is_file())
    assert set(folders) == {"onnx", "tflite", "coreml", "mlx", "gguf"} <= set(EXPORT_FORMATS)
    for name, spec in all_targets().items():
        assert isinstance(spec, ExportTarget) and spec.name == name
        module = implementation(spec)  # imports no heavy library: those wait inside the functions
        assert all(callable(getattr(module, f)) for f in REQUIRED)
    assert export_target("coreml").recommends_device and export_target("tflite").planning_runtime().name == "litert"
    with pytest.raises(ExportError, match="unknown format 'nope'; valid: onnx"):
        export_target("nope")


def test_a_target_missing_a_function_is_refused_by_name(tmp_path, monkeypatch, fresh_registry):
    (tmp_path / "half_target.py").write_text(
        "from engines.export.targets.base import ExportTarget\n"
        "SPEC = ExportTarget(name='half', title='Half', filename='m', runtime='onnxruntime', packages=(), extra='',\n"
        "                    validates_with='-', module=__name__)\n"
        "def write(*a): pass\ndef open_file(*a): pass\ndef templates(*a): pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("QBENCH_PLUGINS", "half_target")
    with pytest.raises(TypeError, match="lacks write_metadata, read_metadata"):
        implementation("half")


def test_a_new_target_is_one_module_plus_registration(tmp_path, monkeypatch, fresh_registry):
    from test_export import stored_result

    (tmp_path / "qonnx_target.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("QBENCH_PLUGINS", "qonnx_target")
    import engines.export

    assert "qonnx" in engines.export.EXPORT_FORMATS  # the list the app and the CLI read includes it

    db = tmp_path / "qbench.db"
    result_id = stored_result(db, "digits-mlp", "fp32", runtime="torch")
    report = export_result(db, result_id, "qonnx", tmp_path / "out")

    out = tmp_path / "out"
    assert report["file"] == "model.qonnx" and (out / "model.qonnx").is_file()
    assert "written by the qonnx plugin" in report["notes"] and report["passes"]
    meta = read_metadata("qonnx", out / "model.qonnx")
    assert meta["qbench.format"] == "qonnx" and meta["qbench.source_result_id"] == str(result_id)
    v = report["validation"]
    assert v["validated"] and v["agrees"] and v["agreement_source"]["top1"] == 1.0, v["status"]
    readme = (out / "deploy" / "README.md").read_text()
    assert "python deploy/run.txt" in readme and (out / "deploy" / "run.txt").is_file()
    store = Store(db)
    try:
        stored = store.results(where="id = ?", params=[report["validation_result_id"]])[0]
    finally:
        store.close()
    assert stored["runtime"] == "onnxruntime" and stored["metrics"]["export"]["format"] == "qonnx"
    assert json.loads((out / "qbench.json").read_text())["format"] == "qonnx"


def test_export_dispatches_through_the_registry_never_by_spelling():
    lookups = re.compile(r"globals\(\)\[|getattr\([^)]*f\"|import_module\(f\"engines\.")
    offenders = [f"{p.relative_to(ROOT)}:{n}" for p in sorted((ROOT / "engines/export").rglob("*.py"))
                 for n, line in enumerate(p.read_text().splitlines(), 1) if lookups.search(line)]
    assert offenders == []


def test_the_cli_exports_to_a_plugin_target(tmp_path):
    import os
    import subprocess
    import sys

    from test_export import stored_result

    (tmp_path / "qonnx_target.py").write_text(PLUGIN)
    db = tmp_path / "qbench.db"
    result_id = stored_result(db, "digits-mlp", "fp32", runtime="torch")
    env = {**os.environ, "QBENCH_PLUGINS": "qonnx_target", "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-m", "qbench_tui", "--db", str(db), "export", str(result_id), "--format",
                           "qonnx", "--out", str(tmp_path / "out"), "--no-validate", "--json"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["format"] == "qonnx" and (tmp_path / "out" / "model.qonnx").is_file()
