"""``export --out`` into a folder holding the user's files: refused unless --force, and even then
only the export's own files are written; nothing it did not write is deleted."""

from __future__ import annotations

import pytest

from engines.export import ExportError, export_result
from tests.test_export import cli, stored_result


@pytest.fixture
def stored(tmp_path):
    db = tmp_path / "qbench.db"
    return db, stored_result(db, "digits-mlp", "fp32", runtime="onnxruntime")


def test_a_folder_with_the_users_files_is_refused_and_left_alone(tmp_path, stored):
    db, result_id = stored
    out = tmp_path / "deploy-here"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not written by qbench export .*notes.txt.*--force"):
        export_result(db, result_id, "onnx", out, validate=False)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    proc = cli("export", str(result_id), "--format", "onnx", "--out", str(out), "--no-validate", db=db)
    assert proc.returncode == 2 and "--force" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow  # a real export (the built-in model is trained once per session)
def test_force_and_a_re_export_write_only_their_own_files(tmp_path, stored):
    db, result_id = stored
    out = tmp_path / "deploy-here"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    export_result(db, result_id, "onnx", out, validate=False, force=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.onnx").is_file()
    theirs = out / "deploy" / "triton" / "model_repository" / "README.user"
    theirs.write_text("also mine")
    export_result(db, result_id, "onnx", out, validate=False)  # its own earlier export: no --force needed
    assert theirs.read_text() == "also mine" and (out / "notes.txt").read_text() == "mine"
    assert (out / "qbench.json").is_file()
