"""Runs a sweep: each variant in a child process, timed in rounds interleaved across variants.

The parent never imports an engine. Each variant is planned first (the chain of passes from the
model's format to one its runtime opens, :func:`engines.catalog.plan_variant`); a variant that
cannot run is recorded as ``unsupported`` with the reason. The others each get a child
(:mod:`engines.bench.child`) that loads, quantizes, opens and evaluates the variant once and then
waits. The sweep takes the machine's measurement lock (:mod:`engines.bench.lock`), then times
``repeat`` rounds: in each, every variant in a shuffled order measures one short block of each
batch size (:mod:`engines.bench.rounds`). Children stay loaded between rounds while memory allows;
one that does not fit is ended after each round and started again for the next. Rounds during
which other processes used the CPU are measured again once the planned rounds are done.

A model that cannot be loaded fails the sweep once, from the first child, before any variant is
measured (:class:`~engines.core.errors.ModelLoadError`). Every other ending of a variant —
crash, hang, out-of-memory, unsupported, Ctrl-C — becomes a recorded, readable status.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from engines import catalog
from engines.analysis import rules
from engines.bench import rounds as rounds_mod
from engines.bench.child import Cancelled, ChildEnded, WorkerProcess, exit_reason, held_interrupts, stop_fork_server
from engines.bench.lock import MeasurementLock
from engines.bench.request import SweepRequest, Variant, plan_variants
from engines.core import events
from engines.core.environment import collect_environment
from engines.core.errors import ModelLoadError
from engines.core.schema import Result, now_iso, variant_key
from engines.devices.energy import energy_figure
from engines.models import ModelSpec, resolve_model
from engines.passes import Plan
from engines.paths import artifacts_dir
from engines.store import Store, StoreError
from engines.store.opening import write_error as store_write_error
from engines.store.sinks import ResultSink, SqliteSink

EventHandler = Callable[[events.SweepEvent], None]

# Keep a child loaded between rounds only while the machine keeps this share of its memory free
# (the next variants still have to load, and the timing must not page).
KEEP_FREE_SHARE = 0.25


class SweepInterrupted(Exception):
    """The sweep was cancelled (Ctrl-C, SIGTERM, the UI's cancel); finished results are stored."""


def new_run_id() -> str:
    return datetime.now().strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


@dataclass
class SweepOutcome:
    run_id: str
    status: str
    results: list[dict[str, Any]]


@dataclass
class _Slot:
    """One runnable variant during a sweep: its child, what the child said, its rounds."""

    variant: Variant
    plan: Plan
    batch_sizes: list[int]
    index: int
    job: dict[str, Any]
    started: str
    child: WorkerProcess
    keep: bool = True  # stays loaded between rounds
    ready: dict[str, Any] | None = None
    runtime_info: dict[str, Any] = field(default_factory=dict)
    passes: list[str] = field(default_factory=list)
    rounds: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    recorded: bool = False
    ended: str | None = None  # failed: why
    unsupported: str | None = None
    unsupported_figures: dict[str, Any] = field(default_factory=dict)  # size, op counts of a refused artifact
    error: str | None = None

    @property
    def live(self) -> bool:
        return self.ended is None and self.unsupported is None


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
        self._slots: list[_Slot] = []
        self._recorded: list[dict[str, Any]] = []
        # A fleet worker runs one variant per sweep, back to back: it keeps the preloaded fork
        # server between them instead of paying torch's imports again for each variant.
        self.keep_fork_server = False

    # --- public ---------------------------------------------------------------------------

    def run(self, request: SweepRequest, resume_run_id: str | None = None) -> SweepOutcome:
        spec = resolve_model(request.model, request.model_options)
        run_id = resume_run_id or new_run_id()
        # A variant stored ``partial`` (interrupted between rounds) is measured again on resume.
        done = {variant_key(r) for r in self.store.results(run_id)
                if "partial" not in (r.get("flags") or [])} if resume_run_id else set()
        env = collect_environment(request.effective_threads)
        self._to_sinks("run_started", run_id, spec.name, request.to_dict(), env, self.source)
        variants = plan_variants(request)
        total = len(variants) * len(request.batch_sizes)
        self.on_event(events.RunStarted(run_id, model=spec.name, total=total, done=len(done),
                                        resumed=bool(resume_run_id)))
        lock = MeasurementLock(run_id, self.source, cancel=self.cancel,
                               on_wait=lambda holder: self.on_event(events.WaitingForMachine(run_id, holder)))
        try:
            with lock:
                if lock.waited_s > 0 and lock.waited_s >= lock.poll_s:
                    self.on_event(events.WaitingForMachine(run_id, None))
                self._measure(run_id, spec, request, variants, done)
        except (KeyboardInterrupt, SweepInterrupted, Cancelled) as exc:
            with held_interrupts():  # a second Ctrl-C must not cut the recording of the first short
                self._kill_all()
                self._record_partial(run_id, spec)
                reason = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else "cancelled"
                self._to_sinks("run_ended", run_id, "interrupted", reason)
            self.on_event(events.RunFinished(run_id, "interrupted"))
            raise SweepInterrupted(run_id) from None
        except BaseException as exc:
            self._kill_all()
            cause = store_write_error(self.store.path, exc)
            if cause:  # a full disk or a read-only store: one line, the run stays resumable
                with contextlib.suppress(Exception):
                    self._to_sinks("run_ended", run_id, "interrupted", cause)
                self.on_event(events.RunFinished(run_id, "interrupted"))
                raise StoreError(f"{cause}. Finished results are kept: resume with qbench run --resume "
                                 f"{run_id}") from None
            message = str(exc) if isinstance(exc, ModelLoadError) else f"{type(exc).__name__}: {exc}"
            self._to_sinks("run_ended", run_id, "failed", message)
            self.on_event(events.RunFinished(run_id, "failed"))
            raise
        else:  # recorded before the fork server stops: a Ctrl-C there cannot unfinish a complete run
            self._to_sinks("run_ended", run_id, "finished", None)
        finally:
            if not self.keep_fork_server:
                with held_interrupts():
                    stop_fork_server()
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
        row = result.to_dict()
        if result.status == "ok" and not rules.is_reference(row):
            ratio = rules.speedup(rules.fp32_reference(row, self._recorded), row)
            if ratio:  # the median of per-round ratios against fp32 on the same runtime and device
                result.metrics["speedup_vs_fp32"] = {k: ratio[k] for k in ("ratio", "low", "high", "rounds")}
        self._to_sinks("result_recorded", run_id, result)
        self._recorded.append(result.to_dict())
        self.on_event(events.ResultRecorded(run_id, result.to_dict()))

    # --- the sweep ----------------------------------------------------------------------------

    def _measure(self, run_id: str, spec: ModelSpec, request: SweepRequest, variants: list[Variant],
                 done: set) -> None:
        repeat = request.measure.repeat
        for index, variant in enumerate(variants):
            missing = [b for b in request.batch_sizes
                       if (variant.recipe.id, variant.runtime, variant.device, b) not in done]
            if not missing:
                continue
            slot = self._plan(run_id, spec, request, variant, missing, index, len(variants))
            if slot is None:
                continue
            self._slots.append(slot)
            self._check_cancel()
            self._start(run_id, slot, request)
            if not slot.live:
                self._finish(run_id, spec, slot)
                continue
            if repeat == 1:  # one block each: measure now, free the memory, record at once
                self._round(run_id, slot, 0, request)
                self._finish(run_id, spec, slot)
            else:
                slot.keep = self._memory_allows(slot)
                if not slot.keep:
                    slot.child.stop()
        if repeat > 1:
            self._rounds(run_id, spec, request, repeat)

    def _rounds(self, run_id: str, spec: ModelSpec, request: SweepRequest, repeat: int) -> None:
        for index in range(repeat):
            for slot in rounds_mod.round_order([s for s in self._slots if s.live], index):
                self._check_cancel()
                self._round(run_id, slot, index, request)
        # While rounds were measured with other processes using the CPU, the whole sweep measures
        # more rounds (up to ``repeat`` more): every variant, so that speedups keep their pairs.
        for extra in range(repeat):
            live = [s for s in self._slots if s.live]
            if not any(sum(rounds_mod.under_load(r) for r in s.rounds.get(b, [])) > extra
                       for s in live for b in s.batch_sizes):
                break
            for slot in rounds_mod.round_order(live, repeat + extra):
                self._check_cancel()
                self._round(run_id, slot, repeat + extra, request)
        # fp32 first, so that each variant's speedup can be computed from its rounds as it is recorded
        for slot in sorted(self._slots, key=lambda s: (not rules.is_reference({"recipe": s.variant.recipe.to_list()}),
                                                       s.index)):
            self._finish(run_id, spec, slot)

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            raise SweepInterrupted("cancelled")

    def _memory_allows(self, slot: _Slot) -> bool:
        import psutil

        memory = psutil.virtual_memory()
        return memory.available - (slot.child.rss_mb() or 0) * 2**20 > KEEP_FREE_SHARE * memory.total

    # --- one variant's child --------------------------------------------------------------------

    def _plan(self, run_id: str, spec: ModelSpec, request: SweepRequest, variant: Variant, batch_sizes: list[int],
              index: int, count: int) -> _Slot | None:
        started = now_iso()
        recipe = variant.recipe
        info = events.VariantInfo(recipe.method, recipe.label, recipe.id, variant.runtime, variant.device)
        self.on_event(events.VariantStarted(run_id, info, index, count, tuple(batch_sizes)))
        planned = catalog.plan_variant(recipe, variant.runtime, variant.device, spec.source_format)
        if not isinstance(planned, Plan):
            for b in batch_sizes:
                self._record(run_id, Result(**variant.identity(spec.name, b), status="unsupported", error=planned,
                                            started_at=started))
            return None
        workdir = artifacts_dir(run_id) / f"{recipe.label}-{recipe.id[:6]}-{variant.runtime}-{variant.device}"
        workdir.mkdir(parents=True, exist_ok=True)
        job = {
            "model": spec.to_dict(), "method": recipe.method, "plan": [p.to_dict() for p in planned.passes],
            "runtime": variant.runtime, "runtime_config": variant.identity(spec.name, 0)["runtime_config"],
            "device": variant.device, "batch_sizes": batch_sizes, "threads": request.effective_threads,
            "threads_rule": request.threads_rule,
            "measure": request.measure.to_dict(), "workdir": str(workdir),
            # A forked child keeps the fork server's environment; the sweep's own settings travel here.
            "env": {k: v for k, v in os.environ.items() if k.startswith("QBENCH_")},
        }
        child = WorkerProcess(self.cancel, request.memory_limit_mb)
        return _Slot(variant, planned, batch_sizes, index, job, started, child, passes=planned.names)

    def _handler(self, run_id: str, slot: _Slot) -> Callable[[dict[str, Any]], None]:
        def handle(event: dict[str, Any]) -> None:
            kind = event.pop("event")
            if kind == "runtime_info":
                slot.runtime_info.update(event["info"])
            elif kind == "passes":
                slot.passes = event["passes"]
            elif kind == "error":
                slot.error = event["error"]
            elif kind == "phase":
                self.on_event(events.PhaseChanged(run_id, event["phase"], event.get("batch_size"),
                                                  event.get("detail") or {}))
            elif kind == "latency":
                self.on_event(events.LatenciesMeasured(run_id, tuple(event["ms"])))

        return handle

    def _start(self, run_id: str, slot: _Slot, request: SweepRequest) -> None:
        """Start the slot's child and wait until it is loaded (``ready``), or record why not."""
        log_path = Path(slot.job["workdir"]) / "worker.log"
        slot.child.start(slot.job, log_path, request.effective_threads)
        try:
            event = slot.child.wait_for({"ready", "unsupported", "model_error", "error"},
                                        self._handler(run_id, slot), request.timeout_s)
        except ChildEnded as exc:
            slot.ended = exc.reason or slot.error or exit_reason(slot.child.returncode, log_path)
            return
        kind = event.pop("event")
        if kind == "model_error":
            slot.child.kill()
            raise ModelLoadError(event["error"])
        if kind == "ready":
            slot.ready = slot.ready or event  # a restarted child's figures are those of its first load
            return
        slot.child.stop()
        if kind == "unsupported":
            slot.unsupported = event.pop("reason")
            slot.unsupported_figures = event  # what the passes' artifact showed before the refusal
        else:
            slot.ended = event["error"]

    def _round(self, run_id: str, slot: _Slot, index: int, request: SweepRequest) -> None:
        """One timing round of each of the slot's batch sizes."""
        if not slot.child.alive:
            self._start(run_id, slot, request)
            if not slot.live:
                return
        for b in slot.batch_sizes:
            slot.child.send({"cmd": "measure", "round": index, "batch_size": b})
            try:
                event = slot.child.wait_for({"round", "unsupported", "error"}, self._handler(run_id, slot),
                                            request.timeout_s)
            except ChildEnded as exc:
                slot.ended = exc.reason or slot.error or exit_reason(slot.child.returncode, slot.child.log_path)
                return
            kind = event.pop("event")
            if kind == "round":
                slot.rounds.setdefault(b, []).append(event)
                continue
            slot.child.stop()
            if kind == "unsupported":
                slot.unsupported = event["reason"]
            else:
                slot.ended = event["error"]
            return
        if not slot.keep:
            slot.child.stop()

    def _finish(self, run_id: str, spec: ModelSpec, slot: _Slot, interrupted: bool = False) -> None:
        """End the slot's child and record one result per batch size (once)."""
        if slot.child.alive:
            slot.child.stop()
        if slot.recorded:
            return
        slot.recorded = True
        for b in slot.batch_sizes:
            self._record(run_id, self._result(spec, slot, b, interrupted))

    def _result(self, spec: ModelSpec, slot: _Slot, batch_size: int, interrupted: bool) -> Result:
        base = {**slot.variant.identity(spec.name, batch_size), "started_at": slot.started,
                "runtime_info": slot.runtime_info, "passes": slot.passes}
        measured = slot.rounds.get(batch_size) or []
        if slot.unsupported and not measured:
            return Result(**base, status="unsupported", error=slot.unsupported, **slot.unsupported_figures)
        if not measured or slot.ready is None:
            why = slot.ended or slot.error or "not measured"
            return Result(**base, status="failed", error=why)
        ready = slot.ready
        latency, spread, flags = rounds_mod.combine(measured)
        first = next((r for r in measured if "extra" in r), measured[0])
        quiet = rounds_mod.quiet_rounds(measured)
        memory = {**ready["memory"], "timing_peak_mb": max(r["timing_peak_mb"] for r in quiet),
                  "timing_growth_mb": max(r["timing_growth_mb"] for r in quiet),
                  "device_mb": first.get("device_memory_mb"), "process_peak_mb": first.get("process_peak_mb"),
                  "method": first.get("memory_method")}
        if memory["process_peak_mb"] is not None and memory.get("baseline_mb") is not None:  # what the limit caps
            memory["variant_peak_mb"] = max(0.0, memory["process_peak_mb"] - memory["baseline_mb"])
        notes = list(ready["notes"])
        for warning in first.get("warnings") or []:
            if warning not in notes and not warning.startswith("p99 from"):
                notes.append(warning)
        if latency.get("samples", 0) < 100:
            notes.append(f"p99 from only {latency.get('samples', 0)} samples")
        if slot.ended:
            notes.append(f"ended after {len(measured)} round(s): {slot.ended}")
        if interrupted:
            notes.append(f"interrupted after {len(measured)} round(s)")
            flags = [*flags, "partial"]  # measured again by --resume
        loaded = [r for r in measured if rounds_mod.under_load(r)]
        if loaded:
            notes.append(f"{len(loaded)} of {len(measured)} rounds measured while other processes used the CPU "
                         f"(up to {max(r['other_cpu'] for r in loaded):.1f} cores)"
                         + ("; left out of the figures" if len(loaded) < len(measured) else ""))
        metrics = {**ready["metrics"], **(first.get("extra") or {}),
                   "rss_delta_mb": ready["memory"].get("open_mb"), "device_memory_mb": first.get("device_memory_mb"),
                   "other_cpu_cores": max(r["other_cpu"] for r in measured)}
        rounds = [{"round": r["round"], "latency": r["latency"], "other_cpu": r["other_cpu"],
                   "memory_mb": r["memory_mb"], "wall_s": round(r["wall_s"], 3)} for r in measured]
        mean = latency.get("mean") or 0
        return Result(
            **base, status="ok", latency_ms=latency,
            throughput_per_s=batch_size * 1000.0 / mean if mean > 0 else None,
            load_s=ready["load_s"], quantize_s=ready["quantize_s"], peak_rss_mb=first.get("process_peak_mb"),
            size_mb=ready["size_mb"], accuracy=ready["accuracy"], agreement=ready["agreement"], metrics=metrics,
            notes=notes, artifact=ready["artifact"], memory_mb=max(r["memory_mb"] for r in quiet), memory=memory,
            rounds=rounds, spread=spread, flags=[*ready.get("flags", []), *flags],
            energy=energy_figure(quiet, batch_size, metrics.get("decode_tokens_per_s")),
        )

    def _kill_all(self) -> None:
        for slot in self._slots:
            slot.child.kill()

    def _record_partial(self, run_id: str, spec: ModelSpec) -> None:
        """On an interrupt: variants with at least one round keep it (noted); the others are
        left for ``--resume``."""
        recorded = {(r["recipe_id"], r["runtime"], r["device"], r["batch_size"]) for r in self._recorded}
        for slot in self._slots:
            for b in slot.batch_sizes:
                key = (slot.variant.recipe.id, slot.variant.runtime, slot.variant.device, b)
                if key in recorded or not slot.rounds.get(b) or slot.ready is None:
                    continue
                try:
                    self._record(run_id, self._result(spec, slot, b, interrupted=True))
                except Exception:  # noqa: BLE001, S110 - the interrupt must still end the run
                    pass


def run_sweep(request: SweepRequest, store: Store, on_event: EventHandler | None = None,
              cancel: threading.Event | None = None, source: str = "cli") -> SweepOutcome:
    return SweepRunner(store, on_event, cancel, source).run(request)


__all__ = ["SweepInterrupted", "SweepOutcome", "SweepRequest", "SweepRunner", "Variant", "plan_variants",
           "run_sweep"]
