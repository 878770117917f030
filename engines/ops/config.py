"""Settings of versioning, serving and monitoring: every URI and threshold, with embedded defaults.

Precedence, lowest first: the defaults below, ``$QBENCH_HOME/ops.json`` (``{"dvc_remote": …}``),
environment variables ``QBENCH_<FIELD>`` (``QBENCH_DVC_REMOTE``, ``QBENCH_MONITOR_LATENCY_RATIO``…),
then the command line's options. An empty path means "under the state directory".
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engines.core.config import Config, config_from_dict, help_text
from engines.paths import qbench_home

OPS_FILE = "ops.json"


@dataclass(frozen=True)
class OpsConfig(Config):
    """Where artifacts are versioned, how a variant is served, when a served one raises an alert."""

    dvc_repo: str = field(default="", metadata=help_text(
        "DVC repository that tracks exported variants (initialised without git if new); "
        "default $QBENCH_HOME/dvc/repo"))
    dvc_remote: str = field(default="", metadata=help_text(
        "DVC remote URL pushed to (a directory, s3://…, ssh://…); default $QBENCH_HOME/dvc/remote. "
        "A user's repository keeps its own default remote unless this is set"))
    exports_dir: str = field(default="", metadata=help_text(
        "where `serve` and `version` export variants; default $QBENCH_HOME/exports"))
    serve_host: str = field(default="127.0.0.1", metadata=help_text("address `qbench serve` binds"))
    serve_port: int = field(default=8000, metadata=help_text("port `qbench serve` binds"))
    registry_uri: str = field(default="", metadata=help_text(
        "MLflow tracking/registry URI resolving MODEL@ALIAS; default $MLFLOW_TRACKING_URI, "
        "else sqlite:///$QBENCH_HOME/mlflow.db"))
    monitor_interval_s: float = field(default=5.0, metadata=help_text("seconds between two scrapes of /metrics"))
    monitor_min_requests: int = field(default=50, metadata=help_text(
        "requests a window needs before its latency or error rate is judged (and before a baseline is taken)"))
    monitor_latency_ratio: float = field(default=1.5, metadata=help_text(
        "alert when the window's mean or p95 latency exceeds the baseline's by this factor"))
    monitor_error_rate: float = field(default=0.05, metadata=help_text(
        "alert when the window's error rate exceeds the baseline's by this much (0.05 = 5 points)"))
    canary_tolerance: float = field(default=0.02, metadata=help_text(
        "alert when the canary's accuracy (or agreement) falls this far below the stored result's"))
    canary_rows: int = field(default=256, metadata=help_text("held-out rows the canary posts"))

    def __post_init__(self) -> None:
        if self.serve_port < 0 or self.serve_port > 65535:
            raise ValueError(f"serve_port {self.serve_port} is not a port")
        if self.monitor_min_requests < 1:
            raise ValueError("monitor_min_requests must be at least 1")
        if self.monitor_latency_ratio <= 1.0:
            raise ValueError("monitor_latency_ratio must be above 1")
        if not 0.0 <= self.monitor_error_rate <= 1.0 or not 0.0 <= self.canary_tolerance <= 1.0:
            raise ValueError("monitor_error_rate and canary_tolerance are fractions between 0 and 1")
        if self.monitor_interval_s <= 0 or self.canary_rows < 1:
            raise ValueError("monitor_interval_s and canary_rows must be positive")

    # --- resolved locations --------------------------------------------------------------------

    def dvc_repo_path(self) -> Path:
        return Path(self.dvc_repo).expanduser() if self.dvc_repo else qbench_home() / "dvc" / "repo"

    def dvc_remote_url(self) -> str | None:
        """The remote to push to: the setting, else the embedded local one for qbench's own repo,
        else None (a user's repository keeps its configured default remote)."""
        if self.dvc_remote:
            return self.dvc_remote
        return None if self.dvc_repo else str(qbench_home() / "dvc" / "remote")

    def exports_path(self) -> Path:
        return Path(self.exports_dir).expanduser() if self.exports_dir else qbench_home() / "exports"

    def registry_tracking_uri(self, app_setting: str | None = None) -> str:
        """The registry's MLflow URI: this config's, else the tracking URI in force (the flag-less
        precedence of engines.tracking: $MLFLOW_TRACKING_URI, the app's setting, the embedded store);
        tracking turned off still leaves the embedded registry readable."""
        from engines.tracking import default_uri, resolve_uri

        return self.registry_uri or resolve_uri(None, app_setting) or default_uri()


def load_ops_config(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> OpsConfig:
    """Defaults < ``$QBENCH_HOME/ops.json`` < ``QBENCH_<FIELD>`` < ``overrides`` (None values ignored).
    A bad value raises ValueError naming the setting."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    path = qbench_home() / OPS_FILE
    if path.exists():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path} is not valid JSON ({exc})") from None
        if not isinstance(loaded, dict):
            raise ValueError(f"{path} must hold a JSON object of settings")
        data.update(loaded)
    for name in (f.name for f in dataclasses.fields(OpsConfig)):
        raw = environ.get(f"QBENCH_{name.upper()}")
        if raw is not None:
            data[name] = raw
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return config_from_dict(OpsConfig, data)  # type: ignore[return-value]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"ops setting: {exc}") from None
