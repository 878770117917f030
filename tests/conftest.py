"""Shared fixtures: every test session gets its own QBENCH_HOME (nothing touches the user's data
directory), with the built-in models trained at most once per version of their code.

The built-ins (digits-mlp, digits-cnn, tiny-lm) are trained by the product the first time a session
needs them; their files are then kept in a cache outside the session
(``$QBENCH_TEST_MODEL_CACHE``, default ``<tmp>/qbench-test-models``) under a key made of the sources
of ``engines/models/`` and the versions of torch, numpy and scikit-learn, and copied into the next
session's home. A change to the model code or those libraries trains them again; so does
``QBENCH_TEST_FRESH_MODELS=1`` (``.ci/run`` sets it: CI always trains from scratch): then the cache
is a folder made for this one test run, so each model is trained from scratch once per run.

The suite runs in parallel (pytest-xdist, ``-n auto --dist loadscope`` in pyproject's addopts; ``-n0``
runs in one process, for ``--pdb`` or ``-s``). Each worker is a session with its own QBENCH_HOME (its
own store, measurement lock and exports); a model one worker trained is copied into the cache after
its test and into the other workers' homes before their next test, so it is trained once per run.
A module's tests run on one worker, so its module-scoped fixtures (a sweep, a server) are built once;
the modules are handed out longest first (``pytest_xdist_make_scheduler`` below), so that a long
module of few tests (a real sweep) does not start last while the other worker sits idle.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from tests.scheduling import longest_first_scheduler, record_durations, save_durations

# Set before any engines module computes a path; child processes inherit it. An xdist worker inherits
# its controller's variables: a home the suite made there is replaced by the worker's own, and a
# QBENCH_HOME the caller set is kept (one process) or gets a folder in it for each worker.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="qbench-test-home-"))
_GIVEN_HOME, _WORKER = os.environ.get("QBENCH_HOME"), os.environ.get("PYTEST_XDIST_WORKER")
if _GIVEN_HOME and _GIVEN_HOME != os.environ.get("QBENCH_TEST_SUITE_HOME"):
    if _WORKER:
        os.environ["QBENCH_HOME"] = str(Path(_GIVEN_HOME) / f"xdist-{_WORKER}")
else:
    os.environ["QBENCH_HOME"] = os.environ["QBENCH_TEST_SUITE_HOME"] = str(_SESSION_HOME)

# What the built-in models' training writes under $QBENCH_HOME/models (pulled models and the fp32
# ONNX export cache are not kept: they depend on more than the model code).
_TRAINED = ("digits-data.npz", "digits-mlp", "digits-cnn", "tiny-lm")


def _models_key() -> str:
    digest = hashlib.sha256()
    for source in sorted((Path(__file__).resolve().parents[1] / "engines" / "models").rglob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    for package in ("torch", "numpy", "scikit-learn"):
        try:
            digest.update(f"{package}=={version(package)}".encode())
        except PackageNotFoundError:
            digest.update(package.encode())
    return digest.hexdigest()[:16]


# A fresh run trains into a cache of its own, shared by its workers (they inherit the variable) and
# removed when the run ends.
if os.environ.get("QBENCH_TEST_FRESH_MODELS") == "1" and not os.environ.get("QBENCH_TEST_RUN_MODELS"):
    os.environ["QBENCH_TEST_RUN_MODELS"] = tempfile.mkdtemp(prefix="qbench-test-run-models-")
    _RUN_MODELS_OWNED = True
else:
    _RUN_MODELS_OWNED = False


def _model_cache() -> Path | None:
    if os.environ.get("QBENCH_TEST_FRESH_MODELS") == "1":
        run = os.environ.get("QBENCH_TEST_RUN_MODELS")
        return Path(run) if run else None
    root = Path(os.environ.get("QBENCH_TEST_MODEL_CACHE") or Path(tempfile.gettempdir()) / "qbench-test-models")
    return root / _models_key()


def _restore_trained_models() -> None:
    cache, models = _model_cache(), _SESSION_HOME / "models"
    if cache is None or not cache.is_dir():
        return
    models.mkdir(parents=True, exist_ok=True)
    for name in _TRAINED:
        src, dest = cache / name, models / name
        if dest.exists():
            continue
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns(".lock", "*.tmp*"))
        elif src.is_file():
            shutil.copy2(src, dest)


def _keep_trained_models() -> None:
    """Copy each model this session trained and the cache lacks into it (each one whole: a rename;
    of two sessions finishing together, the first wins)."""
    cache, models = _model_cache(), _SESSION_HOME / "models"
    if cache is None:
        return
    for name in _TRAINED:
        src, dest = models / name, cache / name
        if dest.exists() or not src.exists() or (src.is_dir() and not (src / "meta.json").exists()):
            continue
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=cache)) / name
        if src.is_dir():
            shutil.copytree(src, staging, ignore=shutil.ignore_patterns(".lock", "*.tmp*"))
        else:
            shutil.copy2(src, staging)
        try:
            staging.rename(dest)
        except OSError:
            pass  # another session got there first
        shutil.rmtree(staging.parent, ignore_errors=True)


# Only into this session's own, fresh home (not a QBENCH_HOME the caller set).
_OWN_HOME = Path(os.environ["QBENCH_HOME"]) == _SESSION_HOME

# A fresh run's workers train into the run's cache itself: each home's model folder is a link to
# it, so a worker that needs tiny-lm while another trains it waits on the trainer's lock
# (engines/models/tiny_lm.py) and loads its weights, instead of training a second copy at once.
if _OWN_HOME and os.environ.get("QBENCH_TEST_FRESH_MODELS") == "1" and _model_cache() is not None:
    for _name in ("digits-mlp", "digits-cnn", "tiny-lm"):
        _target, _link = _model_cache() / _name, _SESSION_HOME / "models" / _name
        _target.mkdir(parents=True, exist_ok=True)
        _link.parent.mkdir(parents=True, exist_ok=True)
        if not _link.exists():
            _link.symlink_to(_target, target_is_directory=True)

if _OWN_HOME:
    _restore_trained_models()

# The fp32 ONNX exports (engines/models/onnx_cache.py: a transformer's first ONNX Runtime variant
# loads it in torch and exports it, tens of seconds on two loaded cores) are shared by the run's
# workers, as one worker's modules already share them: each worker's $QBENCH_HOME/models/onnx is a
# link to one folder of the run, removed when the run ends. The cache writes each export whole (a
# rename) under a key of the weights' files, the options and the library versions.
if not os.environ.get("QBENCH_TEST_RUN_SHARED"):
    os.environ["QBENCH_TEST_RUN_SHARED"] = tempfile.mkdtemp(prefix="qbench-test-run-shared-")
    _RUN_SHARED_OWNED = True
else:
    _RUN_SHARED_OWNED = False
if _OWN_HOME:
    _shared_onnx = Path(os.environ["QBENCH_TEST_RUN_SHARED"]) / "onnx"
    _shared_onnx.mkdir(parents=True, exist_ok=True)
    (_SESSION_HOME / "models").mkdir(parents=True, exist_ok=True)
    if not (_SESSION_HOME / "models" / "onnx").exists():
        (_SESSION_HOME / "models" / "onnx").symlink_to(_shared_onnx, target_is_directory=True)


@pytest.fixture(autouse=True)
def _share_trained_models():
    """Before each test, the models another worker has trained since; after it, the ones it trained
    (a few file checks when there is nothing new)."""
    if _OWN_HOME:
        _restore_trained_models()
    yield
    if _OWN_HOME:
        _keep_trained_models()


def pytest_sessionfinish(session, exitstatus):
    if _OWN_HOME:
        _keep_trained_models()
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # the run's controller (or the one process)
        save_durations(session.config)
    if _RUN_MODELS_OWNED and not os.environ.get("PYTEST_XDIST_WORKER"):  # the run's controller, last
        shutil.rmtree(os.environ["QBENCH_TEST_RUN_MODELS"], ignore_errors=True)
    if _RUN_SHARED_OWNED and not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(os.environ["QBENCH_TEST_RUN_SHARED"], ignore_errors=True)
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


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadscope``, the longest modules first (by what each test took in the last run here)."""
    return longest_first_scheduler(config, log)


def pytest_runtest_logreport(report):
    record_durations(report)
