"""The sweep lifecycle as a state machine, without Textual running: the allowed transitions, the
messages that drive them, cancel and shutdown. (Real sweeps from the app: test_tui_sweep.py.)"""

from __future__ import annotations

import threading

import pytest

from qbench_tui import messages
from qbench_tui.controllers.sweep import TRANSITIONS, SweepController, SweepSetup, SweepState, SweepStateError

SETUP = SweepSetup.of(model="digits-mlp", methods=("fp32",), runtimes=("onnxruntime",), devices=("cpu",),
                      batch_sizes=(1,))


class Recorder:
    """Stands in for the screen: collects posted messages and the jobs handed to a worker."""

    def __init__(self) -> None:
        self.posted: list[object] = []
        self.jobs: list[object] = []

    def controller(self, store: object | None = "a store") -> SweepController:
        return SweepController(self.posted.append, self.jobs.append, store=store)


def test_every_state_has_its_transitions_and_endings_lead_only_to_a_new_start():
    assert set(TRANSITIONS) == set(SweepState)
    for ended in (SweepState.FINISHED, SweepState.CANCELLED, SweepState.FAILED):
        assert TRANSITIONS[ended] == {SweepState.STARTING} and not ended.active
    assert TRANSITIONS[SweepState.IDLE] == {SweepState.STARTING}
    assert SweepState.RUNNING not in TRANSITIONS[SweepState.CANCELLING]


def test_a_sweep_goes_idle_starting_running_finished_driven_by_the_workers_messages():
    rec = Recorder()
    sweep = rec.controller()
    sweep.start(SETUP)
    assert sweep.state is SweepState.STARTING and sweep.busy and len(rec.jobs) == 1
    with pytest.raises(SweepStateError, match="already running"):
        sweep.start(SETUP)
    assert sweep.observe(messages.SweepStarted("run-1", "digits-mlp", 1, 0, False))
    assert sweep.state is SweepState.RUNNING and sweep.run_id == "run-1"
    assert sweep.observe(messages.PhaseChanged("run-1", "measure"))  # progress leaves the state alone
    assert sweep.state is SweepState.RUNNING
    assert sweep.observe(messages.SweepFinished("run-1", "finished", 1.0))
    assert sweep.state is SweepState.FINISHED
    # A second ending is stale: ignored, the state stays.
    assert not sweep.observe(messages.SweepFailed("run-1", "late"))
    assert sweep.state is SweepState.FINISHED


def test_cancel_before_the_first_event_stays_cancelling_until_the_worker_ends():
    sweep = Recorder().controller()
    assert not sweep.cancel()  # nothing runs
    sweep.begin()
    assert sweep.cancel() and sweep.cancel_event.is_set()
    assert sweep.state is SweepState.CANCELLING
    sweep.observe(messages.SweepStarted("run-2", "digits-mlp", 2, 0, False))
    assert sweep.state is SweepState.CANCELLING and sweep.busy
    sweep.observe(messages.SweepCancelled("run-2", 0.5))
    assert sweep.state is SweepState.CANCELLED and not sweep.busy
    sweep.begin()  # a new sweep clears the cancel flag
    assert sweep.state is SweepState.STARTING and not sweep.cancel_event.is_set()


def test_illegal_transitions_raise_and_starting_needs_a_store_and_something_to_run():
    sweep = Recorder().controller(store=None)
    with pytest.raises(SweepStateError, match="store"):
        sweep.start(SETUP)
    sweep.store = "a store"
    with pytest.raises(SweepStateError, match="nothing to run"):
        sweep.start()
    with pytest.raises(SweepStateError, match="from idle to running"):
        sweep._to(SweepState.RUNNING)
    assert not sweep.observe(messages.SweepFinished("x", "finished", 0.0))  # never started: stale


def test_resume_starts_with_the_run_id_and_shutdown_waits_for_the_worker():
    rec = Recorder()
    sweep = rec.controller()
    sweep.resume("run-3")
    assert sweep.state is SweepState.STARTING and sweep.run_id == "run-3"
    done = threading.Event()

    def worker() -> None:  # what the worker does on cancel: stop, report, return
        sweep.cancel_event.wait(5)
        sweep._idle.set()
        done.set()

    threading.Thread(target=worker, daemon=True).start()
    assert sweep.shutdown(timeout=5)
    assert done.is_set() and sweep.state is SweepState.CANCELLING


def test_an_engine_error_in_the_worker_ends_as_one_failed_message(monkeypatch: pytest.MonkeyPatch):
    from engines.bench import runner

    class Broken:
        def __init__(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("the engine broke")

    monkeypatch.setattr(runner, "SweepRunner", Broken)
    rec = Recorder()
    sweep = rec.controller()
    sweep.start(SETUP)
    sweep.run(SETUP)  # the job the worker would run, here on this thread
    assert [type(m) for m in rec.posted] == [messages.SweepFailed]
    assert rec.posted[0].error == "RuntimeError: the engine broke"  # type: ignore[attr-defined]
    assert sweep.wait(0) and sweep.observe(rec.posted[0])  # type: ignore[arg-type]
    assert sweep.state is SweepState.FAILED and not sweep.busy
