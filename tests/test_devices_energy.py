"""Energy readers and arithmetic, on Linux with real data shapes: a powercap tree whose energy_uj
files advance (and wrap at max_energy_range_uj), recorded ``macmon pipe`` lines, and a real child
process standing in for macmon."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from engines.devices import energy
from engines.devices.energy import (
    MacmonMeter,
    Unavailable,
    energy_figure,
    integrate,
    macmon_watts,
    open_meter,
    rapl_meter,
    rapl_step,
    zeus_total_j,
)

# Two `macmon pipe` objects as v0.8 prints them (the README's sample shape, powers in watts).
MACMON_LINES = [
    ('{"timestamp":"2025-02-24T20:38:15.427569+00:00","temp":{"cpu_temp_avg":43.7,"gpu_temp_avg":36.9},'
    '"memory":{"ram_total":25769803776,"ram_usage":20985479168,"swap_total":4294967296,"swap_usage":2602434560},'
    '"ecpu_usage":[1181,0.08],"pcpu_usage":[1974,0.015],"gpu_usage":[461,0.021],"cpu_power":0.20486385,'
    '"gpu_power":0.017451683,"ane_power":0.0,"all_power":0.22231553,"sys_power":5.876533,"ram_power":0.11635789,'
    '"gpu_ram_power":0.0009615385}'),
    ('{"timestamp":"2025-02-24T20:38:15.527569+00:00","memory":{"ram_total":25769803776,"ram_usage":20985479168},'
    '"gpu_usage":[1398,0.92],"cpu_power":1.5,"gpu_power":6.25,"ane_power":0.25,"all_power":8.0,'
    '"sys_power":14.0,"ram_power":0.5,"gpu_ram_power":0.0}'),
]


def powercap_tree(root: Path, packages: dict[str, tuple[int, int]]) -> Path:
    """intel-rapl:N/{name,energy_uj,max_energy_range_uj} plus a subzone that must not be counted."""
    for i, (name, (value, span)) in enumerate(packages.items()):
        d = root / f"intel-rapl:{i}"
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{value}\n")
        (d / "max_energy_range_uj").write_text(f"{span}\n")
        sub = root / f"intel-rapl:{i}:0"
        sub.mkdir()
        (sub / "name").write_text("core\n")
        (sub / "energy_uj").write_text("999999999\n")
        (sub / "max_energy_range_uj").write_text(f"{span}\n")
    return root


def test_rapl_sums_packages_and_survives_wrap_around(tmp_path):
    root = powercap_tree(tmp_path, {"package-0": (1_000_000, 262_143_328_850),
                                    "package-1": (262_143_000_000, 262_143_328_850)})
    meter = rapl_meter(root)
    assert meter.source == "rapl (package-0, package-1)"
    mark = meter.start()
    (root / "intel-rapl:0" / "energy_uj").write_text("3500000\n")  # +2.5 J
    (root / "intel-rapl:1" / "energy_uj").write_text("671150\n")  # wrapped: +328 850 + 671 150 µJ = +1 J
    joules, wall = meter.stop(mark)
    assert joules == pytest.approx(3.5)
    assert wall > 0
    # the next window starts from the wrapped value, not from before the wrap
    mark = meter.start()
    (root / "intel-rapl:1" / "energy_uj").write_text("1671150\n")
    assert meter.stop(mark)[0] == pytest.approx(1.0)


def test_rapl_step_is_exact_at_the_wrap():
    assert rapl_step(10, 25, 100) == 15
    assert rapl_step(90, 5, 100) == 15
    assert rapl_step(7, 7, 100) == 0


def test_rapl_reasons_are_exact(tmp_path):
    with pytest.raises(Unavailable, match=r"RAPL absent: no .*intel-rapl:\* domain"):
        rapl_meter(tmp_path)
    root = powercap_tree(tmp_path / "pc", {"package-0": (5, 100)})
    (root / "intel-rapl:0" / "energy_uj").chmod(0o200)
    if os.access(root / "intel-rapl:0" / "energy_uj", os.R_OK):
        pytest.skip("running as root: every file is readable")
    with pytest.raises(Unavailable, match=rf"RAPL unreadable: .*energy_uj is not readable by uid {os.getuid()}"):
        rapl_meter(root)


def test_this_machine_gives_a_reason_or_a_meter():
    meter, reason = open_meter("cpu")
    if meter is None:
        assert reason and ("RAPL" in reason or "energy" in reason or "macmon" in reason)
    else:
        meter.close()


def test_open_meter_on_linux_reads_the_given_powercap(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("the RAPL path is Linux's")
    meter, reason = open_meter("cpu", powercap=powercap_tree(tmp_path, {"package-0": (0, 1000)}))
    assert reason is None and meter.source.startswith("rapl")
    meter, reason = open_meter("cpu", powercap=tmp_path / "absent")
    assert meter is None and reason.startswith("RAPL absent")


def test_macmon_lines_give_cpu_gpu_ane_dram_watts():
    first, second = (macmon_watts(json.loads(line)) for line in MACMON_LINES)
    assert first == pytest.approx(0.20486385 + 0.017451683 + 0.0 + 0.11635789 + 0.0009615385)
    assert second == pytest.approx(8.5)
    assert macmon_watts({"memory": {}}) is None


def test_integrate_clips_each_sample_to_the_window():
    # samples every 0.1 s; each is the average power of the 0.1 s before it
    samples = [(1.0, 10.0), (1.1, 20.0), (1.2, 30.0), (1.3, 40.0)]
    assert integrate(samples, 1.0, 1.3, 0.1) == pytest.approx(2.0 + 3.0 + 4.0)
    assert integrate(samples, 1.05, 1.25, 0.1) == pytest.approx(0.05 * 20 + 0.1 * 30 + 0.05 * 40)
    assert integrate(samples, 0.9, 1.0, 0.1) == pytest.approx(1.0)  # the first covers the interval before it


def test_zeus_metrics_sum_the_fields_present():
    class Metrics:  # the attributes zeus_apple_silicon.AppleEnergyMetrics has (mJ; None if unavailable)
        cpu_total_mj, gpu_mj, gpu_sram_mj, ane_mj, dram_mj = 1200, 300, None, 50, 450

    assert zeus_total_j(Metrics()) == pytest.approx(2.0)


def fake_macmon(tmp_path: Path, lines: list[str], interval_s: float) -> list[str]:
    """A real child process printing macmon-shaped JSON lines forever, as `macmon pipe` does."""
    script = tmp_path / "macmon_stand_in.py"
    script.write_text(
        "import sys, time\n"
        f"lines = {lines!r}\n"
        "i = 0\n"
        "while True:\n"
        f"    time.sleep({interval_s})\n"
        "    print(lines[i % len(lines)], flush=True)\n"
        "    i += 1\n")
    return [sys.executable, str(script)]


def test_macmon_meter_integrates_a_real_child_and_ends_it(tmp_path):
    line = json.dumps({"cpu_power": 2.0, "gpu_power": 1.0, "ane_power": 0.5, "ram_power": 0.5})  # 4 W
    meter = MacmonMeter(command=fake_macmon(tmp_path, [line], 0.05), interval_ms=50)
    try:
        mark = meter.start()
        time.sleep(0.4)
        joules, wall = meter.stop(mark)
        assert wall == pytest.approx(0.4, abs=0.1)
        assert joules / wall == pytest.approx(4.0, rel=0.35)  # a stand-in on a loaded machine: its gaps vary
    finally:
        meter.close()
    assert not meter._reader.running  # the child is gone, not left running


def test_energy_figure_subtracts_idle_and_divides_by_calls():
    rounds = [
        {"energy": {"joules": 12.0, "wall_s": 2.0, "calls": 100, "idle_w": 1.0, "source": "rapl (package-0)"}},
        {"energy": {"joules": 8.0, "wall_s": 2.0, "calls": 100, "idle_w": 1.0, "source": "rapl (package-0)"}},
    ]
    fig = energy_figure(rounds, batch_size=4)
    assert fig["joules_per_call"] == pytest.approx((20.0 - 1.0 * 4.0) / 200)
    assert fig["joules_per_inference"] == pytest.approx((20.0 - 1.0 * 4.0) / 200 / 4)  # per item, as items/s
    assert fig["watts"] == pytest.approx(5.0)
    assert fig["net_watts"] == pytest.approx(4.0)
    assert fig["idle_subtracted"] is True and fig["idle_watts"] == 1.0
    assert fig["source"] == "rapl (package-0)"
    assert "joules_per_token" not in fig


def test_energy_figure_per_generated_token():
    rounds = [{"energy": {"joules": 10.0, "wall_s": 1.0, "calls": 10, "idle_w": 2.0, "source": "nvml (GPU 0 board)",
                          "generation": {"joules": 30.0, "wall_s": 2.0}}}]
    fig = energy_figure(rounds, 1, decode_tokens_per_s=50.0)
    assert fig["joules_per_token"] == pytest.approx((30.0 - 2.0 * 2.0) / 2.0 / 50.0)


def test_energy_figure_says_why_when_nothing_was_read():
    fig = energy_figure([{"energy": {"reason": "RAPL absent: …"}}, {}])
    assert fig == {"joules_per_inference": None, "reason": "RAPL absent: …"}
    assert energy.describe(fig).startswith("not measured: RAPL absent")
    assert energy_figure([])["reason"] == "not measured"


def fake_macmon_on_path(tmp_path: Path, monkeypatch) -> Path:
    """An executable named ``macmon`` that answers ``macmon pipe -i N`` with macmon-shaped lines."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "macmon"
    exe.write_text(
        f"#!{sys.executable}\n"
        "import sys, time\n"
        "interval = int(sys.argv[sys.argv.index('-i') + 1]) / 1000 if '-i' in sys.argv else 1.0\n"
        f"line = {MACMON_LINES[1]!r}\n"
        "while True:\n"
        "    time.sleep(interval)\n"
        "    print(line, flush=True)\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return exe


def test_device_sampler_shows_macmons_readings_and_ends_it(tmp_path, monkeypatch):
    import psutil

    from engines.devices import DeviceInfo
    from engines.devices.sampling import DeviceSampler

    fake_macmon_on_path(tmp_path, monkeypatch)
    devices = [DeviceInfo("cpu", "CPU", True, "x"), DeviceInfo("mps", "Apple GPU (Metal)", True, "Apple M2")]
    with DeviceSampler(devices=lambda: devices, macmon_interval_ms=50) as sampler:
        sampler.sample()  # starts macmon
        assert sampler.wait_for_macmon(5.0)
        gpu = sampler.sample().accelerators[0]
        children = [p for p in psutil.Process().children(recursive=True) if "macmon" in " ".join(p.cmdline())]
        assert len(children) == 1
    assert (gpu.utilisation, gpu.power_w) == (pytest.approx(92.0), 6.25)  # macmon's readings, not a hint
    assert not children[0].is_running()  # ended and reaped by close(), not left running


def test_devices_sample_cli_ends_macmon(tmp_path, monkeypatch):
    """`qbench devices --sample` on a machine whose macmon is the stand-in: no macmon is left behind
    (Linux has no Apple device, so this checks the command's own exit path leaves no child)."""
    import psutil

    from tests.helpers import qbench

    exe = fake_macmon_on_path(tmp_path, monkeypatch)
    proc = qbench("devices", "--sample", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "sample" in json.loads(proc.stdout)
    left = [p for p in psutil.process_iter(["cmdline"]) if str(exe) in " ".join(p.info["cmdline"] or [])]
    assert left == []


def test_a_macmon_that_ends_at_once_is_a_reason_not_a_meter():
    with pytest.raises(Unavailable, match="macmon ended"):
        MacmonMeter(command=[sys.executable, "-c", "pass"], interval_ms=50)
    with pytest.raises(Unavailable, match="macmon could not start"):
        MacmonMeter(command=["/nonexistent/macmon", "pipe"], interval_ms=50)


@pytest.mark.macos
def test_apple_silicon_reads_energy_without_sudo():
    meter, reason = open_meter("ane")
    assert meter is not None, reason
    try:
        mark = meter.start()
        end = time.perf_counter() + 0.5
        while time.perf_counter() < end:
            sum(i * i for i in range(10_000))  # keep a core busy
        joules, wall = meter.stop(mark)
        assert joules > 0 and 0.4 < wall < 5
    finally:
        meter.close()
