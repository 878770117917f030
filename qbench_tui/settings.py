"""What the app remembers between sessions (theme, last sweep set-up) and how long it measures.

Settings live in one JSON file (``engines.paths.settings_path()``). Measurement windows can be
overridden per process with ``QBENCH_MEASURE_*`` environment variables, which is how scripts and
the end-to-end test keep sweeps short without touching the user's file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qbench_tui.themes import DEFAULT_THEME

# Environment variable -> MeasureSettings field (parsed as float or int).
MEASURE_ENV: dict[str, tuple[str, type]] = {
    "QBENCH_MEASURE_MIN_TIME": ("min_time_s", float),
    "QBENCH_MEASURE_MIN_REPS": ("min_reps", int),
    "QBENCH_MEASURE_MAX_TIME": ("max_time_s", float),
    "QBENCH_MEASURE_WARMUP_S": ("warmup_s", float),
    "QBENCH_MEASURE_WARMUP_REPS": ("warmup_reps", int),
    "QBENCH_MEASURE_REPEAT": ("repeat", int),
}

# MeasureSettings' defaults, repeated here so that start-up does not import numpy
# (engines.bench.measure does); tests/test_tui_units.py checks they stay equal.
MEASURE_DEFAULTS: dict[str, Any] = {
    "warmup_reps": 10, "warmup_s": 0.2, "min_reps": 30, "min_time_s": 1.0, "max_time_s": 20.0,
    "repeat": 3,
}

# The starter sweep offered on first launch: small, fast, and it shows a real speed-up.
STARTER_SETUP: dict[str, Any] = {
    "model": "digits-mlp",
    "methods": ["fp32", "dynamic-int8"],
    "runtimes": ["onnxruntime"],
    "devices": ["cpu"],
    "batch_sizes": [1],
    "configs": {},
}


def measure_from_env(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """MeasureSettings overrides named in the environment (bad values are ignored)."""
    environ = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for var, (name, kind) in MEASURE_ENV.items():
        raw = environ.get(var)
        if raw is None:
            continue
        try:
            out[name] = kind(raw)
        except ValueError:
            continue
    return out


@dataclass
class AppSettings:
    """Remembered state. ``path`` None means nothing is written (tests, benchmarks)."""

    theme: str = DEFAULT_THEME
    measure: dict[str, Any] = field(default_factory=dict)  # MeasureSettings overrides
    last_setup: dict[str, Any] = field(default_factory=dict)  # the last sweep the user ran
    sample_interval_s: float = 1.0  # device meters
    tracking_uri: str = ""  # MLflow; "" = $MLFLOW_TRACKING_URI or the embedded store, "off" = none
    path: Path | None = None

    def measure_settings(self) -> dict[str, Any]:
        """Effective measurement settings: defaults < settings file < environment."""
        merged = {**MEASURE_DEFAULTS, **self.measure, **measure_from_env()}
        merged["max_time_s"] = max(merged["max_time_s"], merged["min_time_s"])
        return merged

    @classmethod
    def load(cls, path: Path) -> AppSettings:
        """Read the file; a missing or damaged file gives defaults (and is rewritten on save)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        known = {k: data[k] for k in ("theme", "measure", "last_setup", "sample_interval_s", "tracking_uri") if k in data}
        try:
            settings = cls(**known, path=path)
        except TypeError:
            settings = cls(path=path)
        if not isinstance(settings.measure, dict):
            settings.measure = {}
        if not isinstance(settings.last_setup, dict):
            settings.last_setup = {}
        return settings

    def save(self) -> None:
        if self.path is None:
            return
        data = {k: v for k, v in asdict(self).items() if k != "path"}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
            tmp.replace(self.path)
        except OSError:
            pass  # remembering a theme is never worth an error dialog
