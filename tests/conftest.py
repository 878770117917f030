"""Shared fixtures: every test session gets its own QBENCH_HOME (so built-in models train once
per session, and nothing touches the user's data directory)."""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from pathlib import Path

import pytest

# Set before any engines module computes a path; child processes inherit it.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="qbench-test-home-"))
os.environ.setdefault("QBENCH_HOME", str(_SESSION_HOME))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Tracking is on by default for users; the suite's sweeps would each start an MLflow sender.
# The tracking tests name their own URIs.
os.environ.setdefault("MLFLOW_TRACKING_URI", "off")


@pytest.fixture(scope="session")
def qbench_home() -> Path:
    return Path(os.environ["QBENCH_HOME"])


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "qbench.db"


@pytest.fixture
def store(db_path: Path):
    from engines.store import Store

    s = Store(db_path)
    yield s
    s.close()


@pytest.fixture
def fast_measure():
    """Short timing windows: tests check behaviour, not speed."""
    from engines.bench.measure import MeasureSettings

    return MeasureSettings(warmup_reps=2, warmup_s=0.0, min_reps=5, min_time_s=0.05, max_time_s=2.0)


def _hardware_missing(marker: str) -> str | None:
    if marker == "macos" and not (platform.system() == "Darwin" and platform.machine() == "arm64"):
        return "needs macOS on Apple Silicon; this machine is " + f"{platform.system()} {platform.machine()}"
    if marker == "cuda" and not (os.path.exists("/proc/driver/nvidia/version") or shutil.which("nvidia-smi")):
        return "needs an NVIDIA GPU with CUDA; no NVIDIA driver found"
    return None


def pytest_collection_modifyitems(config, items):
    """Tests marked for hardware this machine lacks are skipped, saying what is missing."""
    for item in items:
        for marker in ("macos", "cuda"):
            reason = item.get_closest_marker(marker) and _hardware_missing(marker)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
