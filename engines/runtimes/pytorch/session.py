"""PyTorch sessions: run a torch-module artifact eagerly (or compiled) on CPU, CUDA or MPS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engines.models.base import LoadedModel
from engines.runtimes.base import Artifact, Session
from engines.runtimes.pytorch import TorchRuntimeConfig


def _torch():
    import torch

    return torch


class TorchSession(Session):
    def __init__(self, module, model: LoadedModel, device: str, half_inputs: bool | str, no_grad: bool = False):
        self._torch = _torch()
        # inductor's int8 (PT2E) kernels run under no_grad: under inference_mode their recompiles
        # for a new batch size fail stride checks (digits-cnn's qconv)
        self._grad_off = self._torch.no_grad if no_grad else self._torch.inference_mode
        self._module = module
        self._model = model
        self._device = device
        # float inputs are cast to the module's dtype: True (float16) or a torch dtype's name ("bfloat16")
        self._half = getattr(self._torch, half_inputs if isinstance(half_inputs, str) else "float16") \
            if half_inputs else None
        self._mps_peak = None  # engines.devices.memory.PeakSampler over driver_allocated_memory
        if device == "mps":
            from engines.devices.memory import PeakSampler

            self._mps_peak = PeakSampler(self._torch.mps.driver_allocated_memory)

    def _tensors(self, inputs: dict[str, np.ndarray]) -> tuple:
        torch = self._torch
        out = []
        for name in self._model.input_names:
            t = torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self._device)
            if self._half is not None and t.is_floating_point():
                t = t.to(self._half)
            out.append(t)
        return tuple(out)

    def _sync(self) -> None:
        if self._device == "cuda":
            self._torch.cuda.synchronize()
        elif self._device == "mps":
            self._torch.mps.synchronize()

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        with self._grad_off():
            out = self._module(*self._tensors(inputs))
        return out.float().cpu().numpy()

    def bind(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        args, module, inference_mode, sync = self._tensors(inputs), self._module, self._grad_off, self._sync

        def call():
            with inference_mode():
                out = module(*args)
            sync()  # GPU work is asynchronous: time it to completion
            return out

        return call

    def kv_decoder(self) -> tuple[Any, str | None]:
        from engines.models.kv_cache import has_decode_step

        module = getattr(self._module, "_orig_mod", self._module)  # the cache runs eagerly
        if not has_decode_step(module):
            kind = type(module).__name__
            return None, (f"the variant's module ({kind}) has no decode_step: a traced int8 graph (PT2E) "
                          "takes whole sequences" if kind == "GraphModule" else
                          f"the model's module ({kind}) has no decode_step (engines.models.kv_cache)")
        return TorchKvDecoder(module, self), None

    def reset_device_peak(self) -> None:
        if self._device == "cuda":
            self._torch.cuda.reset_peak_memory_stats()
        elif self._mps_peak is not None:
            self._mps_peak.start()  # torch keeps no peak for MPS: a thread samples the driver's counter

    def device_memory_mb(self) -> float | None:
        if self._device == "cuda":
            return self._torch.cuda.max_memory_allocated() / 2**20
        if self._mps_peak is not None:
            return self._mps_peak.stop() / 2**20
        return None

    def live_device_mb(self) -> float | None:
        if self._mps_peak is None:
            return None
        latest = self._mps_peak.latest
        return None if latest is None else latest / 2**20


class TorchKvDecoder:
    """Greedy generation with the model's own KV cache (its ``decode_step``), kept on the device."""

    def __init__(self, module, session: TorchSession):
        self._module, self._session, self._past = module, session, None

    def _call(self, ids: np.ndarray) -> np.ndarray:
        torch = self._session._torch
        with self._session._grad_off():
            logits, self._past = self._module.decode_step(
                torch.from_numpy(np.ascontiguousarray(ids)).to(self._session._device), self._past)
            out = logits[:, -1].float().cpu().numpy()  # .cpu() waits for the device
        return out

    def start(self, prompt: np.ndarray) -> np.ndarray:
        self._past = None
        return self._call(prompt)

    def step(self, ids: np.ndarray) -> np.ndarray:
        return self._call(ids)

    def cache_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for kv in self._past or () for t in kv)
def device_memory_limit(device: str) -> int | None:
    """What the device can hold: the GPU's recommended working set on ``mps`` (unified memory),
    the GPU's own memory on ``cuda``."""
    torch = _torch()
    try:
        if device == "mps":
            return int(torch.mps.recommended_max_memory()) or None
        if device == "cuda":
            return int(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory) or None
    except (AttributeError, RuntimeError):
        return None
    return None


def _device_memory(artifact: Artifact, device: str) -> None:
    """The unified-memory warning and the memory figure's meaning (engines.devices.memory, shared with MLX)."""
    from engines.devices.memory import device_memory_metrics, working_set_warning

    limit = device_memory_limit(device)
    if warning := working_set_warning(device, artifact.size_bytes, limit):
        artifact.notes.append(warning)
    artifact.facts.setdefault("metrics", {}).update(device_memory_metrics(device, limit))


def open_session(artifact: Artifact, model: LoadedModel, device: str, threads: int,
                 config: TorchRuntimeConfig | None = None) -> Session:
    torch = _torch()
    config = config or TorchRuntimeConfig()
    torch.set_num_threads(threads)
    module = artifact.payload
    if device != "cpu":
        _device_memory(artifact, device)
        module = module.to(device)
    if artifact.facts.get("pt2e") and device == "cpu":
        if config.simulate_int8:
            artifact.facts["simulated"] = True
            artifact.notes.append("eager Q/DQ graph: float kernels simulating int8 (simulate_int8=true)")
        else:
            # Freezing turns the folded int8 weights into constants, which is what lets inductor
            # match dequantize → linear → quantize and emit oneDNN's int8 qlinear kernels.
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
            import torch._dynamo.config as dynamo_config

            for name in ("recompile_limit", "cache_size_limit"):  # one graph per batch size, and the eval's
                if hasattr(dynamo_config, name):
                    setattr(dynamo_config, name, max(64, getattr(dynamo_config, name)))
            compiled = torch.compile(module, dynamic=False)  # a dynamic batch breaks the qconv lowering
            try:  # lowering happens at the first call: try it here, where a failure can fall back
                with torch.no_grad():
                    compiled(*TorchSession(module, model, device, False)._tensors(model.example_inputs(1)))
            except Exception as exc:  # noqa: BLE001 - an op inductor cannot lower on this build
                artifact.facts["simulated"] = True
                artifact.notes.append(f"inductor could not lower the int8 graph ({type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0][:120]}); eager Q/DQ simulation instead")
            else:
                module = compiled
                engine = "oneDNN int8 qlinear/qconv via inductor (freezing)"
                artifact.notes.append(f"lowered to {engine}")
                artifact.facts["int8_kernels"] = engine
    elif config.compile:
        module = torch.compile(module)
        artifact.notes.append("lowered with torch.compile (inductor)")
    return TorchSession(module, model, device, half_inputs=artifact.facts.get("input_dtype")
                        or bool(artifact.facts.get("half_inputs")),
                        no_grad=bool(artifact.facts.get("int8_kernels")))


def runtime_info() -> dict[str, Any]:
    torch = _torch()
    info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    try:
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        pass
    return info
