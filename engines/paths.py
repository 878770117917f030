"""Where qbench keeps its state: one directory, ``$QBENCH_HOME`` or the platform's data dir."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

HOME_ENV = "QBENCH_HOME"


def qbench_home() -> Path:
    """The directory that holds the store, cached models and artifacts (created on demand)."""
    raw = os.environ.get(HOME_ENV)
    home = Path(raw).expanduser() if raw else Path(platformdirs.user_data_dir("qbench", appauthor=False))
    home.mkdir(parents=True, exist_ok=True)
    return home


def default_db_path() -> Path:
    return qbench_home() / "qbench.db"


def models_cache_dir() -> Path:
    """Built-in models trained once and reused by every later run."""
    path = qbench_home() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def artifacts_dir(run_id: str) -> Path:
    """Quantized artifacts of one run (kept so that sizes can be checked and winners exported)."""
    path = qbench_home() / "artifacts" / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def settings_path() -> Path:
    return qbench_home() / "settings.json"
