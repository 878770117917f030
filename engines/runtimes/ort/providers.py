"""Which ONNX Runtime execution providers a session on each qbench device asks for (light: no
onnxruntime import, so the planner and the tests on Linux can read it).

``cpu`` is the CPU provider alone; ``cuda`` puts CUDA first; ``gpu`` and ``ane`` put the Core ML
provider first with the compute units that match qbench's Apple devices (the same mapping as the
Core ML runtime: CPU_AND_GPU, CPU_AND_NE). Whatever a provider does not claim falls to the CPU.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
COREML = "CoreMLExecutionProvider"

COREML_UNITS = {"gpu": "CPUAndGPU", "ane": "CPUAndNeuralEngine"}
COREML_MISSING = "ONNX Runtime's Core ML execution provider needs macOS (onnxruntime for macOS ships it)"
CUDA_MISSING = ("onnxruntime has no CUDAExecutionProvider: the CPU build is installed; ONNX Runtime's GPU build "
                "is the `cuda` extra (docs/cuda.md)")
# onnxruntime and onnxruntime-gpu install the same `onnxruntime` folder: with both, the last written wins.
CUDA_SHADOWED = ("onnxruntime-gpu {gpu} is installed but the CPU build (onnxruntime {cpu}) overwrote its files, so "
                 "there is no CUDAExecutionProvider: `uv pip install --reinstall --no-deps onnxruntime-gpu=={gpu}` "
                 "(docs/cuda.md)")
CUDA_NOT_LOADED = ("ONNX Runtime's CUDA execution provider did not load (CUDA or cuDNN libraries not found?), so the "
                   "session fell back to the CPU; nothing was measured on CUDA")


def coreml_options(device: str, cache_dir: Path | None, fp16: bool = False,
                   static_shapes: bool = False) -> dict[str, str]:
    """Provider options of the Core ML EP (onnxruntime ≥ 1.20 key/value form; values are strings).

    ``fp16``: the variant computes in float16 (its graph carries float16 tensors); on the GPU Core ML
    may then also accumulate in float16. ``static_shapes``: every input of the graph has fixed
    dimensions, so the EP is told to take static shapes only (the Neural Engine runs fixed shapes; a
    dynamic axis would otherwise make Core ML place the partition elsewhere)."""
    options = {
        "MLComputeUnits": COREML_UNITS[device],
        # ML Program is Core ML's current format (typed, float16-capable); NeuralNetwork is the legacy one.
        "ModelFormat": "MLProgram",
        # A graph exported with a dynamic batch axis is still taken (requiring static shapes would hand
        # the whole graph back to the CPU); a graph whose inputs are all fixed requires them.
        "RequireStaticInputShapes": "1" if static_shapes else "0",
        "EnableOnSubgraphs": "0",  # no Loop/If bodies in the graphs qbench exports
    }
    if fp16 and device == "gpu":
        options["AllowLowPrecisionAccumulationOnGPU"] = "1"
    if cache_dir is not None:
        # Core ML compiles each partition at session creation; the cache skips that for the second
        # session on the same file (the placement profile) and for reruns of the variant.
        options["ModelCacheDirectory"] = str(cache_dir)
    return options


def execution_providers(device: str, cache_dir: Path | None = None, fp16: bool = False,
                        static_shapes: bool = False) -> list[Any]:
    """The ``providers=`` list of an InferenceSession on ``device`` (the CPU provider always last)."""
    if device == "cpu":
        return [CPU]
    if device == "cuda":
        return [CUDA, CPU]
    if device in COREML_UNITS:
        return [(COREML, coreml_options(device, cache_dir, fp16, static_shapes)), CPU]
    raise ValueError(f"ONNX Runtime has no provider for device {device!r}")


def graph_inputs(source: Path | bytes) -> dict[str, bool]:
    """What the Core ML options depend on, read from the graph (onnx, external weights not loaded):
    ``fp16`` (float16 inputs or weights) and ``static_shapes`` (no symbolic or unknown input dimension)."""
    import onnx

    proto = onnx.load_from_string(source) if isinstance(source, bytes) else \
        onnx.load(str(source), load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    fp16 = any(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 for i in inputs) or \
        any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer)  # float16 weights, fp32 edges
    static = all(d.HasField("dim_value") for i in inputs for d in i.type.tensor_type.shape.dim)
    return {"fp16": fp16, "static_shapes": static}


def provider_missing(device: str, available: list[str], installed: dict[str, str] | None = None) -> str | None:
    """Why ``device`` cannot run with these available providers, or None. ``installed`` (distribution
    name → version, :func:`onnxruntime_builds`) tells a missing GPU build from one the CPU build shadowed."""
    needed = {"cuda": (CUDA, CUDA_MISSING), "gpu": (COREML, COREML_MISSING), "ane": (COREML, COREML_MISSING)}
    if device in needed and needed[device][0] not in available:
        builds = installed or {}
        if device == "cuda" and "onnxruntime-gpu" in builds and "onnxruntime" in builds:
            return CUDA_SHADOWED.format(gpu=builds["onnxruntime-gpu"], cpu=builds["onnxruntime"])
        return needed[device][1]
    return None


def onnxruntime_builds() -> dict[str, str]:
    """The ONNX Runtime distributions installed (``onnxruntime``, ``onnxruntime-gpu``) and their versions."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("onnxruntime", "onnxruntime-gpu"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def providers_taken(device: str, taken: list[str]) -> str | None:
    """Why a session opened for ``device`` is not on it: ONNX Runtime drops a requested provider that
    fails to load and runs on the CPU (a warning in its log only)."""
    if device == "cuda" and CUDA not in taken:
        return CUDA_NOT_LOADED
    return None


def host_refusal(device: str) -> str | None:
    """What the planner can tell before spawning anything: the Core ML EP exists only in the macOS
    builds of onnxruntime (the child still checks the installed build's providers)."""
    if device in COREML_UNITS and platform.system() != "Darwin":
        return COREML_MISSING
    return None
