"""DVC versions of exported variants: real dvc, a local remote, no git, and the real CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import needs

# Found, not imported, at collection (every xdist worker collects every module).
pytestmark = [needs("dvc")]


def _store_with_result(db: Path) -> int:
    from engines.store import Result, Store

    store = Store(db)
    store.create_run("r1", "digits-mlp", {}, {}, "test")
    store.add_result("r1", Result(model="digits-mlp", method="fp32", runtime="onnxruntime", device="cpu",
                                  batch_size=1, latency_ms={"p50": 0.1}, accuracy=0.97))
    result_id = store.results()[0]["id"]
    store.close()
    return result_id


@pytest.fixture
def cli(monkeypatch, capsys):
    """The real command line, in this process (a subprocess per call costs seconds of imports)."""
    from qbench_tui.cli import main

    def run(home: Path, *args: str) -> subprocess.CompletedProcess:
        monkeypatch.setenv("QBENCH_HOME", str(home))
        capsys.readouterr()
        code = main(list(args))
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    return run


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_version_then_restore_brings_back_the_exact_bytes_of_an_earlier_export(tmp_path: Path, cli):
    """Two versions of one result's export; the repository and its cache are deleted; restoring the
    first from the remote gives its bytes back, hash checked, through the CLI."""
    home = tmp_path / "home"
    home.mkdir()
    result_id = _store_with_result(home / "qbench.db")
    export = tmp_path / "export"
    (export / "deploy" / "fastapi").mkdir(parents=True)
    (export / "model.onnx").write_bytes(bytes(range(256)) * 40)
    (export / "deploy" / "fastapi" / "app.py").write_text("print('v1')\n")
    first = _tree(export)

    out = cli(home, "version", str(result_id), "--dir", str(export), "--json")
    assert out.returncode == 0, out.stderr
    v1 = json.loads(out.stdout)
    assert v1["md5"].endswith(".dir") and v1["nfiles"] == 2
    (export / "model.onnx").write_bytes(b"a different model")
    out = cli(home, "version", str(result_id), "--dir", str(export), "--json")
    v2 = json.loads(out.stdout)
    assert v2["md5"] != v1["md5"]

    again = cli(home, "version", str(result_id), "--dir", str(export), "--json")  # unchanged bytes
    assert again.returncode == 0 and json.loads(again.stdout)["id"] == v2["id"]
    listed = json.loads(cli(home, "versions", str(result_id), "--json").stdout)
    assert [v["id"] for v in listed] == [v2["id"], v1["id"]]

    shutil.rmtree(home / "dvc" / "repo")  # only the remote and the store remain
    restored = tmp_path / "restored"
    out = cli(home, "restore", f"v{v1['id']}", "--out", str(restored), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["verified"] and report["md5"] == v1["md5"]
    assert _tree(restored) == first
    # A result id restores its newest version, in the repository's workspace.
    report = json.loads(cli(home, "restore", str(result_id), "--json").stdout)
    assert Path(report["path"], "model.onnx").read_bytes() == b"a different model"


def test_restore_refuses_bytes_that_do_not_match_the_stored_hash(tmp_path: Path):
    from engines.ops.versioning import VersionError, restore_version, version_directory

    src = tmp_path / "src"
    src.mkdir()
    (src / "model.onnx").write_bytes(b"weights")
    version = version_directory(src, "result-1/onnx", tmp_path / "repo", str(tmp_path / "remote"))
    # Corrupt the object in both the cache and the remote: DVC would hand back the wrong bytes.
    for root in (tmp_path / "repo" / ".dvc" / "cache", tmp_path / "remote"):
        for obj in root.rglob("*"):
            if obj.is_file() and not obj.name.endswith(".dir"):
                obj.chmod(0o644)
                obj.write_bytes(b"tampered")
    shutil.rmtree(tmp_path / "repo" / "qbench")
    with pytest.raises(VersionError, match="hashes to|could not restore"):
        restore_version(version, out=tmp_path / "out")


def test_a_users_own_repository_and_bad_references(tmp_path: Path, cli):
    home = tmp_path / "home"
    home.mkdir()
    result_id = _store_with_result(home / "qbench.db")
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.onnx").write_bytes(b"x")
    mine, remote = tmp_path / "my-dvc", tmp_path / "my-remote"
    out = cli(home, "version", str(result_id), "--dir", str(export), "--dvc-repo", str(mine),
               "--dvc-remote", str(remote), "--json")
    assert out.returncode == 0, out.stderr
    assert (mine / ".dvc").is_dir() and any(remote.rglob("*")) and not (home / "dvc").exists()
    for args, needle in ((("restore", "v999"), "no version"), (("version", "abc"), "not a result id"),
                         (("version", "999", "--dir", str(export)), "no result 999"),
                         (("version", str(result_id), "--dir", str(tmp_path / "none")), "not a directory")):
        bad = cli(home, *args)
        assert bad.returncode == 2 and needle in bad.stderr and "Traceback" not in bad.stderr
