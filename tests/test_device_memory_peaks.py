"""Device memory peaks over the timed calls: the sampler torch's MPS path uses (on a real counter
that rises and falls), MLX's peak reset on its CPU build, and the MPS / Metal paths on a Mac."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from engines.devices.memory import PeakSampler


def test_sampler_catches_a_peak_that_is_gone_by_the_end():
    held: list[bytearray] = [bytearray(1 << 20)]

    def spike() -> None:
        time.sleep(0.03)
        held[0] = bytearray(64 << 20)  # 64 MiB for 50 ms, then freed
        time.sleep(0.05)
        held[0] = bytearray(1 << 20)

    sampler = PeakSampler(lambda: len(held[0]))
    assert sampler.start() == 1 << 20
    worker = threading.Thread(target=spike)
    worker.start()
    worker.join()
    peak = sampler.stop()
    assert peak == 64 << 20  # the counter is back at 1 MiB, the peak is not
    assert sampler.latest == 1 << 20 and sampler.readings > 5


def test_sampler_windows_start_afresh_and_stop_twice_is_harmless():
    value = [10]
    sampler = PeakSampler(lambda: value[0], interval_s=0.001)
    sampler.start()
    value[0] = 500
    time.sleep(0.01)
    assert sampler.stop() == 500
    value[0] = 20
    sampler.start()  # a new window: the old peak does not carry over
    time.sleep(0.005)
    assert sampler.stop() == 20
    assert sampler.stop() == 20


def test_mlx_peak_is_the_timed_calls_not_the_accuracy_pass(tmp_path):
    pytest.importorskip("mlx.core", reason="mlx is not installed (`uv sync --extra mlx`)")
    from engines.bench.worker import open_recipe, run_outputs
    from engines.models import load_model, resolve_model

    model = load_model(resolve_model("digits-mlp"))
    _, session = open_recipe(model, "fp32", "mlx", "cpu", 1, tmp_path)
    # a large accuracy-pass batch: 5,390 rows, a peak ~11x the timed calls' (MLX's CPU build runs a
    # reference BLAS: the time grows with the rows, 40 copies took 20 s)
    big = {k: np.repeat(v, 10, axis=0) for k, v in model.eval_inputs.items()}
    run_outputs(session, big, batch_size=len(next(iter(big.values()))))
    after_accuracy = session.device_memory_mb()
    call = session.bind(model.example_inputs(1))
    session.reset_device_peak()
    for _ in range(20):
        call()
    timed = session.device_memory_mb()
    assert 0 < timed < after_accuracy / 4, (timed, after_accuracy)


def test_torch_cpu_has_no_device_counter_and_no_sampler(tmp_path):
    from engines.bench.worker import open_recipe
    from engines.models import load_model, resolve_model

    model = load_model(resolve_model("digits-mlp"))
    _, session = open_recipe(model, "fp32", "torch", "cpu", 1, tmp_path)
    session.reset_device_peak()
    session.bind(model.example_inputs(1))()
    assert session.device_memory_mb() is None and session.live_device_mb() is None


@pytest.mark.macos
@pytest.mark.parametrize("runtime, device", [("torch", "mps"), ("mlx", "gpu")])
def test_apple_gpu_peaks_are_positive_and_cover_the_timed_calls(runtime, device, tmp_path):
    from engines.bench.worker import open_recipe
    from engines.models import load_model, resolve_model

    model = load_model(resolve_model("digits-mlp"))
    _, session = open_recipe(model, "fp32", runtime, device, 1, tmp_path)
    call = session.bind(model.example_inputs(64))
    session.reset_device_peak()
    for _ in range(20):
        call()
    peak = session.device_memory_mb()
    assert peak is not None and peak > 0


def test_the_watchdog_counts_device_memory_the_worker_reports():
    """A real child whose RSS is small, reporting (as the MPS worker does) device memory the RSS does
    not show: the parent ends it as over the limit, saying so."""
    import socket
    import subprocess
    import sys

    from engines.bench.child import ChildEnded, WorkerProcess, _Handle

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    ours, theirs = socket.socketpair()
    worker = WorkerProcess(threading.Event(), memory_limit_mb=500)
    worker._handle = _Handle(proc.pid, proc.poll, lambda t: proc.wait(t))
    worker._sock, worker._t0 = ours, time.perf_counter()  # what start() sets
    try:
        theirs.sendall(b'{"event": "latency", "ms": [0.1], "device_mb": 2048.0}\n')
        with pytest.raises(ChildEnded, match=r"out of memory: the variant used \d+ MB \(above the harness's own \d+ MB, device memory included\)"):
            worker.wait_for({"round"}, lambda event: None, timeout_s=30)
        assert worker.device_mb == 2048.0
        assert proc.poll() is not None  # killed
    finally:
        if proc.poll() is None:
            proc.kill()
        theirs.close()
