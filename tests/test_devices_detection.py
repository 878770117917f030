"""Device detection, the CPU's int8 instruction sets, per-device strategies and the automatic
device choice: on this machine's real /proc/cpuinfo, and on real cpuinfo/sysctl text of others."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

from engines.analysis.device_choice import choose_device
from engines.devices import DeviceInfo, cpu_features, detect_devices
from engines.devices.apple import parse_macmon
from engines.devices.isa import CpuFeatures, parse_cpuinfo, parse_sysctl
from engines.devices.strategies import cpu_strategies, device_strategies, expand_devices, expand_methods, isa_notes

# Excerpts in the kernels' own formats (Skylake-SP without VNNI; Cascade Lake; Graviton 3 / Ampere).
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 ssse3 fma avx avx2 f16c avx512f avx512dq avx512bw avx512vl\n"
CASCADE = SKYLAKE.replace("avx512vl", "avx512vl avx512_vnni")
HASWELL = "flags\t\t: fpu sse2 avx avx2 fma f16c\n"
GRAVITON = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 asimdhp asimddp sve i8mm bf16\n"
M2_SYSCTL = ("hw.optional.neon: 1\nhw.optional.arm.FEAT_DotProd: 1\nhw.optional.arm.FEAT_I8MM: 1\n"
             "hw.optional.arm.FEAT_BF16: 1\nhw.optional.arm.FEAT_FP16: 1\nhw.optional.arm.FEAT_SME: 0\n")


def test_cpuinfo_and_sysctl_give_the_int8_instruction_sets():
    assert parse_cpuinfo(SKYLAKE, "x86_64") == ("fma", "f16c", "avx2", "avx512f", "avx512bw", "avx512vl")
    assert "avx512_vnni" in parse_cpuinfo(CASCADE, "x86_64")
    assert parse_cpuinfo(GRAVITON, "aarch64") == ("neon", "dotprod", "i8mm", "fp16", "bf16", "sve")
    assert parse_sysctl(M2_SYSCTL) == ("neon", "dotprod", "i8mm", "fp16", "bf16")  # SME: 0 is absent
    assert CpuFeatures("x86_64", parse_cpuinfo(CASCADE, "x86_64"), "t").family == "avx512_vnni"
    assert CpuFeatures("x86_64", parse_cpuinfo(SKYLAKE, "x86_64"), "t").family == "avx512"
    assert CpuFeatures("arm64", parse_sysctl(M2_SYSCTL), "t").int8_dot


def test_this_machines_cpu_features_match_its_own_cpuinfo():
    isa = cpu_features()
    if platform.system() == "Linux":
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            text = fh.read()
        assert isa.source == "/proc/cpuinfo"
        flags = set(next(line for line in text.splitlines() if line.lower().startswith(("flags", "features")))
                    .split(":", 1)[1].split())
        assert ("avx512_vnni" in flags) == isa.has("avx512_vnni")
        assert ("avx2" in flags) == isa.has("avx2")
    [cpu] = [d for d in detect_devices() if d.name == "cpu"]
    assert cpu.present and cpu.features == isa.features and cpu.kind == "cpu"


def test_every_device_is_listed_and_an_absent_one_says_why():
    devices = {d.name: d for d in detect_devices()}
    assert set(devices) == {"cpu", "cuda", "mps", "gpu", "ane"}
    for d in devices.values():
        assert d.present or d.detail.strip(), d
    if platform.system() != "Darwin":
        for name in ("mps", "gpu", "ane"):
            assert not devices[name].present and "macOS" in devices[name].detail


def test_strategies_follow_the_instruction_set():
    vnni = {s.spec: s.why for s in cpu_strategies(CpuFeatures("x86_64", parse_cpuinfo(CASCADE, "x86_64"), "t"))}
    assert "dynamic-int8" in vnni and "fuse+dynamic-int8" in vnni and "static-int8:per_channel=true" in vnni
    assert "int4" not in vnni and not any("activation_type=int8" in spec for spec in vnni)  # slower than fp32 here
    assert "AVX512_VNNI" in vnni["dynamic-int8"]
    avx2 = [s.spec for s in cpu_strategies(CpuFeatures("x86_64", parse_cpuinfo(HASWELL, "x86_64"), "t"))]
    assert "dynamic-int8:reduce_range=true" in avx2 and "static-int8:activation_type=uint8:per_channel=true" in avx2
    arm = {s.spec: s.why for s in cpu_strategies(CpuFeatures("arm64", parse_sysctl(M2_SYSCTL), "t"))}
    assert "sdot" in arm["dynamic-int8"] and "i8mm" in arm["int4"]
    ane = [s.spec for s in device_strategies(DeviceInfo("ane", "ANE", True, "", kind="npu"))]
    assert "fp16" in ane and any(s.startswith("palettize") for s in ane) and "fp32" not in ane


def test_auto_expands_into_each_devices_recipes_once_and_keeps_explicit_ones():
    specs, used = expand_methods(("fp16", "auto"), ["cpu", "cpu"])
    assert specs[0] == "fp16" and specs.count("fp32") == 1 and len(specs) == len(set(specs))
    assert {s.device for s in used} == {"cpu"}
    assert expand_methods(("int4",), ["cpu"]) == (["int4"], [])
    present = [d.name for d in detect_devices() if d.present]
    assert expand_devices(("auto",)) == present
    assert expand_devices(("auto",), {"cpu"}) == ["cpu"]


def test_isa_notes_say_what_was_found_and_what_the_settings_use():
    [note] = isa_notes("cpu", [{"reduce_range": False, "per_channel": True}])
    assert note.startswith("CPU int8 ISA: ") and "full-range weights" in note
    assert isa_notes("gpu", [{"reduce_range": False}]) == []


def _result(device, label, p50, top1=1.0, status="ok", rss=100.0):
    return {"device": device, "method": label, "label": label, "runtime": "rt", "batch_size": 1, "status": status,
            "latency_ms": {"p50": p50} if p50 else None, "throughput_per_s": 1000 / p50 if p50 else None,
            "peak_rss_mb": rss, "agreement": {"top1": top1}, "metrics": {}, "error": None}


def test_the_automatic_choice_takes_the_fastest_faithful_device_with_its_evidence():
    results = [_result("cpu", "fp32", 2.0), _result("cpu", "int4", 1.0),
               _result("gpu", "int4", 0.3, top1=0.5),  # fast but wrong: not evidence
               _result("gpu", "fp16", 0.6), _result("ane", "fp16", None, status="unsupported")]
    choice = choose_device(results, "latency")
    assert choice["device"] == "gpu" and [e["device"] for e in choice["evidence"]] == ["gpu", "cpu"]
    assert choice["evidence"][0]["label"] == "fp16" and "ane" in choice["unmeasured"]
    assert "gpu" in choice["reason"] and "0.600 ms" in choice["reason"]
    memory = choose_device([_result("cpu", "fp32", 1, rss=50), _result("gpu", "fp32", 1, rss=80)], "memory")
    assert memory["device"] == "cpu"
    assert choose_device([_result("cpu", "fp32", None, status="failed")])["device"] is None


def test_macmon_samples_parse_in_both_field_styles():
    new = parse_macmon({"gpu_active_ratio": 0.25, "gpu_power": 3.5, "ane_power": 0.5, "sys_power": 12.0,
                        "memory": {"ram_usage": 8 * 2**30, "ram_total": 16 * 2**30}})
    assert new["gpu_utilisation"] == 25.0 and new["ane_power_w"] == 0.5 and new["memory_total_mb"] == 16 * 1024
    assert parse_macmon({"gpu_usage": [1398, 0.5]})["gpu_utilisation"] == 50.0


def test_qbench_devices_json_is_truthful_and_stays_light():
    code = ("import sys; from qbench_tui.cli import main; rc = main(['devices', '--json']); "
            "print('HEAVY', sorted(m for m in ('torch', 'mlx', 'coremltools', 'numpy') if m in sys.modules), "
            "file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    rows = {d["name"]: d for d in json.loads(out.stdout)}
    assert rows["cpu"]["features"] == list(cpu_features().features)
    assert rows["cpu"]["isa"]["family"] == cpu_features().family
    assert all(r["present"] == d.present for d in detect_devices() for n, r in rows.items() if n == d.name)
    assert "HEAVY []" in out.stderr
