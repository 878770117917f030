"""torch → Core ML with coremltools, the weight compressors, and what a package holds (op counts).

Heavy (imports coremltools and torch): only the Core ML passes and session import it. Everything
here runs on Linux too: conversion, ``coremltools.optimize`` weight compression, saving and
reading the MIL program — its compute precision and how its inputs take the batch axis, read back
from the saved package's spec. Prediction, compilation and compute plans need macOS (the session).
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from engines.models.base import LoadedModel
from engines.runtimes.base import UnsupportedVariant

# The devices whose programs compute in float16 unless asked otherwise: the Neural Engine computes
# only fp16 (an fp32 program is placed on the GPU or the CPU), and Metal runs fp16 at twice the rate.
FLOAT16_DEVICES = ("ane", "gpu")
_MIL_FLOATS = {10: "float16", 11: "float32", 12: "float64", 13: "bfloat16"}  # MIL DataType numbers
_NOT_COMPUTE = ("const", "cast")  # the rest of a program's ops (constexpr_* aside) do its arithmetic
# Weights smaller than this stay float (coremltools' default is 2048; the digits models' first
# layers hold 288-1024 weights, and compressing them costs nothing at this size).
WEIGHT_THRESHOLD = 256
COMPRESSED_OPS = ("constexpr_", "quantize", "dequantize")


def _quiet() -> None:
    # coremltools warns about untested torch and sklearn versions on every import
    logging.getLogger("coremltools").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="coremltools")


_PATCHED = False


def _patch_scalar_casts() -> None:
    """Two gaps of coremltools 9's torch frontend with torch 2.13 / NumPy 2. It folds ``int(t)`` / ``bool(t)`` of a one-element constant with
    ``int(array)``, which NumPy 2 refuses for arrays of shape (1,) ("only 0-dimensional arrays can be
    converted"): BERT-style encoders (MiniLM) hit it; those two ops are re-registered to take the
    element. And it has no ``new_ones``."""
    global _PATCHED
    if _PATCHED:
        return
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch import ops
    from coremltools.converters.mil.frontend.torch.torch_op_registry import register_torch_op

    def cast(context: Any, node: Any, dtype: type, dtype_name: str) -> None:
        x = ops._get_inputs(context, node, expected=1)[0]
        if x.can_be_folded_to_const() and not isinstance(x.val, dtype):
            context.add(mb.const(val=dtype(np.asarray(x.val).reshape(-1)[0]), name=node.name), node.name)
        else:
            ops._cast(context, node, dtype, dtype_name)

    @register_torch_op(torch_alias=["int"], override=True)
    def qbench_int_item(context: Any, node: Any) -> None:
        cast(context, node, int, "int32")

    @register_torch_op(torch_alias=["bool"], override=True)
    def qbench_bool_item(context: Any, node: Any) -> None:
        cast(context, node, bool, "bool")
    @register_torch_op(override=True)
    def new_ones(context: Any, node: Any) -> None:
        # transformers' mask helpers call tensor.new_ones(shape); coremltools 9 has new_zeros only
        inputs = ops._get_inputs(context, node)
        shape = inputs[1]
        dtype = inputs[2].val if len(inputs) > 2 and inputs[2] is not None else None
        one = True if dtype is not None and ops.NUM_TO_NUMPY_DTYPE.get(int(dtype)) in (bool, np.bool_) else 1.0
        if isinstance(shape, list):
            shape = mb.concat(values=shape, axis=0)
        if shape.val is not None and np.asarray(shape.val).size == 0:  # new_ones(()) : a scalar
            context.add(mb.const(val=np.bool_(one) if one is True else np.float32(one), name=node.name))
            return
        context.add(ops._make_fill_op(shape, one, node.name))

    _PATCHED = True


def precision_for(device: str, asked: str | None = None) -> str:
    """The compute precision a program for ``device`` is converted with: float16 on the Neural
    Engine always, on the GPU unless ``asked`` says float32, else what was asked (float32)."""
    if device == "ane":
        return "float16"
    return asked or ("float16" if device in FLOAT16_DEVICES else "float32")


def batch_shapes(batch_sizes: tuple[int, ...] | list[int], fixed: int | None = None) -> list[int]:
    """The batch sizes a program accepts: the sweep's (enumerated; one is a fixed shape). Never a
    range: a flexible (RangeDim) batch makes Core ML run the program off the Neural Engine."""
    return [fixed] if fixed else sorted({int(b) for b in batch_sizes if int(b) > 0}) or [1]


def convert(module: Any, model: LoadedModel, precision: str = "float32",
            batch_sizes: tuple[int, ...] | list[int] = (1,)) -> Any:
    """Trace ``module`` and convert it to an ML program (macOS 15 target: per-block int4 needs it),
    computing in ``precision``, whose batch axis takes exactly ``batch_sizes``."""
    import torch

    _quiet()
    import coremltools as ct

    _patch_scalar_casts()
    example = model.example_inputs(2)
    args = tuple(torch.from_numpy(example[n]) for n in model.input_names)
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module.eval(), args, strict=False, check_trace=False)
    sizes = batch_shapes(batch_sizes, model.fixed_batch)
    inputs = []
    for spec, arg in zip(model.inputs, args, strict=True):
        rest = list(arg.shape[1:])
        shape = ct.Shape([sizes[0], *rest]) if len(sizes) == 1 else \
            ct.EnumeratedShapes(shapes=[[b, *rest] for b in sizes], default=[sizes[0], *rest])
        dtype = np.int32 if not arg.is_floating_point() else np.float32
        inputs.append(ct.TensorType(name=spec.name, shape=shape, dtype=dtype))
    target = ct.target.macOS15
    compute = ct.precision.FLOAT16 if precision == "float16" else ct.precision.FLOAT32
    try:
        return ct.convert(traced, inputs=inputs, minimum_deployment_target=target, compute_precision=compute,
                          convert_to="mlprogram")
    except Exception as exc:  # noqa: BLE001 - an op coremltools cannot lower is this variant's answer
        raise UnsupportedVariant(f"coremltools cannot convert this model: {type(exc).__name__}: {str(exc)[:200]}") \
            from None


def _main_operations(spec: Any):
    for fn in spec.mlProgram.functions.values():
        for block in fn.block_specializations.values():
            yield from block.operations


def program_precision(spec: Any) -> dict[str, Any]:
    """The precision an ML program computes in, read from its spec (works without macOS): the float
    type of what its arithmetic ops produce (``float16`` / ``float32`` / ``mixed``), with the counts,
    and the float type its weights decompress or load to."""
    compute: Counter[str] = Counter()
    weights: Counter[str] = Counter()
    for op in _main_operations(spec):
        floats = [_MIL_FLOATS[o.type.tensorType.dataType] for o in op.outputs
                  if o.type.tensorType.dataType in _MIL_FLOATS]
        if op.type.startswith("constexpr_") or op.type == "const":
            weights.update(floats)
        elif op.type not in _NOT_COMPUTE:
            compute.update(floats)
    def one(counts: Counter[str]) -> str | None:
        return None if not counts else next(iter(counts)) if len(counts) == 1 else "mixed"
    return {"compute": one(compute), "compute_ops": dict(compute), "weights": one(weights)}


def batch_input(spec: Any) -> dict[str, Any]:
    """How the program's inputs take the batch axis: ``fixed``, ``enumerated`` (with the sizes) or
    ``range`` (flexible: what keeps a program off the Neural Engine)."""
    kinds, sizes = set(), set()
    for feature in spec.description.input:
        array = feature.type.multiArrayType
        flexibility = array.WhichOneof("ShapeFlexibility")
        if flexibility == "enumeratedShapes":
            kinds.add("enumerated")
            sizes.update(int(s.shape[0]) for s in array.enumeratedShapes.shapes)
        elif flexibility == "shapeRange":
            kinds.add("range")
            batch = array.shapeRange.sizeRanges[0]
            sizes.update((int(batch.lowerBound), int(batch.upperBound)))
        else:
            kinds.add("fixed")
            sizes.add(int(array.shape[0]))
    kind = "range" if "range" in kinds else "enumerated" if "enumerated" in kinds else "fixed"
    return {"kind": kind, "batch_sizes": sorted(sizes)}


def op_counts(mlmodel: Any) -> dict[str, int]:
    """The MIL op histogram of an ML program (read from its spec: works without macOS)."""
    counts = Counter(op.type for op in _main_operations(mlmodel.get_spec()))
    return dict(sorted(counts.items()))


def compressed_ops(counts: dict[str, int]) -> int:
    return sum(n for op, n in counts.items() if op.startswith(COMPRESSED_OPS))


def save(mlmodel: Any, path: Path) -> dict[str, Any]:
    """Save the package; the figures every result records for it."""
    mlmodel.save(str(path))
    counts = op_counts(mlmodel)
    spec = load(path).get_spec()  # read back from the saved package: what a Mac will load
    return {"coreml_ops": counts, "coreml_op_total": sum(counts.values()),
            "coreml_compressed_ops": compressed_ops(counts), "coreml_precision": program_precision(spec),
            "coreml_batch_input": batch_input(spec)}


def load(path: Path) -> Any:
    """A saved package as an MLModel without compiling it (Linux: spec only)."""
    _quiet()
    import coremltools as ct

    return ct.models.MLModel(str(path), skip_model_load=True)


def linear_quantize(mlmodel: Any, dtype: str, granularity: str, block_size: int | None, symmetric: bool) -> Any:
    _quiet()
    import coremltools.optimize as cto

    op = cto.coreml.OpLinearQuantizerConfig(
        mode="linear_symmetric" if symmetric else "linear", dtype=dtype, granularity=granularity,
        block_size=block_size if granularity == "per_block" else None, weight_threshold=WEIGHT_THRESHOLD)
    return cto.coreml.linear_quantize_weights(mlmodel, config=cto.coreml.OptimizationConfig(global_config=op))


def palettize(mlmodel: Any, nbits: int, granularity: str, group_size: int) -> Any:
    _quiet()
    import coremltools.optimize as cto

    kwargs = {"group_size": group_size} if granularity == "per_grouped_channel" else {}
    op = cto.coreml.OpPalettizerConfig(mode="kmeans", nbits=nbits, granularity=granularity,
                                       weight_threshold=WEIGHT_THRESHOLD, **kwargs)
    return cto.coreml.palettize_weights(mlmodel, config=cto.coreml.OptimizationConfig(global_config=op))


def w8a8_module(module: Any, model: LoadedModel, samples: int) -> Any:
    """W8A8 in torch with coremltools' FX LinearQuantizer (calibrated on the model's calibration
    rows), ready to convert: quantize/dequantize ops carry the activation ranges into Core ML.
    (Calibrating on the Core ML model itself runs predictions: macOS only.)"""
    import copy

    import torch

    _quiet()
    from coremltools.optimize.torch.quantization import (
        LinearQuantizer,
        LinearQuantizerConfig,
        ModuleLinearQuantizerConfig,
    )

    config = LinearQuantizerConfig(global_config=ModuleLinearQuantizerConfig(
        quantization_scheme="symmetric", milestones=[0, 100, 100, 100]))
    batches = model.calibration_batches(samples)
    example = tuple(torch.from_numpy(batches[0][n]) for n in model.input_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # FX prepares in train mode (it inserts fake-quant modules); calibration itself runs in eval
            # mode: dropout off and batch norm on its running statistics, as at inference.
            quantizer = LinearQuantizer(copy.deepcopy(module).train(), config)
            prepared = quantizer.prepare(example_inputs=example, inplace=False)
            quantizer.step()
            prepared.eval()
            with torch.no_grad():
                for batch in batches:
                    prepared(*(torch.from_numpy(batch[n]) for n in model.input_names))
            return quantizer.finalize(inplace=False).eval()
        except Exception as exc:  # noqa: BLE001 - FX tracing refuses some models (control flow)
            raise UnsupportedVariant(f"coremltools LinearQuantizer (FX) cannot prepare this model: "
                                     f"{type(exc).__name__}: {str(exc)[:200]}") from None
