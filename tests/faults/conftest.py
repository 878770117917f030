"""The fault suite: each fault a hostile user (or a bad day) brings, on real files, real processes
and a real server on loopback. Every test here is marked ``faults`` (``pytest -m faults``).

Disks fill up by a small tmpfs where this process may mount one (root), otherwise by
``RLIMIT_FSIZE`` in a child process; read-only by remounting that tmpfs read-only, otherwise by
permissions (which do not bind root)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if Path(str(item.fspath)).is_relative_to(HERE):
            item.add_marker(pytest.mark.faults)


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True, check=False).returncode == 0


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(size_kb) -> Path``: a fresh tmpfs of that size (skipped where mounting is not allowed);
    ``mount.read_only(path)`` remounts it read-only. Unmounted at the end."""
    mounted: list[Path] = []

    def mount(size_kb: int) -> Path:
        where = tmp_path / f"tmpfs{len(mounted)}"
        where.mkdir()
        if os.geteuid() != 0 or not _mount("-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(where)):
            pytest.skip("mounting a tmpfs needs root (the RLIMIT_FSIZE variant covers this machine)")
        mounted.append(where)
        return where

    mount.read_only = lambda where: _mount("-o", "remount,ro", str(where)) or pytest.skip("remount refused")
    yield mount
    for where in reversed(mounted):
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)
