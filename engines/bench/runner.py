"""Runs a sweep: one child process per variant, results stored as each one finishes.

The parent never imports an engine. It waits on the child's event pipe with ``selectors``
(no busy loop), enforces a timeout and a memory limit, and turns every way a child can end
(crash, hang, out-of-memory, unsupported, Ctrl-C) into a recorded, readable status.
"""

from __future__ import annotations

import json
import os
import secrets
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engines import catalog
from engines.bench.measure import MeasureSettings
from engines.core import events
from engines.core.environment import collect_environment
from engines.devices import physical_cores
from engines.methods import configs
from engines.models import ModelSpec, resolve_model
from engines.paths import artifacts_dir
from engines.store import Store, now_iso

EventHandler = Callable[[events.SweepEvent], None]


class SweepInterrupted(Exception):
    """The sweep was cancelled (Ctrl-C, SIGTERM, the UI's cancel); finished results are stored."""


@dataclass(frozen=True)
class SweepRequest:
    """Everything needed to run (or resume) a sweep; stored with the run as JSON."""

    model: str
    methods: tuple[str, ...]
    runtimes: tuple[str, ...]
    devices: tuple[str, ...] = ("cpu",)
    batch_sizes: tuple[int, ...] = (1,)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> config dict
    threads: int | None = None  # None: all physical cores
    timeout_s: float = 900.0
    memory_limit_mb: float | None = None  # None: 80 % of physical memory
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    # Passed to the model's loader (engines.models.MODEL_OPTIONS): seq_len, allow_pickle.
    model_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in catalog.METHODS]
        if unknown:
            raise ValueError(f"unknown method(s) {', '.join(unknown)}; valid: {', '.join(catalog.METHODS)}")
        unknown = [r for r in self.runtimes if r not in catalog.RUNTIMES]
        if unknown:
            raise ValueError(f"unknown runtime(s) {', '.join(unknown)}; valid: {', '.join(catalog.RUNTIMES)}")
        if not self.methods or not self.runtimes or not self.devices or not self.batch_sizes:
            raise ValueError("a sweep needs at least one method, runtime, device and batch size")
        if any(b < 1 for b in self.batch_sizes):
            raise ValueError("batch sizes must be positive")
        for method, data in self.configs.items():
            configs.config_from_dict(catalog.METHODS[method].config_class, data)  # validates

    def config_for(self, method: str) -> configs.MethodConfig:
        return configs.config_from_dict(catalog.METHODS[method].config_class, self.configs.get(method))

    @property
    def effective_threads(self) -> int:
        return self.threads or physical_cores()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["measure"] = self.measure.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepRequest:
        data = dict(data)
        data["measure"] = MeasureSettings(**data.get("measure", {}))
        for key in ("methods", "runtimes", "devices", "batch_sizes"):
            data[key] = tuple(data[key])
        return cls(**data)


@dataclass(frozen=True)
class Variant:
    method: str
    runtime: str
    device: str

    @property
    def label(self) -> str:
        return f"{self.method} · {self.runtime} · {self.device}"


def plan_variants(request: SweepRequest) -> list[Variant]:
    return [Variant(m, r, d) for m in request.methods for r in request.runtimes for d in request.devices]


def new_run_id() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


@dataclass
class SweepOutcome:
    run_id: str
    status: str
    results: list[dict[str, Any]]


def _default_memory_limit_mb() -> float:
    import psutil

    return psutil.virtual_memory().total / 2**20 * 0.8


class SweepRunner:
    """Drives one sweep. ``cancel`` (a threading.Event) stops it between or during variants."""

    def __init__(self, store: Store, on_event: EventHandler | None = None,
                 cancel: threading.Event | None = None, source: str = "cli"):
        self.store = store
        self.on_event = on_event or (lambda event: None)
        self.cancel = cancel or threading.Event()
        self.source = source
        self._proc: subprocess.Popen | None = None

    # --- public ---------------------------------------------------------------------------

    def run(self, request: SweepRequest, resume_run_id: str | None = None) -> SweepOutcome:
        spec = resolve_model(request.model, request.model_options)
        if resume_run_id:
            run_id = resume_run_id
            done = self.store.completed_keys(run_id)
            self.store.set_run_status(run_id, "running")
        else:
            run_id = new_run_id()
            done = set()
            env = collect_environment(request.effective_threads)
            self.store.create_run(run_id, spec.name, request.to_dict(), env, self.source)
        variants = plan_variants(request)
        total = len(variants) * len(request.batch_sizes)
        self.on_event(events.RunStarted(run_id, model=spec.name, total=total, done=len(done),
                                        resumed=bool(resume_run_id)))
        try:
            for index, variant in enumerate(variants):
                missing = [b for b in request.batch_sizes
                           if (variant.method, variant.runtime, variant.device, b) not in done]
                if not missing:
                    continue
                if self.cancel.is_set():
                    raise SweepInterrupted("cancelled")
                self._run_variant(run_id, spec, request, variant, missing, index, len(variants))
        except (KeyboardInterrupt, SweepInterrupted) as exc:
            self._kill_child()
            reason = "cancelled" if isinstance(exc, SweepInterrupted) else "interrupted (Ctrl-C)"
            self.store.set_run_status(run_id, "interrupted", reason)
            self.on_event(events.RunFinished(run_id, "interrupted"))
            raise SweepInterrupted(run_id) from None
        except BaseException as exc:
            self._kill_child()
            self.store.set_run_status(run_id, "failed", f"{type(exc).__name__}: {exc}")
            self.on_event(events.RunFinished(run_id, "failed"))
            raise
        self.store.set_run_status(run_id, "finished")
        self.on_event(events.RunFinished(run_id, "finished"))
        return SweepOutcome(run_id, "finished", self.store.results(run_id))

    def resume(self, run_id: str) -> SweepOutcome:
        run = self.store.get_run(run_id)
        if run is None:
            raise ValueError(f"no run {run_id!r} in {self.store.path}")
        return self.run(SweepRequest.from_dict(run["request"]), resume_run_id=run_id)

    # --- one variant ------------------------------------------------------------------------

    def _base_result(self, spec: ModelSpec, request: SweepRequest, variant: Variant, batch: int) -> dict:
        return {
            "model": spec.name, "method": variant.method, "runtime": variant.runtime,
            "device": variant.device, "batch_size": batch,
            "config": configs.config_to_dict(request.config_for(variant.method)),
        }

    def _store(self, run_id: str, result: dict[str, Any]) -> None:
        self.store.add_result(run_id, result)
        self.on_event(events.ResultRecorded(run_id, result))

    def _run_variant(self, run_id: str, spec: ModelSpec, request: SweepRequest, variant: Variant,
                     batch_sizes: list[int], index: int, count: int) -> None:
        started = now_iso()
        info = events.VariantInfo(variant.method, variant.method, variant.method, variant.runtime, variant.device)
        self.on_event(events.VariantStarted(run_id, info, index, count, tuple(batch_sizes)))
        reason = catalog.unsupported_reason(variant.method, variant.runtime, variant.device)
        if reason:
            for b in batch_sizes:
                self._store(run_id, {**self._base_result(spec, request, variant, b), "status": "unsupported",
                                     "error": reason, "started_at": started})
            return
        workdir = artifacts_dir(run_id) / f"{variant.method}-{variant.runtime}-{variant.device}"
        workdir.mkdir(parents=True, exist_ok=True)
        job = {
            "model": asdict(spec), "method": variant.method, "runtime": variant.runtime,
            "device": variant.device, "batch_sizes": batch_sizes, "threads": request.effective_threads,
            "config": request.configs.get(variant.method), "measure": request.measure.to_dict(),
            "workdir": str(workdir),
        }
        stored: set[int] = set()
        runtime_info: dict[str, Any] = {}
        error: str | None = None
        unsupported: str | None = None

        def handle(event: dict[str, Any]) -> None:
            nonlocal error, unsupported
            kind = event.pop("event")
            if kind == "result":
                result = {**self._base_result(spec, request, variant, event["batch_size"]), **event,
                          "runtime_info": runtime_info, "started_at": started}
                self._store(run_id, result)
                stored.add(event["batch_size"])
            elif kind == "runtime_info":
                runtime_info.update(event["info"])
            elif kind == "error":
                error = event["error"]
            elif kind == "unsupported":
                unsupported = event["reason"]
            elif kind == "phase":
                self.on_event(events.PhaseChanged(run_id, event["phase"], event.get("batch_size")))
            elif kind == "latency":
                self.on_event(events.LatenciesMeasured(run_id, tuple(event["ms"])))

        log_path = workdir / "worker.log"
        returncode, ended_by = self._spawn_and_wait(job, handle, log_path, request)
        for b in batch_sizes:
            if b in stored:
                continue
            base = {**self._base_result(spec, request, variant, b), "started_at": started,
                    "runtime_info": runtime_info}
            if unsupported:
                self._store(run_id, {**base, "status": "unsupported", "error": unsupported})
            else:
                why = ended_by or error or _exit_reason(returncode, log_path)
                self._store(run_id, {**base, "status": "failed", "error": why})

    def _spawn_and_wait(self, job: dict, handle: Callable[[dict], None], log_path: Path,
                        request: SweepRequest) -> tuple[int | None, str | None]:
        """Run the worker; returns (exit code, reason the parent ended it or None)."""
        import psutil

        read_fd, write_fd = os.pipe()
        threads = str(request.effective_threads)
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
               "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
               "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        limit_mb = request.memory_limit_mb or _default_memory_limit_mb()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "engines.bench.worker", str(write_fd)],
                stdin=subprocess.PIPE, stdout=log, stderr=log, pass_fds=(write_fd,), env=env,
                # Own process group: the terminal's Ctrl-C reaches the parent, which then ends
                # the child itself and records the run as interrupted.
                start_new_session=True,
            )
        os.close(write_fd)
        self._proc = proc
        ended_by: str | None = None
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()
            ps = psutil.Process(proc.pid)
            deadline = time.monotonic() + request.timeout_s
            buffer = b""
            with selectors.DefaultSelector() as sel:
                sel.register(read_fd, selectors.EVENT_READ)
                while True:
                    if self.cancel.is_set():
                        raise SweepInterrupted("cancelled")
                    if sel.select(timeout=0.2):
                        chunk = os.read(read_fd, 1 << 16)
                        if not chunk:
                            break  # the child closed its end: it has exited
                        buffer += chunk
                        *lines, buffer = buffer.split(b"\n")
                        for line in lines:
                            if line.strip():
                                handle(json.loads(line))
                    if time.monotonic() > deadline:
                        ended_by = f"timed out after {request.timeout_s:.0f} s (killed)"
                        break
                    try:
                        rss_mb = ps.memory_info().rss / 2**20
                    except psutil.Error:
                        continue
                    if rss_mb > limit_mb:
                        ended_by = (f"out of memory: the process used {rss_mb:.0f} MB, over the "
                                    f"{limit_mb:.0f} MB limit (killed)")
                        break
        finally:
            os.close(read_fd)
            if ended_by:
                self._kill_child()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._kill_child()
                proc.wait()
            self._proc = None
        return proc.returncode, ended_by

    def _kill_child(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
            proc.wait()


def _exit_reason(returncode: int | None, log_path: Path) -> str:
    tail = ""
    try:
        lines = [l for l in log_path.read_text(errors="replace").splitlines() if l.strip()]
        tail = lines[-1][:300] if lines else ""
    except OSError:
        pass
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"worker crashed: killed by {name}{hint}" + (f"; last log line: {tail}" if tail else "")
    return f"worker exited with code {returncode}" + (f": {tail}" if tail else "")


def run_sweep(request: SweepRequest, store: Store, on_event: EventHandler | None = None,
              cancel: threading.Event | None = None, source: str = "cli") -> SweepOutcome:
    return SweepRunner(store, on_event, cancel, source).run(request)


__all__ = ["SweepRequest", "SweepRunner", "SweepOutcome", "SweepInterrupted", "Variant",
           "plan_variants", "run_sweep"]
