"""The background MLflow sender never competes with a measurement: it runs at the lowest priority
(nice 19, and Linux's idle class) and holds back while a sweep holds the measurement lock."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from engines.bench.lock import MeasurementLock
from engines.store import Store
from engines.store.outbox import enqueue
from engines.tracking.sender import measuring


def test_the_background_sender_waits_for_the_measurement_lock_at_the_lowest_priority(tmp_path):
    db = tmp_path / "qbench.db"
    store = Store(db)
    store.create_run("r1", "digits-mlp", {}, {}, "test")
    with store.conn:
        enqueue(store.conn, "http://127.0.0.1:9", "run_started", "r1")  # nothing listens there
    store.close()
    assert not measuring()
    lock = MeasurementLock("sweep-1", "test")
    with lock:
        assert measuring()
        sender = subprocess.Popen([sys.executable, "-m", "engines.tracking.sender", "--db", str(db), "--background"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            time.sleep(3.0)
            assert sender.poll() is None, sender.stdout.read()  # holding back while the sweep measures
            assert psutil.Process(sender.pid).nice() == 19
            if hasattr(os, "SCHED_IDLE"):
                assert os.sched_getscheduler(sender.pid) == os.SCHED_IDLE
        except BaseException:
            sender.kill()
            raise
    assert not measuring()
    try:
        sender.wait(timeout=60)  # the sweep ended: it goes on (the server is down: the entry stays queued)
    except subprocess.TimeoutExpired:
        sender.kill()
        pytest.fail("the sender did not go on once the measurement lock was released")
