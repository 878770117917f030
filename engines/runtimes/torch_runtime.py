"""PyTorch: quantize with torchao (``quantize_`` configs, PT2E for static int8), run eagerly.

torch variants are quantized in memory at load time, the way an application using torchao
does it; the state dict is saved only to measure the artifact's size on disk. Cold start
therefore covers building and quantizing the module plus the first inference.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engines.methods import configs
from engines.models.base import LoadedModel
from engines.runtimes.base import Artifact, Session, UnsupportedVariant

# torchao's CPU wheel tries to load CUDA kernels and warns about each; none of it matters here.
logging.getLogger("torchao").setLevel(logging.ERROR)


def _torch():
    import torch

    return torch


def _linear_count(module) -> int:
    return sum(1 for m in module.modules() if isinstance(m, _torch().nn.Linear))


def build_quantized(model: LoadedModel, method: str, config: configs.MethodConfig) -> tuple[Any, list[str]]:
    """A new module with ``method`` applied; the model's own module is left untouched."""
    torch = _torch()
    module = copy.deepcopy(model.module).eval()
    notes: list[str] = []
    if method == "fp32":
        return module, notes
    if method == "fp16":
        return module.half(), notes
    if method == "static-int8":
        return _pt2e_static(model, module, config)
    if method == "dynamic-int8" and config.torch_backend is configs.TorchDynamicBackend.TORCH_AO:
        return _torch_ao_dynamic(module, config)

    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        IntxWeightOnlyConfig,
        quantize_,
    )
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_primitives import MappingType

    linears = _linear_count(module)
    if linears == 0:
        raise UnsupportedVariant(f"torchao {method} quantizes Linear layers and this model has none")
    if method == "weight-int8":
        ao_config = Int8WeightOnlyConfig()
    elif method == "dynamic-int8":
        assert isinstance(config, configs.DynamicInt8Config)
        ao_config = Int8DynamicActivationInt8WeightConfig()
    elif method == "int4":
        assert isinstance(config, configs.Int4Config)
        # IntxWeightOnly runs on any CPU (the packed Int4 kernels need CUDA or bf16 + x86).
        ao_config = IntxWeightOnlyConfig(
            weight_dtype=torch.int4, granularity=PerGroup(config.group_size),
            mapping_type=MappingType.SYMMETRIC if config.symmetric else MappingType.ASYMMETRIC,
        )
    else:
        raise UnsupportedVariant(f"torch has no implementation of {method}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_(module, ao_config)
    notes.append(f"torchao {type(ao_config).__name__} on {linears} Linear layers")
    others = [type(m).__name__ for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    if others:
        notes.append(f"{len(others)} Conv2d layers stay float (torchao quantize_ targets Linear)")
    return module, notes


def _torch_ao_dynamic(module, config) -> tuple[Any, list[str]]:
    """Classic eager dynamic quantization: real int8 GEMMs (fbgemm on x86, qnnpack on ARM)."""
    torch = _torch()
    engines = torch.backends.quantized.supported_engines
    engine = "x86" if "x86" in engines else "fbgemm" if "fbgemm" in engines else "qnnpack"
    torch.backends.quantized.engine = engine
    linears = _linear_count(module)
    if linears == 0:
        raise UnsupportedVariant("torch.ao dynamic int8 quantizes Linear layers and this model has none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice of torch.ao.quantization
        from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

        qconfig = per_channel_dynamic_qconfig if config.per_channel else default_dynamic_qconfig
        quantized = torch.ao.quantization.quantize_dynamic(
            module, {torch.nn.Linear: qconfig}, dtype=torch.qint8
        )
    notes = [f"torch.ao quantize_dynamic ({engine}) on {linears} Linear layers"]
    convs = sum(1 for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    if convs:
        notes.append(f"{convs} Conv2d layers stay float (dynamic quantization covers Linear only)")
    return quantized, notes


def _pt2e_static(model: LoadedModel, module, config) -> tuple[Any, list[str]]:
    torch = _torch()
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    assert isinstance(config, configs.StaticInt8Config)
    if config.calibration_method is not configs.CalibrationMethod.MINMAX:
        raise UnsupportedVariant(
            f"{config.calibration_method.value} calibration is offered by ONNX Runtime only; "
            "torch PT2E uses its quantizer's observers"
        )
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        raise UnsupportedVariant("torch static int8 uses the x86 PT2E quantizer; this CPU is not x86")
    batches = model.calibration_batches(config.calibration_samples)
    example = tuple(torch.from_numpy(batches[0][n]) for n in model.input_names)
    batch = torch.export.Dim("batch", min=1, max=65536)
    dynamic = tuple({0: batch} for _ in model.input_names)
    exported = torch.export.export(module, example, dynamic_shapes=dynamic).module()
    quantizer = xiq.X86InductorQuantizer().set_global(
        xiq.get_default_x86_inductor_quantization_config(is_dynamic=False)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_pt2e(exported, quantizer)
        with torch.no_grad():
            for b in batches:
                prepared(*(torch.from_numpy(b[n]) for n in model.input_names))
        converted = convert_pt2e(prepared)
    notes = [f"PT2E X86InductorQuantizer, calibrated on {sum(len(b[model.input_names[0]]) for b in batches)} samples"]
    if config.compile:
        converted = torch.compile(converted)
        notes.append("lowered with torch.compile (inductor int8 kernels)")
    else:
        notes.append("eager Q/DQ graph: simulates int8 (enable compile for int8 kernels)")
    return converted, notes


def quantize(model: LoadedModel, method: str, config: configs.MethodConfig, workdir: Path) -> Artifact:
    torch = _torch()
    if model.module is None:
        raise UnsupportedVariant("this model has no PyTorch module (ONNX file): use onnxruntime")
    module, notes = build_quantized(model, method, config)
    path = workdir / f"model.{method}.pt"
    torch.save(module.state_dict(), path)
    # The module itself travels in the payload: re-quantizing in open_session would double the work.
    return Artifact(path, notes=notes, payload=(module, method), format="torch state_dict")


class TorchSession(Session):
    def __init__(self, module, model: LoadedModel, device: str, half_inputs: bool):
        self._torch = _torch()
        self._module = module
        self._model = model
        self._device = device
        self._half = half_inputs

    def _tensors(self, inputs: dict[str, np.ndarray]) -> tuple:
        torch = self._torch
        out = []
        for name in self._model.input_names:
            t = torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self._device)
            if self._half and t.is_floating_point():
                t = t.half()
            out.append(t)
        return tuple(out)

    def _sync(self) -> None:
        if self._device == "cuda":
            self._torch.cuda.synchronize()
        elif self._device == "mps":
            self._torch.mps.synchronize()

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with self._torch.inference_mode():
            out = self._module(*self._tensors(inputs))
        return out.float().cpu().numpy()

    def bind(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        args, module, inference_mode, sync = self._tensors(inputs), self._module, self._torch.inference_mode, self._sync

        def call():
            with inference_mode():
                out = module(*args)
            sync()  # GPU work is asynchronous: time it to completion
            return out

        return call

    def device_memory_mb(self) -> float | None:
        torch = self._torch
        if self._device == "cuda":
            return torch.cuda.max_memory_allocated() / 2**20
        if self._device == "mps":
            return torch.mps.driver_allocated_memory() / 2**20
        return None


def open_session(artifact: Artifact, model: LoadedModel, device: str, threads: int) -> Session:
    torch = _torch()
    torch.set_num_threads(threads)
    module, method = artifact.payload
    if device != "cpu":
        module = module.to(device)
    return TorchSession(module, model, device, half_inputs=(method == "fp16"))


def runtime_info() -> dict[str, Any]:
    torch = _torch()
    info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    try:
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        pass
    return info
