"""Core ML sessions: predictions with a chosen compute unit, and the compute plan (macOS only).

coremltools on Linux cannot load, compile or run a model (its ``libcoremlpython`` is built for
macOS only): :func:`open_session` then raises :class:`UnsupportedVariant` with that reason, after
the passes have saved the package, so the result still records its size, op counts, precision and
batch shapes, and its placement as unknown. On a Mac the compute plan's shares
(:func:`plan_shares`) become the result's placement verdict (engines.analysis.placement).
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from engines.models.base import LoadedModel
from engines.runtimes.base import Artifact, Session, UnsupportedVariant
from engines.runtimes.coreml import ComputePlan, CoremlRuntimeConfig

COMPUTE_UNITS = {"cpu": "CPU_ONLY", "gpu": "CPU_AND_GPU", "ane": "CPU_AND_NE"}
_DEVICE_NAMES = {"MLCPUComputeDevice": "cpu", "MLGPUComputeDevice": "gpu", "MLNeuralEngineComputeDevice": "ane"}


def prediction_refusal() -> str | None:
    """Why Core ML cannot predict on this machine, or None."""
    if platform.system() != "Darwin":
        return (f"Core ML prediction needs macOS (this is {platform.system()}): coremltools here converts and "
                "compresses only; size and op counts are recorded")
    try:
        from coremltools import libcoremlpython  # noqa: F401
    except ImportError as exc:
        return f"coremltools has no Core ML framework binding on this Mac: {exc}"
    return None


def fitted_batches(rows: int, sizes: list[int]) -> list[tuple[int, int, int]]:
    """How ``rows`` rows go through a program that takes only these batch sizes (enumerated or
    fixed shapes): ``(start, rows taken, batch size fed)`` per call; the last call is padded."""
    sizes = sorted(sizes)
    out, start = [], 0
    while start < rows:
        take = min(rows - start, sizes[-1])
        out.append((start, take, next(b for b in sizes if b >= take)))
        start += take
    return out


class CoremlSession(Session):
    def __init__(self, mlmodel: Any, model: LoadedModel):
        from engines.runtimes.coreml.convert import batch_input

        self._model = mlmodel
        self._names = model.input_names
        spec = mlmodel.get_spec()
        spec_inputs = {i.name: i.type.multiArrayType.dataType for i in spec.description.input}
        self._int_inputs = {n for n, t in spec_inputs.items() if t == 131104}  # ArrayFeatureType.INT32
        self._output = spec.description.output[0].name
        batch = batch_input(spec)
        self._sizes = batch["batch_sizes"] if batch["kind"] != "range" else None  # None: any size

    def _feed(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: np.ascontiguousarray(inputs[n], dtype=np.int32 if n in self._int_inputs else np.float32)
                for n in self._names}

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feed = self._feed(inputs)
        rows = len(next(iter(feed.values())))
        if self._sizes is None or rows in self._sizes:
            return np.asarray(self._model.predict(feed)[self._output], dtype=np.float32)
        outs = []  # the accuracy pass's batches: through the shapes the program takes, padded at the end
        for start, take, size in fitted_batches(rows, self._sizes):
            part = {n: np.concatenate([a[start:start + take], np.repeat(a[start + take - 1:start + take],
                                                                        size - take, axis=0)])
                    for n, a in feed.items()}
            outs.append(np.asarray(self._model.predict(part)[self._output], dtype=np.float32)[:take])
        return np.concatenate(outs)

    def bind(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        feed, predict = self._feed(inputs), self._model.predict
        return lambda: predict(feed)  # synchronous: returns when the compute units are done


def _operations(block: Any):
    """Every operation of a plan's block, nested blocks (loops, conditionals) included."""
    for op in block.operations:
        yield op
        for inner in getattr(op, "blocks", None) or ():
            yield from _operations(inner)


def plan_shares(plan: Any) -> dict[str, Any]:
    """Per-op preferred device from an MLComputePlan, as shares of ops and of estimated cost.

    Ops without a device usage (constants) are left out; a device class this code does not know is
    counted as ``other`` and named in ``unknown_devices``; an op without a cost estimate adds no
    cost (``ops_without_cost`` counts them; no estimate at all leaves ``cost_share`` empty)."""
    ops: Counter[str] = Counter()
    cost: Counter[str] = Counter()
    unknown: set[str] = set()
    without_cost = 0
    for fn in plan.model_structure.program.functions.values():
        for op in _operations(fn.block):
            usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
            if usage is None:  # constants and the like: no device
                continue
            name = type(usage.preferred_compute_device).__name__
            device = _DEVICE_NAMES.get(name, "other")
            if device == "other":
                unknown.add(name)
            ops[device] += 1
            estimate = plan.get_estimated_cost_for_mlprogram_operation(op)
            if estimate is None or estimate.weight is None:
                without_cost += 1
                continue
            cost[device] += float(estimate.weight)
    total_ops, total_cost = sum(ops.values()), sum(cost.values())
    return {"op_share": {d: n / total_ops for d, n in ops.items()} if total_ops else {},
            "cost_share": {d: w / total_cost for d, w in cost.items()} if total_cost > 0 else {},
            "ops": sum(ops.values()), "ops_without_cost": without_cost, "unknown_devices": sorted(unknown)}


def open_session(artifact: Artifact, model: LoadedModel, device: str, threads: int,
                 config: CoremlRuntimeConfig | None = None) -> Session:
    from engines.analysis.placement import verdict
    from engines.devices import device_info

    info = device_info(device)
    reason = prediction_refusal() or (None if info is None or info.present else
                                      f"device {device} is not present: {info.detail}")
    if reason:  # the package is converted and checked; where it would run cannot be read here
        artifact.metrics["placement"] = verdict("coreml", device, None, reason=f"prediction unsupported here: {reason}")
        raise UnsupportedVariant(reason)
    import coremltools as ct

    config = config or CoremlRuntimeConfig()
    units = getattr(ct.ComputeUnit, COMPUTE_UNITS[device])
    # The first load compiles the package (.mlmodelc) and, for the ANE, the device's own program:
    # part of this variant's cold start, which the worker times.
    mlmodel = ct.models.MLModel(str(artifact.path), compute_units=units)
    missing = None if config.compute_plan is ComputePlan.RECORD else \
        "the compute plan was not recorded (compute_plan=skip)"
    if config.compute_plan is ComputePlan.RECORD:
        try:
            from coremltools.models.compute_plan import MLComputePlan

            plan = MLComputePlan.load_from_path(path=mlmodel.get_compiled_model_path(), compute_units=units)
            artifact.metrics["compute_plan"] = plan_shares(plan)
        except Exception as exc:  # noqa: BLE001 - needs macOS 14.4+; the variant still runs
            missing = f"no compute plan: {type(exc).__name__}: {str(exc)[:120]}"
            artifact.notes.append(missing)
    # The label's truth: share of the estimated cost on the device asked for (or "placement unknown").
    artifact.metrics["placement"] = verdict("coreml", device, artifact.metrics, reason=missing)
    return CoremlSession(mlmodel, model)


def runtime_info() -> dict[str, Any]:
    import coremltools as ct

    return {"coremltools": ct.__version__, "macos": platform.mac_ver()[0] or None,
            "prediction": prediction_refusal() or "available"}
