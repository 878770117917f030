"""Core ML sessions: predictions with a chosen compute unit, and the compute plan (macOS only).

coremltools on Linux cannot load, compile or run a model (its ``libcoremlpython`` is built for
macOS only): :func:`open_session` then raises :class:`UnsupportedVariant` with that reason, after
the passes have saved the package, so the result still records its size and op counts.
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


class CoremlSession(Session):
    def __init__(self, mlmodel: Any, model: LoadedModel):
        self._model = mlmodel
        self._names = model.input_names
        spec_inputs = {i.name: i.type.multiArrayType.dataType for i in mlmodel.get_spec().description.input}
        self._int_inputs = {n for n, t in spec_inputs.items() if t == 131104}  # ArrayFeatureType.INT32
        self._output = mlmodel.get_spec().description.output[0].name

    def _feed(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: np.ascontiguousarray(inputs[n], dtype=np.int32 if n in self._int_inputs else np.float32)
                for n in self._names}

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(self._model.predict(self._feed(inputs))[self._output], dtype=np.float32)

    def bind(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        feed, predict = self._feed(inputs), self._model.predict
        return lambda: predict(feed)  # synchronous: returns when the compute units are done


def plan_shares(plan: Any) -> dict[str, Any]:
    """Per-op preferred device from an MLComputePlan, as shares of ops and of estimated cost."""
    ops: Counter[str] = Counter()
    cost: Counter[str] = Counter()
    for fn in plan.model_structure.program.functions.values():
        for op in fn.block.operations:
            usage = plan.get_compute_device_usage_for_mlprogram_operation(op)
            if usage is None:  # constants and the like: no device
                continue
            device = _DEVICE_NAMES.get(type(usage.preferred_compute_device).__name__, "other")
            ops[device] += 1
            estimate = plan.get_estimated_cost_for_mlprogram_operation(op)
            cost[device] += estimate.weight if estimate is not None else 0.0
    total_ops, total_cost = sum(ops.values()) or 1, sum(cost.values()) or 1.0
    return {"op_share": {d: n / total_ops for d, n in ops.items()},
            "cost_share": {d: w / total_cost for d, w in cost.items()}}


def open_session(artifact: Artifact, model: LoadedModel, device: str, threads: int,
                 config: CoremlRuntimeConfig | None = None) -> Session:
    reason = prediction_refusal()
    if reason:
        raise UnsupportedVariant(reason)
    import coremltools as ct

    config = config or CoremlRuntimeConfig()
    units = getattr(ct.ComputeUnit, COMPUTE_UNITS[device])
    # The first load compiles the package (.mlmodelc) and, for the ANE, the device's own program:
    # part of this variant's cold start, which the worker times.
    mlmodel = ct.models.MLModel(str(artifact.path), compute_units=units)
    if config.compute_plan is ComputePlan.RECORD:
        try:
            from coremltools.models.compute_plan import MLComputePlan

            plan = MLComputePlan.load_from_path(path=mlmodel.get_compiled_model_path(), compute_units=units)
            artifact.metrics["compute_plan"] = plan_shares(plan)
        except Exception as exc:  # noqa: BLE001 - needs macOS 14.4+; the variant still runs
            artifact.notes.append(f"no compute plan: {type(exc).__name__}: {str(exc)[:120]}")
    return CoremlSession(mlmodel, model)


def runtime_info() -> dict[str, Any]:
    import coremltools as ct

    return {"coremltools": ct.__version__, "macos": platform.mac_ver()[0] or None,
            "prediction": prediction_refusal() or "available"}
