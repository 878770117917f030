"""MLX export: safetensors plus ``model.json`` (the layer-by-layer description the deploy runner
rebuilds the network from), metadata in the safetensors header, the runner as validation session."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engines.export.build import apply_planned
from engines.export.targets.base import PREFIX, Exported, ExportError
from engines.export.templates import copy_template, template_module
from engines.runtimes.base import Session


def write(model, source: dict[str, Any], recipe, planned, target: Path, work: Path) -> Exported:
    """The MLX module's weights as safetensors (quantized layers as MLX packs them) and ``model.json``."""
    artifact, passes = apply_planned(model, planned, work, "mlx")
    description = describe(artifact.payload, model)
    if description is None:
        raise ExportError(f"MLX export writes sequential MLP/CNN stacks; {model.name} converts to another MLX "
                          "family that the standalone runner cannot rebuild yet")
    description["dtype"] = "float16" if artifact.facts.get("half_inputs") else "float32"
    target.parent.mkdir(parents=True, exist_ok=True)
    artifact.payload.save_weights(str(target))
    target.with_suffix(".json").write_text(json.dumps(description, indent=2) + "\n")
    quantized = [layer for layer in description["layers"] if layer.get("quantized")]
    bits = sorted({layer["quantized"]["bits"] for layer in quantized})
    what = (f"MLX affine {'/'.join(map(str, bits))}-bit weights in {len(quantized)} layer(s)" if quantized
            else f"{description['dtype']} weights")
    return Exported(target, passes, list(artifact.notes), {"quantization": what, "layers": len(description["layers"]),
                                                           "quantized_layers": len(quantized)})


def describe(module, model) -> dict[str, Any] | None:
    """``model.json``: the sequential stack's layers with their shapes and quantization, or None for
    other families."""
    import re

    from mlx import nn

    from engines.runtimes.mlx.convert import FlattenChannelsFirst, QuantizedConv2d, SequentialModel, ToChannelsLast

    if not isinstance(module, SequentialModel):
        return None
    layers: list[dict[str, Any]] = []
    for layer in module.layers:
        if isinstance(layer, nn.QuantizedLinear):
            rows, packed = layer.weight.shape
            layers.append({"type": "linear", "in": packed * 32 // layer.bits, "out": rows, "bias": "bias" in layer,
                           "quantized": {"bits": layer.bits, "group_size": layer.group_size,
                                         "mode": getattr(layer, "mode", "affine")}})
        elif isinstance(layer, nn.Linear):
            out, cin = layer.weight.shape
            layers.append({"type": "linear", "in": cin, "out": out, "bias": "bias" in layer})
        elif isinstance(layer, QuantizedConv2d):
            layers.append({"type": "conv2d", "shape": list(layer.shape), "stride": list(layer.stride),
                           "padding": list(layer.padding), "bias": "bias" in layer,
                           "quantized": {"bits": layer.bits, "group_size": layer.group_size, "mode": "affine"}})
        elif isinstance(layer, nn.Conv2d):
            layers.append({"type": "conv2d", "shape": list(layer.weight.shape), "stride": list(layer.stride),
                           "padding": list(layer.padding), "bias": "bias" in layer})
        elif isinstance(layer, nn.MaxPool2d):
            values = {k: [int(a), int(b)]
                      for k, a, b in re.findall(r"(kernel_size|stride|padding)=\((\d+), ?(\d+)\)", repr(layer))}
            layers.append({"type": "maxpool2d", "kernel": values["kernel_size"], "stride": values["stride"],
                           "padding": values["padding"]})
        elif isinstance(layer, ToChannelsLast):
            layers.append({"type": "to_channels_last"})
        elif isinstance(layer, FlattenChannelsFirst):
            layers.append({"type": "flatten", "channels_last": layer.channels_last})
        elif isinstance(layer, nn.GELU):
            layers.append({"type": "gelu", "approx": getattr(layer, "_approx", "none")})
        else:
            layers.append({"type": type(layer).__name__.lower()})
    return {"family": "sequential", "model": model.name, "inputs": [
        {"name": i.name, "shape": list(i.shape), "dtype": i.dtype} for i in model.inputs], "layers": layers}


def write_metadata(path: Path, metadata: dict[str, str]) -> None:
    """The safetensors header's metadata."""
    import mlx.core as mx

    arrays, existing = mx.load(str(path), return_metadata=True)
    kept = {k: v for k, v in existing.items() if not k.startswith(PREFIX)}
    mx.save_safetensors(str(path), arrays, metadata={**kept, **metadata})


def read_metadata(path: Path) -> dict[str, str]:
    import mlx.core as mx

    _, metadata = mx.load(str(path), return_metadata=True)
    return {k: v for k, v in metadata.items() if k.startswith(PREFIX)}


class MlxFileSession(Session):
    """The deploy template's own runner (model.json + safetensors), on the CPU."""

    def __init__(self, path: Path):
        import mlx.core as mx

        mx.set_default_device(mx.cpu)  # the validation compares numbers; Metal timing is the sweep's job
        self.runner = template_module("run_mlx").MlxRunner(path)
        self.info = {"mlx": mx.__version__, "device": "cpu", "metal": mx.metal.is_available()}

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.runner.run(inputs)

    def bind(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        return lambda: self.runner.run(inputs)


def open_file(path: Path, model) -> Session:
    return MlxFileSession(path)


def templates(deploy: Path, out_dir: Path, report: dict[str, Any], model) -> dict[str, dict[str, Any]]:
    runner = copy_template("run_mlx.py", deploy / "python" / "run_mlx.py")
    (deploy / "python" / "requirements.txt").write_text(
        "mlx>=0.29; sys_platform == 'darwin'\nmlx[cpu]>=0.29; sys_platform == 'linux'\nnumpy>=1.26\n")
    return {"python": {"path": runner.relative_to(out_dir),
                       "run": "pip install -r deploy/python/requirements.txt && python deploy/python/run_mlx.py"}}
