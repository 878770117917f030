"""A model's own fp32 ONNX graph: its file where it came as one, else a torch export.

Below the passes: the model cache (onnx_cache.py) exports through it, and the ONNX passes start
from it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engines.models.base import LoadedModel

OPSET = 17


def export_fp32(model: LoadedModel, workdir: Path, module=None) -> Path:
    """The fp32 ONNX graph: the model's own file, or a torch export with a dynamic batch axis
    (of ``module`` where given: a fine-tuned copy of the model's module)."""
    if model.onnx_source is not None and module is None:
        target = workdir / "model.onnx"
        shutil.copyfile(model.onnx_source, target)
        data = model.onnx_source.with_name(model.onnx_source.name + ".data")
        if data.exists():
            shutil.copyfile(data, target.with_name(target.name + ".data"))
        return target
    import torch

    target = workdir / "model.onnx"
    example = model.example_inputs(2)
    args = tuple(torch.from_numpy(example[name]) for name in model.input_names)
    # The TorchScript-based exporter takes ~0.1 s where the dynamo one takes ~10 s on 2 cores.
    torch.onnx.export(
        module if module is not None else model.module, args, str(target), input_names=model.input_names,
        output_names=[model.output_name], dynamic_axes=model.dynamic_axes(),
        opset_version=OPSET, dynamo=False,
    )
    return target
