"""Version exported variants with DVC, and restore any version byte for byte. Works without git.

Without git a DVC repository has no history: the ``.dvc`` file (its ``outs[0].md5``, a ``.dir``
hash of the directory's manifest) is the only handle on a version. qbench stores that text with
the result (table ``versions``), so restoring writes it back and pulls from the remote; the
restored directory's hash is recomputed and compared before it is declared restored.

DVC is imported inside the functions (about 0.5 s): never at the app's start.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import shutil
from pathlib import Path
from typing import Any

REMOTE_NAME = "qbench"  # the remote qbench adds; a user's repository keeps its own as default
WORKSPACE = "qbench"  # folder of the repository's workspace that holds tracked exports


class VersionError(Exception):
    """Versioning or restoring failed; the message says why."""


def _quiet_dvc() -> None:
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("DVC_NO_UPDATER", "1")


def _silenced(fn):
    """DVC prints to stdout ("Initialized DVC repository.", progress): keep it off the CLI's
    output, which may be JSON."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with contextlib.redirect_stdout(io.StringIO()):
            return fn(*args, **kwargs)
    return wrapper


def _open_repo(root: Path, remote: str | None):
    """Open (or initialise without git) the repository at ``root``; add ``remote`` as remote
    ``qbench`` (the default one in a repository without a default). Returns (repo, remote name)."""
    _quiet_dvc()
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        if not (root / ".dvc").is_dir():
            root.mkdir(parents=True, exist_ok=True)
            Repo.init(str(root), no_scm=not (root / ".git").exists(), force=False).close()
        repo = Repo(str(root))
        with repo.config.edit() as conf:
            conf["core"]["analytics"] = False
            conf["core"]["check_update"] = False
            if remote:
                conf["remote"][REMOTE_NAME] = {"url": remote}
                conf["core"].setdefault("remote", REMOTE_NAME)
        default = repo.config["core"].get("remote")
    except DvcException as exc:
        raise VersionError(f"DVC repository {root}: {exc}") from None
    name = REMOTE_NAME if remote else default
    if not name:
        repo.close()
        raise VersionError(f"DVC repository {root} has no default remote; give one (--dvc-remote or QBENCH_DVC_REMOTE)")
    return repo, name


def directory_md5(path: Path) -> str:
    """DVC's hash of a directory (``<md5 of its manifest>.dir``), computed without a repository."""
    import tempfile

    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db.local import LocalHashFileDB
    from dvc_objects.fs.local import LocalFileSystem

    fs = LocalFileSystem()
    with tempfile.TemporaryDirectory(prefix="qbench-md5-") as scratch:
        _, _, obj = build(LocalHashFileDB(fs, scratch), str(path), fs, "md5", dry_run=True)
    return str(obj.hash_info.value)


@_silenced
def version_directory(source: Path, name: str, repo_root: Path, remote: str | None) -> dict[str, Any]:
    """Track a copy of ``source`` as ``qbench/<name>`` in the repository, push it to its remote, and
    return the version: md5, size, nfiles, the ``.dvc`` text, the workspace path, repo and remote."""
    source = Path(source).resolve()
    if not source.is_dir() or not any(source.iterdir()):
        raise VersionError(f"{source} is not a directory with files to version")
    repo_root = Path(repo_root).expanduser().resolve()
    target = repo_root / WORKSPACE / name
    repo, remote_name = _open_repo(repo_root, remote)
    from dvc.exceptions import DvcException

    try:
        if target != source:
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(source, target)
        try:
            stages = repo.add(str(target))
            out = stages[0].outs[0]
            dvcfile = Path(stages[0].path)
            repo.push(targets=[str(dvcfile)], remote=remote_name)
        except DvcException as exc:
            raise VersionError(f"dvc could not version {source}: {exc}") from None
        remote_url = repo.config["remote"].get(remote_name, {}).get("url", "")
        return {
            "md5": str(out.hash_info.value), "size": out.meta.size, "nfiles": out.meta.nfiles,
            "dvcfile": dvcfile.read_text(encoding="utf-8"), "path": str(target.relative_to(repo_root)),
            "repo": str(repo_root), "remote": remote_url, "source": str(source),
        }
    finally:
        repo.close()


@_silenced
def restore_version(version: dict[str, Any], out: Path | None = None, repo_root: Path | None = None,
                    remote: str | None = None) -> dict[str, Any]:
    """Bring back the exact directory of ``version`` (a row of table ``versions``): its ``.dvc`` text
    is written back and pulled (from the local cache, else the remote), then its hash is checked.
    With ``out`` the directory is also copied there (which must not exist or be empty) and checked."""
    repo_root = Path(repo_root or version["repo"]).expanduser().resolve()
    # A fresh machine (or a wiped repository) knows the remote only from the stored version.
    remote = remote or version.get("remote") or None
    repo, remote_name = _open_repo(repo_root, remote)
    from dvc.exceptions import DvcException

    target = repo_root / version["path"]
    dvcfile = target.parent / (target.name + ".dvc")
    try:
        dvcfile.parent.mkdir(parents=True, exist_ok=True)
        dvcfile.write_text(version["dvcfile"], encoding="utf-8")
        try:
            repo.pull(targets=[str(dvcfile)], remote=remote_name, force=True)
        except DvcException as exc:
            raise VersionError(f"dvc could not restore version {version.get('id', '')} "
                               f"({version['md5']}) from {remote_name}: {exc}") from None
    finally:
        repo.close()
    found = directory_md5(target)
    if found != version["md5"]:
        raise VersionError(f"restored {target} hashes to {found}, not {version['md5']}: refusing it")
    final = target
    if out is not None:
        out = Path(out).expanduser().resolve()
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise VersionError(f"{out} exists and is not empty; choose an empty or new directory")
        shutil.copytree(target, out, dirs_exist_ok=True)
        found = directory_md5(out)
        if found != version["md5"]:
            raise VersionError(f"the copy in {out} hashes to {found}, not {version['md5']}")
        final = out
    return {"path": str(final), "md5": found, "verified": True, "nfiles": version.get("nfiles"),
            "size": version.get("size")}
