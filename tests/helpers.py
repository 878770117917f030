"""Helpers for tests that drive the real ``qbench`` command line in a subprocess."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

FAST = ("--min-time", "0.05", "--min-reps", "5")


def needs(*modules: str, reason: str | None = None) -> pytest.MarkDecorator:
    """A skip marker for a test module (``pytestmark``) or a test: skipped, saying which, when one of
    ``modules`` is not installed. Found without importing them (``pytest.importorskip`` imports; coremltools
    takes tens of seconds, and every xdist worker collects every module)."""
    from engines.devices import package_installed

    missing = [m for m in modules if not package_installed(m)]
    return pytest.mark.skipif(bool(missing), reason=reason or f"{', '.join(missing)} is not installed")


def lazy_module(name: str):
    """A stand-in for ``import name`` at a test module's top that imports it on first use (not at
    collection)."""
    import importlib

    class _Lazy:
        def __getattr__(self, attr):
            return getattr(importlib.import_module(name), attr)

    return _Lazy()


def qbench(*args: str, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "qbench_tui", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def qbench_json(*args: str, **kwargs) -> tuple[subprocess.CompletedProcess, dict]:
    proc = qbench(*args, "--json", "-", **kwargs)
    try:
        return proc, json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"stdout is not JSON ({exc}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}") from None


def count_rows(db: Path, sql: str = "SELECT count(*) FROM results") -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(sql).fetchone()[0]
    except sqlite3.OperationalError:
        return 0  # tables not created yet


def wait_for(predicate, timeout: float, interval: float = 0.2) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(interval)
    return False


def by_key(results: list[dict]) -> dict[tuple[str, str], dict]:
    return {(r["method"], r["runtime"]): r for r in results}


def source_lines_matching(pattern: re.Pattern[str], allowed: dict[str, str] | set[str],
                          skip_prefixes: tuple[str, ...] = ()) -> list[str]:
    """``path:line: text`` of every line of engines/ and qbench_tui/ sources that ``pattern`` finds,
    outside the ``allowed`` files (path → why) and the folders in ``skip_prefixes``."""
    root = Path(__file__).resolve().parents[1]
    found = []
    for folder in ("engines", "qbench_tui"):
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel in allowed or rel.startswith(skip_prefixes):
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if pattern.search(line):
                    found.append(f"{rel}:{number}: {line.strip()}")
    return found
