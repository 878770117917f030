"""The entry point pauses Python's garbage collector until the first frame: resuming turns it
back on once (after one collection), and an app built without the entry point (tests) leaves
the collector as it found it."""

from __future__ import annotations

import gc

from qbench_tui import gc_pause


def test_pause_then_resume_turns_the_collector_back_on_once():
    assert gc.isenabled()
    try:
        gc_pause.pause()
        assert not gc.isenabled()
        gc_pause.pause()  # the trace bench and the entry point may both ask: one pause
        gc_pause.resume()
        assert gc.isenabled() and gc.get_freeze_count() > 0  # start-up's survivors set aside
        gc.disable()
        gc_pause.resume()  # already resumed: it does not turn the collector on a second time
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


def test_resume_without_a_pause_changes_nothing():
    gc.disable()
    try:
        gc_pause.resume()  # a test's app, mounted: the collector stays as the test left it
        assert not gc.isenabled() and gc.get_freeze_count() == 0
    finally:
        gc.enable()
