"""Runs a sweep: one child process per variant, each result handed to the sinks as it finishes.

The parent never imports an engine. Each variant is planned first (the chain of passes from the
model's format to one its runtime opens, :func:`engines.catalog.plan_variant`); a variant that
cannot run is recorded as ``unsupported`` with the reason, the others run in a child
(:mod:`engines.bench.child`) whose every ending — result, crash, hang, out-of-memory,
unsupported, Ctrl-C — becomes a recorded, readable status.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engines import catalog
from engines.bench.child import Cancelled, WorkerProcess, exit_reason
from engines.bench.request import SweepRequest, Variant, plan_variants
from engines.core import events
from engines.core.environment import collect_environment
from engines.core.schema import Result, now_iso, variant_key
from engines.models import ModelSpec, resolve_model
from engines.passes import Plan
from engines.paths import artifacts_dir
from engines.store import Store
from engines.store.sinks import ResultSink, SqliteSink

EventHandler = Callable[[events.SweepEvent], None]


class SweepInterrupted(Exception):
    """The sweep was cancelled (Ctrl-C, SIGTERM, the UI's cancel); finished results are stored."""


def new_run_id() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


@dataclass
class SweepOutcome:
    run_id: str
    status: str
    results: list[dict[str, Any]]


class SweepRunner:
    """Drives one sweep. ``cancel`` (a threading.Event) stops it between or during variants.

    ``store`` is the run's home (resume reads it); ``sinks`` receive every run and result, the
    store's own sink first unless given explicitly."""

    def __init__(self, store: Store, on_event: EventHandler | None = None,
                 cancel: threading.Event | None = None, source: str = "cli",
                 sinks: list[ResultSink] | None = None):
        self.store = store
        self.on_event = on_event or (lambda event: None)
        self.cancel = cancel or threading.Event()
        self.source = source
        self.sinks: list[ResultSink] = sinks if sinks is not None else [SqliteSink(store)]
        self._child = WorkerProcess(self.cancel)

    # --- public ---------------------------------------------------------------------------

    def run(self, request: SweepRequest, resume_run_id: str | None = None) -> SweepOutcome:
        spec = resolve_model(request.model, request.model_options)
        run_id = resume_run_id or new_run_id()
        done = {variant_key(r) for r in self.store.results(run_id)} if resume_run_id else set()
        env = collect_environment(request.effective_threads)
        self._to_sinks("run_started", run_id, spec.name, request.to_dict(), env, self.source)
        variants = plan_variants(request)
        total = len(variants) * len(request.batch_sizes)
        self.on_event(events.RunStarted(run_id, model=spec.name, total=total, done=len(done),
                                        resumed=bool(resume_run_id)))
        try:
            for index, variant in enumerate(variants):
                missing = [b for b in request.batch_sizes
                           if (variant.recipe.id, variant.runtime, variant.device, b) not in done]
                if not missing:
                    continue
                if self.cancel.is_set():
                    raise SweepInterrupted("cancelled")
                self._run_variant(run_id, spec, request, variant, missing, index, len(variants))
        except (KeyboardInterrupt, SweepInterrupted, Cancelled) as exc:
            self._child.kill()
            reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else "cancelled"
            self._to_sinks("run_ended", run_id, "interrupted", reason)
            self.on_event(events.RunFinished(run_id, "interrupted"))
            raise SweepInterrupted(run_id) from None
        except BaseException as exc:
            self._child.kill()
            self._to_sinks("run_ended", run_id, "failed", f"{type(exc).__name__}: {exc}")
            self.on_event(events.RunFinished(run_id, "failed"))
            raise
        self._to_sinks("run_ended", run_id, "finished", None)
        self.on_event(events.RunFinished(run_id, "finished"))
        return SweepOutcome(run_id, "finished", self.store.results(run_id))

    def resume(self, run_id: str) -> SweepOutcome:
        run = self.store.get_run(run_id)
        if run is None:
            raise ValueError(f"no run {run_id!r} in {self.store.path}")
        return self.run(SweepRequest.from_dict(run["request"]), resume_run_id=run_id)

    # --- sinks --------------------------------------------------------------------------------

    def _to_sinks(self, method: str, *args: Any) -> None:
        for index, sink in enumerate(self.sinks):
            try:
                getattr(sink, method)(*args)
            except Exception:
                if index == 0:  # the primary store must work: without it nothing is kept
                    raise
                # A secondary sink (a tracking server) must never cost the result or the sweep;
                # it queues and retries on its own side.

    def _record(self, run_id: str, result: Result) -> None:
        result.run_id = run_id
        result.finished_at = result.finished_at or now_iso()
        self._to_sinks("result_recorded", run_id, result)
        self.on_event(events.ResultRecorded(run_id, result.to_dict()))

    # --- one variant ------------------------------------------------------------------------

    def _run_variant(self, run_id: str, spec: ModelSpec, request: SweepRequest, variant: Variant,
                     batch_sizes: list[int], index: int, count: int) -> None:
        started = now_iso()
        recipe = variant.recipe
        info = events.VariantInfo(recipe.method, recipe.label, recipe.id, variant.runtime, variant.device)
        self.on_event(events.VariantStarted(run_id, info, index, count, tuple(batch_sizes)))
        planned = catalog.plan_variant(recipe, variant.runtime, variant.device, spec.source_format)
        if not isinstance(planned, Plan):
            for b in batch_sizes:
                self._record(run_id, Result(**variant.identity(spec.name, b), status="unsupported", error=planned,
                                            started_at=started))
            return
        workdir = artifacts_dir(run_id) / f"{recipe.label}-{recipe.id[:6]}-{variant.runtime}-{variant.device}"
        workdir.mkdir(parents=True, exist_ok=True)
        job = {
            "model": spec.to_dict(), "method": recipe.method, "plan": [p.to_dict() for p in planned.passes],
            "runtime": variant.runtime, "runtime_config": variant.identity(spec.name, 0)["runtime_config"],
            "device": variant.device, "batch_sizes": batch_sizes, "threads": request.effective_threads,
            "measure": request.measure.to_dict(), "workdir": str(workdir),
        }
        stored: set[int] = set()
        runtime_info: dict[str, Any] = {}
        passes: list[str] = planned.names
        error: str | None = None
        unsupported: str | None = None

        def handle(event: dict[str, Any]) -> None:
            nonlocal error, unsupported, passes
            kind = event.pop("event")
            if kind == "result":
                result = Result(**variant.identity(spec.name, event["batch_size"]),
                                **{k: v for k, v in event.items() if k != "batch_size"},
                                passes=passes, runtime_info=runtime_info, started_at=started)
                self._record(run_id, result)
                stored.add(event["batch_size"])
            elif kind == "runtime_info":
                runtime_info.update(event["info"])
            elif kind == "passes":
                passes = event["passes"]
            elif kind == "error":
                error = event["error"]
            elif kind == "unsupported":
                unsupported = event["reason"]
            elif kind == "phase":
                self.on_event(events.PhaseChanged(run_id, event["phase"], event.get("batch_size"),
                                                  event.get("detail") or {}))
            elif kind == "latency":
                self.on_event(events.LatenciesMeasured(run_id, tuple(event["ms"])))

        log_path = workdir / "worker.log"
        returncode, ended_by = self._child.run(job, handle, log_path, request.effective_threads,
                                               request.timeout_s, request.memory_limit_mb)
        for b in batch_sizes:
            if b in stored:
                continue
            base = {**variant.identity(spec.name, b), "started_at": started, "runtime_info": runtime_info,
                    "passes": passes}
            if unsupported:
                self._record(run_id, Result(**base, status="unsupported", error=unsupported))
            else:
                why = ended_by or error or exit_reason(returncode, log_path)
                self._record(run_id, Result(**base, status="failed", error=why))


def run_sweep(request: SweepRequest, store: Store, on_event: EventHandler | None = None,
              cancel: threading.Event | None = None, source: str = "cli") -> SweepOutcome:
    return SweepRunner(store, on_event, cancel, source).run(request)


__all__ = ["SweepInterrupted", "SweepOutcome", "SweepRequest", "SweepRunner", "Variant", "plan_variants",
           "run_sweep"]
