"""Serve an exported variant: resolve what to serve, export it once, run its FastAPI service.

The service is the export's own deployment template (``deploy/fastapi/app.py`` beside the exported
model, written by :func:`engines.export.export_result`): qbench runs exactly what a user would
ship, under uvicorn in a child process, and never a second service of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SERVICE_APP = Path("deploy") / "fastapi" / "app.py"


class ServeError(Exception):
    """The target cannot be served; the message says why."""


def resolve_target(store, target: str, registry_uri: str | None = None) -> int:
    """A result id from ``RESULT_ID`` or ``MODEL_NAME@ALIAS`` (the MLflow registry's alias, whose
    model version carries the result id in its ``qbench.result_id`` tag)."""
    target = target.strip()
    if target.isdigit():
        rows = store.results(where="id = ?", params=[int(target)])
        if not rows:
            raise ServeError(f"no result {target} in {store.path}; see `qbench results`")
        if rows[0]["status"] != "ok":
            raise ServeError(f"result {target} is {rows[0]['status']}: only a measured (ok) variant can be served")
        return int(target)
    if "@" in target:
        name, alias = target.rsplit("@", 1)
        if not name or not alias:
            raise ServeError(f"{target!r}: expected MODEL_NAME@ALIAS")
        return resolve_alias(name, alias, registry_uri)
    raise ServeError(f"{target!r} is neither a result id nor MODEL_NAME@ALIAS")


def resolve_alias(name: str, alias: str, registry_uri: str | None) -> int:
    """The seam to the MLflow registry (imported here only: about 1–3 s)."""
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ServeError("resolving MODEL@ALIAS needs mlflow (pip install 'qbench[mlflow-server]')") from None
    try:
        version = MlflowClient(tracking_uri=registry_uri, registry_uri=registry_uri).get_model_version_by_alias(
            name, alias)
    except MlflowException as exc:
        raise ServeError(f"{name}@{alias} is not in the registry at {registry_uri}: {exc.message}") from None
    result_id = (version.tags or {}).get("qbench.result_id")
    if not result_id or not str(result_id).isdigit():
        raise ServeError(f"{name}@{alias} (version {version.version}) has no qbench.result_id tag")
    return int(result_id)


def is_loopback(host: str) -> bool:
    import ipaddress

    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def safety_env(host: str, token: str | None, no_auth: bool = False, max_body_mb: float | None = None,
               allow_nonfinite: bool = False) -> dict[str, str]:
    """The service's safety settings as its environment. Binding beyond loopback without a token is
    refused unless ``no_auth`` says so: anyone who reaches the port could run the model."""
    if not token and not no_auth and not is_loopback(host):
        raise ServeError(f"--host {host} exposes the service beyond this machine: give --token (or set "
                         "QBENCH_SERVE_TOKEN) so requests need it, or --no-auth to serve without one")
    env = {"QBENCH_SERVE_TOKEN": token or ""}
    if max_body_mb is not None:
        if max_body_mb <= 0:
            raise ServeError(f"--max-body-mb must be positive, got {max_body_mb}")
        env["MAX_BODY_BYTES"] = str(int(max_body_mb * 1024 * 1024))
    if allow_nonfinite:
        env["ALLOW_NONFINITE"] = "1"
    return env


def export_dir_for(exports_root: Path, result_id: int, fmt: str) -> Path:
    return Path(exports_root) / f"result-{result_id}" / fmt


def ensure_export(store_path: Path, result_id: int, fmt: str, exports_root: Path, refresh: bool = False) -> Path:
    """The exported directory of ``result_id`` in ``fmt``, exported (and validated) on first use."""
    out = export_dir_for(exports_root, result_id, fmt)
    if not refresh and (out / "qbench.json").exists():  # the exporter writes its report last: complete
        return out
    try:
        from engines.export import export_result
    except ImportError as exc:
        raise ServeError(f"exporting needs engines.export ({exc})") from None
    try:
        export_result(Path(store_path), int(result_id), fmt, out, force=True)  # qbench's own exports folder
    except Exception as exc:  # the exporter's own errors say what failed; keep them one line
        raise ServeError(f"exporting result {result_id} as {fmt} failed: {exc}") from None
    return out


def service_command(export_dir: Path, host: str, port: int) -> tuple[list[str], Path, dict[str, str]]:
    """(argv, cwd, env) that run the exported service with uvicorn."""
    app = Path(export_dir) / SERVICE_APP
    if not app.exists():
        raise ServeError(f"{export_dir} has no {SERVICE_APP}: export the variant again (qbench serve --refresh)")
    model = Path(export_dir) / "model.onnx"
    # The service imports app.py from the export itself: no __pycache__ may be written there, or the
    # served export would no longer be the bytes its version hash (qbench version) stands for.
    env = {**os.environ, "MODEL_PATH": str(model.resolve()), "PYTHONDONTWRITEBYTECODE": "1"}
    argv = [sys.executable, "-m", "uvicorn", "app:app", "--host", host, "--port", str(port),
            "--no-access-log", "--log-level", "warning"]
    return argv, app.parent, env


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be bound now (uvicorn would otherwise fail after loading the model)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def start_service(export_dir: Path, host: str, port: int, extra_env: dict[str, str] | None = None,
                  log: Path | None = None) -> subprocess.Popen:
    """Start the service in its own process group (so stopping it stops its workers too)."""
    argv, cwd, env = service_command(export_dir, host, port)
    env.update(extra_env or {})
    out = open(log, "ab") if log else None  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                                start_new_session=True)
    finally:
        if out:
            out.close()


def wait_ready(url: str, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> dict[str, Any]:
    """Poll ``/healthz`` until it answers 200 (``{"status": "ok"}``), the process ends, or ``timeout``."""
    import json
    import urllib.request

    end = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise ServeError(f"the service exited with code {proc.returncode} before answering {url}/healthz")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=2) as response:
                return json.loads(response.read() or b"{}")
        except Exception as exc:  # not up yet
            last = str(exc)
        time.sleep(0.2)
    raise ServeError(f"{url}/healthz did not answer within {timeout:.0f} s ({last})")


def stop_service(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    import signal

    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
