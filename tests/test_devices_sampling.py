"""The shared device sampler on the real machine: psutil readings and a real child process
(the way the app's meters see a benchmark worker)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from engines.devices import DeviceInfo
from engines.devices.sampling import AcceleratorSample, DeviceSampler, parse_nvidia_smi

# Holds ~40 MiB so its RSS is clearly above an idle interpreter's, then waits to be killed.
CHILD = """
import time
block = bytearray(40 * 2**20)
block[::4096] = b"x" * len(block[::4096])  # touch every page: RSS counts only what is touched
print("ready", flush=True)
time.sleep(60)
"""


def test_a_sample_reads_the_machine_and_this_process():
    sampler = DeviceSampler(devices=lambda: [DeviceInfo("cpu", "CPU", True, "test")])
    time.sleep(0.1)  # cpu_percent compares with the reading taken at construction
    sample = sampler.sample()
    assert sample.per_cpu and all(0.0 <= p <= 100.0 for p in sample.per_cpu)
    assert 0.0 <= sample.cpu_total <= 100.0
    assert 0 < sample.memory_used_mb <= sample.memory_total_mb
    assert sample.app_rss_mb > 10  # a Python interpreter with pytest loaded
    assert sample.accelerators == ()  # CPU only in the device list given
    json.dumps(sample.to_dict())  # plain data: `qbench devices --json` can print it


def test_a_reading_on_another_thread_covers_the_time_since_the_counters_were_read():
    # The app reads the counters at start-up on its main thread and samples on worker threads;
    # psutil's own cpu_percent keeps its previous counters per thread (the first reading on a
    # new thread was 0 %, whatever the machine did).
    import threading

    import psutil

    sampler = DeviceSampler(devices=list, cpu_times_since=psutil.cpu_times(percpu=True))
    until = time.monotonic() + 0.3
    while time.monotonic() < until:  # this process keeps one core busy meanwhile
        pass
    got: list[tuple[float, ...]] = []
    reader = threading.Thread(target=lambda: got.append(sampler.sample().per_cpu))
    reader.start()
    reader.join()
    assert max(got[0]) > 20.0


def test_a_child_process_is_seen_with_its_memory_and_forgotten_when_it_ends():
    sampler = DeviceSampler(devices=list)
    assert sampler.sample().bench_pids == ()
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        sample = sampler.sample()
        assert child.pid in sample.bench_pids
        assert sample.bench_rss_mb is not None and sample.bench_rss_mb > 40
        assert sample.bench_cpu is not None and sample.bench_cpu >= 0.0
    finally:
        child.kill()
        child.wait(10)
    after = sampler.sample()
    assert child.pid not in after.bench_pids


def test_absent_and_apple_accelerators_say_why_without_probing():
    devices = [DeviceInfo("cpu", "CPU", True, "x"), DeviceInfo("cuda", "NVIDIA GPU (CUDA)", False, "no driver"),
               DeviceInfo("mps", "Apple GPU (Metal)", True, "Apple Silicon")]
    accelerators = DeviceSampler(devices=lambda: devices).sample_accelerators()
    assert [a.name for a in accelerators] == ["cuda", "mps"]
    assert accelerators[0] == AcceleratorSample("cuda", "NVIDIA GPU (CUDA)", False, "no driver")
    assert "macmon" in accelerators[1].detail  # what is missing for GPU activity, and how to get it
    assert accelerators[1].memory_total_mb  # unified memory: the system's pool


def test_nvidia_smi_lines_are_parsed_and_missing_values_stay_none():
    dev = DeviceInfo("cuda", "NVIDIA GPU (CUDA)", True, "NVIDIA driver found")
    text = "0, NVIDIA H100 80GB HBM3, 37, 1024, 81559, 112.5\n1, Tesla T4, [N/A], 10, 15360, [N/A]\nbad line\n"
    first, second = parse_nvidia_smi(text, dev)
    assert (first.name, first.title, first.utilisation, first.memory_total_mb, first.power_w) == (
        "cuda:0", "NVIDIA H100 80GB HBM3", 37.0, 81559.0, 112.5)
    assert second.utilisation is None and second.power_w is None and second.memory_used_mb == 10.0
