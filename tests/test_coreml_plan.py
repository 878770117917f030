"""The truth of an `ane` label: Core ML's compute plan turned into device shares (``plan_shares``),
and the one placement rule (engines.analysis.placement) that the recorded flag, the JSON, the
table, the report, ``recommend`` and the device choice apply.

The plan objects are coremltools' own classes (``MLComputePlan``, ``MLModelStructure*``,
``MLComputePlanDeviceUsage``, ``MLComputePlanCost``, the ``ML*ComputeDevice`` classes), built
around a stand-in for the macOS-only proxy that ``MLComputePlan.load_from_path`` would return:
the same attributes and calls ``plan_shares`` reads on a Mac.
"""

from __future__ import annotations

import functools

import pytest

from engines.analysis import placement
from engines.analysis.device_choice import choose_device
from engines.analysis.recommend import recommend
from engines.core.schema import Result
from engines.runtimes.coreml.session import plan_shares
from tests.helpers import needs

# Found, not imported, at collection: coremltools imports torch, scikit-learn and scipy (tens of
# seconds); its classes are imported by the first test that builds a plan.
pytestmark = [needs("coremltools", reason="coremltools is not installed (`uv sync --extra coreml`)")]

# The device classes a plan's ops name, by the name coremltools gives them (resolved by _coreml).
ANE, GPU, CPU = "MLNeuralEngineComputeDevice", "MLGPUComputeDevice", "MLCPUComputeDevice"
FUTURE = "MLFutureAcceleratorComputeDevice"


@functools.cache
def _coreml():
    from coremltools.models import compute_device as cd
    from coremltools.models import compute_plan as cp

    class MLFutureAcceleratorComputeDevice(cd.MLComputeDevice):
        """A device class a later coremltools may add: plan_shares must not drop or mislabel it."""

    devices = {name: getattr(cd, name) for name in (ANE, GPU, CPU)} | {FUTURE: MLFutureAcceleratorComputeDevice}
    return cp, devices


def _device(name: str):
    return object.__new__(_coreml()[1][name])  # the real class; its __init__ wants the macOS proxy


def _op(name: str, blocks=()):
    cp = _coreml()[0]
    return cp.MLModelStructureProgramOperation(inputs={}, operator_name=name, outputs=[], blocks=list(blocks),
                                               __proxy__=None)


class _Proxy:
    """What libcoremlpython's _MLComputePlanProxy answers, as data: op → (device class, cost weight)."""

    def __init__(self, program, usage, cost):
        cp = _coreml()[0]
        self.model_structure = cp.MLModelStructure(neuralnetwork=None, program=program, pipeline=None)
        self._usage, self._cost = usage, cost

    def get_compute_device_usage_for_mlprogram_operation(self, op):
        device = self._usage.get(id(op))
        return None if device is None else _coreml()[0].MLComputePlanDeviceUsage(
            preferred_compute_device=_device(device), supported_compute_devices=[_device(device)])

    def get_estimated_cost_for_mlprogram_operation(self, op):
        weight = self._cost.get(id(op))
        return None if weight is None else _coreml()[0].MLComputePlanCost(weight=weight)


def make_plan(ops: list[tuple[str, str | None, float | None]], nested: list[tuple[str, str, float]] = ()):
    """An MLComputePlan over one function whose ops are (name, preferred device class's name, cost
    weight); ``nested`` ops sit in a block inside the last op (a loop body)."""
    cp = _coreml()[0]
    inner = [_op(n) for n, _, _ in nested]
    built = [_op(n) for n, _, _ in ops[:-1]] + [_op(ops[-1][0], [cp.MLModelStructureProgramBlock(
        inputs=[], operations=inner, output_names=[])] if inner else [])]
    block = cp.MLModelStructureProgramBlock(inputs=[], operations=built, output_names=[])
    program = cp.MLModelStructureProgram(functions={"main": cp.MLModelStructureProgramFunction(inputs=[], block=block)})
    pairs = list(zip(built, ops, strict=True)) + list(zip(inner, nested, strict=True))
    proxy = _Proxy(program, {id(o): d for o, (_, d, _) in pairs if d is not None},
                   {id(o): w for o, (_, _, w) in pairs if w is not None})
    plan = object.__new__(cp.MLComputePlan)
    plan.__proxy__ = proxy  # what MLComputePlan.load_from_path wraps on a Mac
    return plan


def test_plan_shares_weighs_each_ops_device_by_its_estimated_cost():
    plan = make_plan([("const", None, None), ("cast", CPU, 0.02), ("linear", ANE, 0.60), ("relu", ANE, 0.08),
                      ("linear", GPU, 0.20), ("softmax", CPU, 0.10)])
    shares = plan_shares(plan)
    assert shares["ops"] == 5  # the constant has no device: left out
    assert shares["op_share"] == pytest.approx({"cpu": 0.4, "ane": 0.4, "gpu": 0.2})
    assert shares["cost_share"] == pytest.approx({"cpu": 0.12, "ane": 0.68, "gpu": 0.20})
    assert shares["unknown_devices"] == [] and shares["ops_without_cost"] == 0


def test_an_unknown_device_is_counted_as_other_and_named_and_nested_blocks_count():
    plan = make_plan([("linear", ANE, 0.3), ("while_loop", FUTURE, 0.1)],
                     nested=[("matmul", FUTURE, 0.5), ("add", CPU, None)])
    shares = plan_shares(plan)
    assert shares["ops"] == 4 and shares["ops_without_cost"] == 1
    assert shares["unknown_devices"] == ["MLFutureAcceleratorComputeDevice"]
    assert shares["cost_share"] == pytest.approx({"ane": 0.3 / 0.9, "other": 0.6 / 0.9})
    assert shares["op_share"] == pytest.approx({"ane": 0.25, "other": 0.5, "cpu": 0.25})


def test_a_plan_without_cost_estimates_has_no_cost_share_and_the_label_is_unknown():
    shares = plan_shares(make_plan([("linear", ANE, None), ("relu", ANE, None)]))
    assert shares["cost_share"] == {} and shares["op_share"] == {"ane": 1.0}
    verdict = placement.verdict("coreml", "ane", {"compute_plan": shares})
    assert verdict["status"] == "unknown" and "no estimated cost" in verdict["text"]
    assert placement.flag(verdict, "ane") == placement.UNKNOWN


def _verdict_of(plan, device="ane"):
    return placement.verdict("coreml", device, {"compute_plan": plan_shares(plan)})


def test_an_ane_result_that_ran_mostly_elsewhere_is_flagged_with_its_share():
    mostly_gpu = make_plan([("linear", ANE, 0.12), ("linear", GPU, 0.80), ("relu", CPU, 0.08)])
    verdict = _verdict_of(mostly_gpu)
    assert verdict["status"] == "off-device" and verdict["text"] == "ran 12 % on the Neural Engine"
    assert placement.flag(verdict, "ane") == "ran 12 % on the Neural Engine"
    none_on_ane = _verdict_of(make_plan([("linear", CPU, 0.9), ("relu", GPU, 0.1)]))
    assert none_on_ane["status"] == "off-device" and none_on_ane["text"] == "ran 0 % on the Neural Engine"
    on_ane = _verdict_of(make_plan([("linear", ANE, 0.9), ("relu", CPU, 0.1)]))
    assert on_ane["status"] == "on-device" and placement.flag(on_ane, "ane") is None
    half = _verdict_of(make_plan([("linear", ANE, 0.5), ("relu", CPU, 0.5)]))
    assert half["status"] == "on-device"  # one half is the bar: at least half of the cost on the ANE
    # a GPU or CPU result keeps its shares but is not judged by the Neural Engine's bar
    gpu = _verdict_of(mostly_gpu, "gpu")
    assert gpu["status"] == "on-device" and gpu["text"] == "ran 80 % on the GPU" and placement.flag(gpu, "gpu") is None
    assert placement.verdict("torch", "ane", {}) is None


def test_without_a_plan_the_result_says_placement_unknown_and_why():
    verdict = placement.verdict("coreml", "ane", {}, reason="no compute plan: ValueError: MLComputePlan is not supported.")
    assert verdict["status"] == "unknown"
    assert verdict["text"] == "placement unknown: no compute plan: ValueError: MLComputePlan is not supported."
    assert placement.flag(verdict, "ane") == "placement unknown"
    assert placement.verdict("coreml", "ane", None)["text"] == "placement unknown: the compute plan was not read"


def _result(device: str, method: str, p50: float, runtime: str = "coreml", plan=None, accuracy: float = 0.97,
            flags=()) -> dict:
    metrics = {}
    if plan is not None:
        metrics["compute_plan"] = plan_shares(plan)
        metrics["placement"] = placement.verdict(runtime, device, metrics)
    return Result(model="digits-mlp", method=method, runtime=runtime, device=device, batch_size=1,
                  latency_ms={"p50": p50, "p99": p50 * 1.2, "mean": p50, "samples": 500}, size_mb=0.1,
                  throughput_per_s=1000 / p50, accuracy=accuracy, agreement={"top1": 0.99}, metrics=metrics,
                  flags=list(flags), run_id="r1").to_dict()


def test_recommend_and_the_device_choice_never_call_an_off_ane_result_an_ane_result():
    off = make_plan([("linear", ANE, 0.12), ("linear", GPU, 0.88)])
    on = make_plan([("linear", ANE, 0.95), ("relu", CPU, 0.05)])
    results = [_result("cpu", "fp32", 1.0, runtime="torch"), _result("cpu", "fp16", 0.9, runtime="torch"),
               _result("ane", "fp16", 0.2, plan=off), _result("ane", "palettize", 0.25)]  # fastest, but off the ANE
    rec = recommend(results, "latency")
    assert rec["best"]["device"] == "cpu", rec
    why = {r["variant"]: r["why"] for r in rec["rejected"]}
    assert why["fp16 · coreml · ane"] == "ran 12 % on the Neural Engine: not a result of the Neural Engine"
    assert why["palettize · coreml · ane"].startswith("placement unknown")
    assert recommend(results, "latency", device="ane")["best"] is None
    choice = choose_device(results, "latency")
    assert choice["device"] == "cpu" and "ane" not in [e["device"] for e in choice["evidence"]]
    results.append(_result("ane", "weight-int8", 0.3, plan=on))
    rec = recommend(results, "latency")
    assert (rec["best"]["device"], rec["best"]["label"]) == ("ane", "weight-int8")
    assert choose_device(results, "latency")["device"] == "ane"


def test_the_flag_shows_in_the_cli_table_the_json_and_the_report():
    import json

    from rich.console import Console

    from engines.analysis.report import build_html
    from qbench_tui.cli.output import results_table

    verdict = _verdict_of(make_plan([("linear", ANE, 0.12), ("linear", GPU, 0.88)]))
    r = _result("ane", "fp16", 0.2, plan=make_plan([("linear", ANE, 0.12), ("linear", GPU, 0.88)]),
                flags=[placement.flag(verdict, "ane")])  # what the worker records with the result
    console = Console(width=400, record=True)
    console.print(results_table([r]))
    assert "ran 12 % on the Neural Engine" in console.export_text()
    stored = json.loads(json.dumps(r))
    assert "ran 12 % on the Neural Engine" in stored["flags"]
    assert stored["metrics"]["placement"]["cost_share"]["ane"] == pytest.approx(0.12)
    assert placement.not_on_its_device(stored) == "ran 12 % on the Neural Engine: not a result of the Neural Engine"
    assert "ran 12 % on the Neural Engine" in build_html("t", [r])
