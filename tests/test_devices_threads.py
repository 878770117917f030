"""The default thread count: performance cores on Apple Silicon (``hw.perflevel0.physicalcpu``), fed
the outputs ``sysctl -n`` gives on real machines; every physical core elsewhere."""

from __future__ import annotations

import sys

import pytest

from engines.bench.request import SweepRequest
from engines.devices.apple import default_threads, performance_cores, sysctl
from engines.methods.recipe import parse_recipes

# `sysctl -n` outputs: an M2 Pro (8 P + 4 E), an M1 (4 + 4), an Intel Mac (no perflevel keys:
# sysctl exits 1 with "unknown oid", which sysctl() turns into None).
M2_PRO = {"hw.perflevel0.physicalcpu": "8\n", "hw.perflevel1.physicalcpu": "4\n", "hw.physicalcpu": "12\n"}
M1 = {"hw.perflevel0.physicalcpu": "4\n", "hw.perflevel1.physicalcpu": "4\n", "hw.physicalcpu": "8\n"}
INTEL_MAC = {"hw.physicalcpu": "6\n"}


def test_apple_silicon_defaults_to_its_performance_cores():
    assert performance_cores(M2_PRO.get) == (8, 4)
    threads, rule = default_threads(12, M2_PRO.get)
    assert threads == 8
    assert rule == "performance cores (hw.perflevel0.physicalcpu = 8; 4 efficiency cores left out)"
    assert default_threads(8, M1.get)[0] == 4


def test_machines_without_performance_levels_use_every_physical_core():
    assert performance_cores(INTEL_MAC.get) is None
    assert default_threads(6, INTEL_MAC.get) == (6, "physical cores (6)")
    assert performance_cores({"hw.perflevel0.physicalcpu": "garbage\n"}.get) is None


def test_sysctl_on_this_machine_answers_or_says_none():
    value = sysctl("hw.perflevel0.physicalcpu")
    if sys.platform != "darwin":
        assert value is None  # Linux's sysctl has no such key (or no sysctl at all)


def test_the_request_records_why_it_uses_its_thread_count():
    given = SweepRequest(model="digits-mlp", methods=parse_recipes(("fp32",)), runtimes=("torch",), threads=3)
    assert given.effective_threads == 3 and given.threads_rule == "given (--threads)"
    default = SweepRequest(model="digits-mlp", methods=parse_recipes(("fp32",)), runtimes=("torch",))
    assert default.effective_threads >= 1
    if sys.platform != "darwin":
        assert default.threads_rule == f"physical cores ({default.effective_threads})"


@pytest.mark.macos
def test_this_mac_defaults_to_its_performance_cores():
    from engines.devices import physical_cores

    cores = performance_cores()
    assert cores is not None and cores[0] >= 1
    assert default_threads(physical_cores())[0] == cores[0]
