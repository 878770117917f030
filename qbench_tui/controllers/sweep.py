"""The sweep lifecycle as one state machine, and the worker thread that drives the engine.

::

    idle ─begin→ starting ─first event→ running ─→ finished | failed
                    │                      │
                    └────────cancel────────┴→ cancelling ─→ cancelled | finished | failed
    finished | cancelled | failed ─begin→ starting

The state changes on the UI thread only: :meth:`SweepController.begin` and :meth:`~SweepController.cancel`
from the user's keys, :meth:`~SweepController.observe` for each message the worker posts (so the
state is always what the screen has shown). The worker thread never touches the state: it runs
the engine's runner, turns its typed events into app messages (``messages.py``) and every way a
sweep can end (finished, cancelled, an engine error) into one final message. Nothing raised in the
worker reaches Textual.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.message import Message

from engines import catalog
from qbench_tui import messages


class SweepState(enum.Enum):
    IDLE = "idle"
    STARTING = "starting"  # the worker is starting the runner; no event yet
    RUNNING = "running"
    CANCELLING = "cancelling"  # cancel asked; the runner is stopping its child process
    FINISHED = "finished"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        """A sweep is under way (it may still be stopping)."""
        return self in (SweepState.STARTING, SweepState.RUNNING, SweepState.CANCELLING)


_ENDED = frozenset({SweepState.FINISHED, SweepState.CANCELLED, SweepState.FAILED})
TRANSITIONS: dict[SweepState, frozenset[SweepState]] = {
    SweepState.IDLE: frozenset({SweepState.STARTING}),
    # A resumed run with nothing left may end before its first event; any stage may fail.
    SweepState.STARTING: frozenset({SweepState.RUNNING, SweepState.CANCELLING, *_ENDED}),
    SweepState.RUNNING: frozenset({SweepState.CANCELLING, *_ENDED}),
    # The last measurement may finish while the cancel travels: finished is a fair ending too.
    SweepState.CANCELLING: _ENDED,
    **{ended: frozenset({SweepState.STARTING}) for ended in _ENDED},
}

# The state each of the worker's messages moves the sweep to (the others leave it as it is).
_MESSAGE_STATES: dict[type[Message], SweepState] = {
    messages.SweepStarted: SweepState.RUNNING,
    messages.SweepFinished: SweepState.FINISHED,
    messages.SweepCancelled: SweepState.CANCELLED,
    messages.SweepFailed: SweepState.FAILED,
}


class SweepStateError(RuntimeError):
    """A transition the lifecycle does not allow (a bug in the caller, or a second sweep)."""


class SetupError(ValueError):
    """The sweep set-up in the UI is incomplete or invalid; ``field`` names the culprit."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class SweepSetup:
    """What the configurator holds: the engine's :class:`~engines.bench.request.SweepRequest` as
    plain data, and the choices the app makes around a sweep.

    ``request`` holds the request's fields as ``SweepRequest.from_dict`` reads them (recipe texts
    as the CLI takes them, ``int4:group_size=128``; sequences as tuples; the measurement settings
    as a dict): SweepRequest is the one place its fields are declared, and they read through as
    attributes here (``setup.methods``, ``setup.batch_sizes``; a field not given reads as the
    request's default). Build one with :meth:`of`.
    """

    request: dict[str, Any]
    choose_device: bool = False  # devices "auto" (or several): report the best device when the sweep ends
    # methods "auto": its candidate recipes, searched (screened, finalists measured: engines.bench.autosearch)
    # beside the methods named with it, rather than all measured fully
    auto: tuple[str, ...] = ()
    explicit: tuple[str, ...] = ()

    @classmethod
    def of(cls, *, choose_device: bool = False, auto: tuple[str, ...] = (), explicit: tuple[str, ...] = (),
           **request: Any) -> SweepSetup:
        """``SweepSetup.of(model=…, methods=[…], runtimes=[…], batch_sizes=[1, 8], configs={…})``: the
        request's fields by their SweepRequest names (an unknown name raises SetupError)."""
        unknown = sorted(set(request) - set(_request_defaults()))
        if unknown:
            raise SetupError(f"a sweep has no setting {', '.join(unknown)}; valid: {', '.join(_request_defaults())}")
        plain = {k: tuple(v) if isinstance(v, list) else v for k, v in request.items()}  # as the request holds them
        return cls(plain, choose_device, tuple(auto), tuple(explicit))

    def __getattr__(self, name: str) -> Any:
        request = self.__dict__.get("request")
        if name.startswith("_") or request is None:
            raise AttributeError(name)
        if name in request:
            return request[name]
        defaults = _request_defaults()
        if name not in defaults:
            raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")
        return defaults[name]

    @property
    def variant_count(self) -> int:
        return len(self.methods) * len(self.runtimes) * len(self.devices)

    @property
    def measurement_count(self) -> int:
        return self.variant_count * len(self.batch_sizes)

    def to_dict(self) -> dict[str, Any]:
        """The request's fields and the app's choices, flat (the app's remembered set-up)."""
        plain = {k: list(v) if isinstance(v, tuple) else v for k, v in self.request.items()}
        return {**plain, "choose_device": self.choose_device, "auto": list(self.auto), "explicit": list(self.explicit)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepSetup:
        data = dict(data)
        own = {name: data.pop(name) for name in ("choose_device", "auto", "explicit") if name in data}
        return cls.of(**own, **data)


def _request_defaults() -> dict[str, Any]:
    """SweepRequest's fields and their defaults, as plain data (the measurement settings as a
    dict); required fields read as None. Light: the request module imports no engine library."""
    import dataclasses

    from engines.bench.request import SweepRequest

    out: dict[str, Any] = {}
    for f in dataclasses.fields(SweepRequest):
        value = (f.default if f.default is not dataclasses.MISSING else
                 f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        out[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
    return out


AUTO = "auto"  # engines.devices.strategies.AUTO: the CLI's --methods auto / --devices auto


def expand_auto(methods: list[str], devices: list[str], runtimes: list[str],
                device_infos: list[Any]) -> tuple[list[str], list[str], list[Any]]:
    """``auto`` in the set-up, as the CLI expands it: devices → every present device one of the
    chosen runtimes serves; methods → the recipes each chosen device calls for
    (engines.devices.strategies). Returns (methods, devices, the strategies used)."""
    from engines.devices.strategies import device_strategies

    if AUTO in devices:
        served = {d for rt in runtimes if rt in catalog.RUNTIMES for d in catalog.RUNTIMES[rt].devices}
        explicit = [d for d in devices if d != AUTO]
        devices = explicit + [d.name for d in device_infos
                              if d.present and d.name in served and d.name not in explicit]
    strategies: list[Any] = []
    if AUTO in methods:
        infos = {d.name: d for d in device_infos}
        for name in devices:
            if name in infos:
                strategies += device_strategies(infos[name])
        expanded: list[str] = []
        for m in methods:
            for spec in ([st.spec for st in strategies] if m == AUTO else [m]):
                if spec not in expanded:
                    expanded.append(spec)
        methods = expanded
    return list(methods), list(devices), strategies


def method_spec(method: str, values: dict[str, Any]) -> str:
    """``int4`` + ``{"group_size": 128}`` → ``int4:group_size=128`` (the CLI's ``--methods`` syntax)."""
    parts = [method]
    for name, value in values.items():
        value = value.value if isinstance(value, enum.Enum) else value
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if not text or any(c in text for c in ":=,+"):
            raise SetupError(f"{method}.{name}: {text!r} cannot be written in a method spec")
        parts.append(f"{name}={text}")
    return ":".join(parts)


def spec_method(spec: str) -> str:
    """The method a spec starts from: ``int4:group_size=128`` → ``int4``."""
    return spec.split(":", 1)[0]


def pin_spec(spec: str, plain: dict[str, Any], defaults: dict[str, Any]) -> str:
    """``spec`` with the fields the plain method's settings change put back to their defaults.

    The engine applies the plain method's settings (``configs``) first and a spec's fields over
    them, so ``int4:group_size=128`` next to a plain int4 set to ``symmetric=false`` would inherit
    it; a variant means what its spec says, so the others are spelled out.
    """
    named = {part.partition("=")[0] for part in spec.split(":")[1:]}
    unnamed = {k: defaults[k] for k in plain if k not in named and k in defaults}
    return spec + method_spec("", unnamed) if unnamed else spec


def build_request(setup: SweepSetup):
    """The engine's SweepRequest, parsed from the set-up's plain data by the request itself
    (``SweepRequest.from_dict``: recipe texts become recipes there)."""
    from engines.bench.request import SweepRequest

    return SweepRequest.from_dict(setup.request)


class SweepController:
    """Owns the one sweep that may run at a time: its state, cancel flag and worker thread.

    ``post`` delivers the worker's messages to the screen (thread-safe ``post_message``);
    ``spawn`` runs a callable in a thread worker (the screen's ``run_worker``, so an unexpected
    error still ends as a worker state the screen handles).
    """

    def __init__(self, post: Callable[[Message], Any], spawn: Callable[[Callable[[], None]], Any],
                 clock: Callable[[], float] = time.monotonic, store: Any | None = None):
        self.post = post
        self.spawn = spawn
        self.clock = clock
        self.store = store
        self.state = SweepState.IDLE
        self.run_id: str | None = None  # as the UI knows it (set on the first event, or the resumed run)
        self.cancel_event = threading.Event()
        self._idle = threading.Event()  # clear while the worker thread runs
        self._idle.set()
        self._worker_run_id: str | None = None  # the worker thread's own copy
        # store -> the sweep's sinks (the app's tracking queues each result for MLflow); None: the store only
        self.sinks_for: Callable[[Any], list[Any]] | None = None

    # --- state (UI thread) ---------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A sweep is under way or its worker has not returned yet."""
        return self.state.active or not self._idle.is_set()

    def can(self, target: SweepState) -> bool:
        return target in TRANSITIONS[self.state]

    def _to(self, target: SweepState) -> None:
        if not self.can(target):
            raise SweepStateError(f"a sweep cannot go from {self.state.value} to {target.value}")
        self.state = target

    def begin(self, resume_run_id: str | None = None) -> None:
        """Mark a sweep as starting (``start`` does this before its worker runs)."""
        self._to(SweepState.STARTING)
        self.run_id = resume_run_id
        self.cancel_event.clear()

    def start(self, setup: SweepSetup | None = None, resume_run_id: str | None = None) -> None:
        """Start a sweep (or resume the run ``resume_run_id``) in a thread worker."""
        if self.store is None:
            raise SweepStateError("the result store is not open")
        if self.busy:
            raise SweepStateError("a sweep is already running")
        if setup is None and resume_run_id is None:
            raise SweepStateError("nothing to run: give a set-up or a run to resume")
        self.begin(resume_run_id)
        self._idle.clear()  # busy from now on, before the thread is even scheduled
        self.spawn(lambda: self.run(setup, resume_run_id))

    def resume(self, run_id: str) -> None:
        self.start(None, run_id)

    def cancel(self) -> bool:
        """Ask the sweep to stop (its child process is killed); False when none runs."""
        if self.state in (SweepState.STARTING, SweepState.RUNNING):
            self._to(SweepState.CANCELLING)
        elif self.state is not SweepState.CANCELLING and self._idle.is_set():
            return False
        self.cancel_event.set()
        return True

    def observe(self, message: Message) -> bool:
        """Apply one of the worker's messages to the state; False when it is stale and to be ignored."""
        target = _MESSAGE_STATES.get(type(message))
        if target is None:
            return True
        if target is SweepState.RUNNING and self.state is SweepState.CANCELLING:
            return True  # cancelled before the first event: still stopping
        if not self.can(target):
            return False  # e.g. a second ending for a sweep that has ended
        if isinstance(message, messages.SweepStarted):
            self.run_id = message.run_id
        elif getattr(message, "run_id", None):
            self.run_id = message.run_id  # type: ignore[attr-defined]
        self._to(target)
        return True

    def wait(self, timeout: float) -> bool:
        """Block until the worker thread has returned (at exit, after cancel); True when it did."""
        return self._idle.wait(timeout)

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Cancel a running sweep and wait for its worker (which kills the child process)."""
        if not self.busy:
            return True
        self.cancel_event.set()
        if self.state in (SweepState.STARTING, SweepState.RUNNING):
            self._to(SweepState.CANCELLING)
        return self.wait(timeout)

    # --- the worker thread ---------------------------------------------------------------------

    def run(self, setup: SweepSetup | None = None, resume_run_id: str | None = None) -> None:
        """Run (or resume) a sweep to its end; every outcome is posted, nothing is raised."""
        self._idle.clear()
        self._worker_run_id = resume_run_id
        started = self.clock()
        try:
            from engines.bench.runner import SweepInterrupted, SweepRunner

            sinks = self.sinks_for(self.store) if self.sinks_for is not None else None
            runner: Any = SweepRunner(self.store, self._on_event, self.cancel_event, source="tui", sinks=sinks)
            from qbench_tui.controllers.fleet_relay import FleetRelay, fleet_target

            target = fleet_target(self.store.get_run(resume_run_id) if resume_run_id else None)
            if target is not None:  # $QBENCH_CLUSTER: the sweep goes to a fleet, Dask in a process of its own
                runner = FleetRelay(self.store.path, *target, self._on_event, self.cancel_event)
            try:
                if resume_run_id:
                    outcome = runner.resume(resume_run_id)
                elif setup is not None and setup.auto and target is None:
                    outcome = self._search(setup, sinks)
                else:
                    assert setup is not None
                    outcome = runner.run(build_request(setup))
            except SweepInterrupted:
                self.post(messages.SweepCancelled(self._worker_run_id, self.clock() - started))
                return
            self.post(messages.SweepFinished(outcome.run_id, outcome.status, self.clock() - started))
        except Exception as exc:  # noqa: BLE001 - an engine error must end as a message, never as a crash
            self.post(messages.SweepFailed(self._worker_run_id, describe_error(exc)))
        finally:
            self._idle.set()

    def _search(self, setup: SweepSetup, sinks: Any) -> Any:
        """``auto``: screening and finals, each a sweep of its own; the outcome is the finals' run."""
        from types import SimpleNamespace

        from engines.bench.autosearch import search
        from engines.bench.runner import SweepInterrupted, SweepRunner

        def run_one(request, cancel):
            runner = SweepRunner(self.store, self._on_event, cancel, source="tui", sinks=sinks)
            try:
                out = runner.run(request)
            except SweepInterrupted as exc:
                return str(exc), "interrupted", self.store.results(str(exc))
            return out.run_id, out.status, out.results

        found = search(build_request(setup), list(setup.explicit), list(setup.auto), run_one,
                       cancel=self.cancel_event)
        final = [r for r in found["report"]["runs"] if r["phase"] == "finals"] or found["report"]["runs"][-1:]
        return SimpleNamespace(run_id=final[0]["run_id"], status=final[0]["status"])

    def _on_event(self, event: Any) -> None:
        from engines.core import events

        run_id = event.run_id or self._worker_run_id or ""
        if isinstance(event, events.RunStarted):
            self._worker_run_id = run_id
            try:
                run = self.store.get_run(run_id) or {}
            except Exception:  # noqa: BLE001 - the row is a nicety for the detail view; never fatal
                run = {}
            self.post(messages.SweepStarted(run_id, event.model, event.total, event.done, event.resumed, run))
        elif isinstance(event, events.VariantStarted):
            v = event.variant
            self.post(messages.VariantStarted(run_id, v.label, v.runtime, v.device, event.index, event.count,
                                              list(event.batch_sizes)))
        elif isinstance(event, events.PhaseChanged):
            self.post(messages.PhaseChanged(run_id, event.phase, event.batch_size, dict(event.detail)))
        elif isinstance(event, events.LatenciesMeasured):
            self.post(messages.LatenciesMeasured(run_id, list(event.ms)))
        elif isinstance(event, events.ResultRecorded):
            self.post(messages.ResultRecorded(run_id, {**event.result, "run_id": run_id}))
        elif isinstance(event, events.WaitingForMachine):
            self.post(messages.SweepWaiting(run_id, event.holder))
        # RunFinished is reported once the runner returns (with the elapsed time).


def describe_error(exc: BaseException) -> str:
    """One readable line: the exception's own message, its type only when it has none."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    from engines.core.errors import ModelLoadError
    from engines.store import StoreError  # a full disk, a read-only store: the cause and the resume command

    if isinstance(exc, (ValueError, KeyError, FileNotFoundError, ModelLoadError, StoreError)):
        return text
    return f"{type(exc).__name__}: {text}"
