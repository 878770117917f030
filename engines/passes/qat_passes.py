"""Quantization-aware training passes (torchao QAT).

Both runtimes share one fine-tuning loop: torchao's ``QATConfig(step="prepare")`` swaps each
``Linear`` for a ``FakeQuantizedLinear`` (weights, and activations where asked, rounded to the
target grid in the forward pass, straight-through gradients), the model trains on its own
training data for a few epochs, and then:

* ``torchao-qat-int8`` / ``-int4`` (torch): ``QATConfig(base, step="convert")`` turns the layers into
  real torchao quantized tensors (``Int8DynamicActivationIntxWeightConfig`` or ``IntxWeightOnlyConfig``).
* ``qat-finetune-int8`` / ``-int4`` (ONNX Runtime): the trained layers are put back as float
  ``Linear`` layers holding the learnt integer weights and scales (``artifact.facts["qdq"]``);
  ``export-onnx`` then writes each as a ``MatMulNBits`` node of those integers (the op ``int4``
  uses; a QDQ graph of the same weights ran over 20x slower on digits-mlp, bench/qat_export.py).

Progress (epoch, loss, accuracy on the calibration rows) goes out through ``PassContext.emit``.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from typing import Any

from engines.methods.qat import QatConfigBase, QatInt4Config, QatInt8Config
from engines.passes import Format, PassContext, register_pass
from engines.runtimes.base import Artifact, UnsupportedVariant

logging.getLogger("torchao").setLevel(logging.ERROR)

_NO_MPS = {"mps": "torchao integer kernels do not run on MPS"}


def _torch_dtype(bits: int):
    import torch

    return getattr(torch, f"int{bits}")


def _refuse_without_data(ctx: PassContext, config: QatConfigBase) -> None:
    model = ctx.model
    name = "qat-int8" if isinstance(config, QatInt8Config) else "qat-int4"
    if model.module is None:
        raise UnsupportedVariant(f"{name} fine-tunes the torch module; {model.name} was loaded as a graph only")
    if model.training_data is None or model.training_data.rows == 0:
        raise UnsupportedVariant(
            f"{name} fine-tunes on the model's training data and {model.name} ships none "
            "(the built-in digits-mlp, digits-cnn and tiny-lm do); use a post-training method instead"
        )
    if model.task not in ("classification", "causal-lm"):
        raise UnsupportedVariant(f"{name} knows the training loss of classifiers and causal LMs, not {model.task}")


def fake_quant_configs(config: QatConfigBase) -> tuple[Any, Any]:
    """(activation, weight) torchao fake-quantize configs for ``config``."""
    from torchao.quantization.qat import IntxFakeQuantizeConfig

    dtype = _torch_dtype(config.weight_bits)
    weight = (IntxFakeQuantizeConfig(dtype, group_size=config.group_size) if config.group_size
              else IntxFakeQuantizeConfig(dtype, "per_channel"))
    activation = (IntxFakeQuantizeConfig(_torch_dtype(8), "per_token", is_symmetric=False)
                  if config.activation_bits == 8 else None)
    return activation, weight


def base_config(config: QatConfigBase) -> Any:
    """The post-training torchao config the fake quantization converts into."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig, IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerAxis, PerGroup

    dtype = _torch_dtype(config.weight_bits)
    granularity = PerGroup(config.group_size) if config.group_size else PerAxis(0)
    if config.activation_bits == 8:
        return Int8DynamicActivationIntxWeightConfig(weight_dtype=dtype, weight_granularity=granularity)
    return IntxWeightOnlyConfig(weight_dtype=dtype, granularity=granularity)


def _loss(task: str, logits, labels):
    import torch.nn.functional as F

    if task == "causal-lm":
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    return F.cross_entropy(logits, labels)


def _accuracy(ctx: PassContext, module) -> float | None:
    """Share of right answers on the calibration rows (never the held-out set the result reports)."""
    import numpy as np
    import torch

    model = ctx.model
    if model.calibration_inputs is None or model.calibration_labels is None:
        return None
    with torch.no_grad():
        out = module(*(torch.from_numpy(model.calibration_inputs[n]) for n in model.input_names))
    return float(np.mean(out.argmax(-1).numpy() == model.calibration_labels))


def finetune(ctx: PassContext, config: QatConfigBase) -> tuple[Any, list[dict[str, float]]]:
    """A prepared (fake-quantized) copy of the model, trained for ``config.epochs``; and the history."""
    import torch
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    _refuse_without_data(ctx, config)
    model, data = ctx.model, ctx.model.training_data
    module = copy.deepcopy(model.module)
    linears = sum(1 for m in module.modules() if isinstance(m, torch.nn.Linear))
    if linears == 0:
        raise UnsupportedVariant("torchao QAT fake-quantizes Linear layers and this model has none")
    activation, weight = fake_quant_configs(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_(module, QATConfig(activation_config=activation, weight_config=weight, step="prepare"))
    torch.manual_seed(0)
    inputs = {n: torch.from_numpy(data.inputs[n]) for n in model.input_names}
    labels = torch.from_numpy(data.labels)
    opt = torch.optim.Adam(module.parameters(), lr=config.learning_rate)
    history: list[dict[str, float]] = []
    module.eval()
    first = _accuracy(ctx, module)
    ctx.emit(step="qat", epoch=0, epochs=config.epochs, accuracy=first)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(1, config.epochs + 1):
        module.train()
        t0, total, steps = time.perf_counter(), 0.0, 0
        for idx in torch.randperm(len(labels), generator=gen).split(config.batch_size)[: config.max_steps_per_epoch]:
            opt.zero_grad()
            loss = _loss(model.task, module(*(inputs[n][idx] for n in model.input_names)), labels[idx])
            loss.backward()
            opt.step()
            total, steps = total + float(loss), steps + 1
        module.eval()
        row = {"epoch": epoch, "loss": total / max(steps, 1), "accuracy": _accuracy(ctx, module),
               "seconds": time.perf_counter() - t0}
        history.append(row)
        ctx.emit(step="qat", epochs=config.epochs, **row)
    return module, [{"epoch": 0, "loss": math.nan, "accuracy": first}] + history


def _notes(config: QatConfigBase, history: list[dict[str, float]], linears: int) -> list[str]:
    act = "int8 dynamic activations" if config.activation_bits == 8 else "float activations"
    grid = f"groups of {config.group_size}" if config.group_size else "per channel"
    notes = [f"torchao QAT: {linears} Linear layers at {config.weight_bits}-bit weights ({grid}), {act}"]
    if history[-1]["epoch"]:
        acc = history[-1].get("accuracy")
        last = f"{config.epochs} epochs, final loss {history[-1]['loss']:.4f}"
        notes.append(last + (f", calibration accuracy {history[0]['accuracy']:.3f} → {acc:.3f}" if acc is not None
                             and history[0]["accuracy"] is not None else ""))
    else:
        notes.append("0 epochs: the same fake quantization applied post-training (no fine-tuning)")
    return notes


def _history_metrics(history: list[dict[str, float]]) -> dict[str, Any]:
    return {"qat_history": [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
                            for row in history]}


def torchao_qat(ctx: PassContext, artifact: Artifact, config: QatConfigBase) -> Artifact:
    """Fine-tune with torchao fake quantization, then convert into torchao quantized tensors."""
    import torch
    from torchao.quantization import quantize_
    from torchao.quantization.qat import QATConfig

    from engines.passes.torch_passes import save_module

    module, history = finetune(ctx, config)
    linears = sum(1 for m in module.modules() if type(m).__name__ == "FakeQuantizedLinear")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_(module, QATConfig(base_config(config), step="convert"))
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    notes = _notes(config, history, linears)
    if any(isinstance(m, torch.nn.Conv2d) for m in module.modules()):
        notes.append("Conv2d layers stay float (torchao QAT targets Linear)")
    artifact = save_module(module, ctx, f"qat-w{config.weight_bits}", notes)
    artifact.facts["metrics"] = _history_metrics(history)
    return artifact


def learnt_integer_weights(module) -> dict[str, dict[str, Any]]:
    """Each fake-quantized layer's integer weights and scales, exactly as the last forward used them,
    and the module with those layers put back as plain ``Linear`` (float weights on the grid)."""
    import torch
    from torchao.quantization.qat.linear import FakeQuantizedLinear

    learnt: dict[str, dict[str, Any]] = {}
    for name, layer in list(module.named_modules()):
        if not isinstance(layer, FakeQuantizedLinear):
            continue
        fq = layer.weight_fake_quantizer
        with torch.no_grad():
            w_fake = fq(layer.weight)  # computes fq.scale / fq.zero_point for the current weights
            scale = fq.scale.detach().float().reshape(layer.weight.shape[0], -1)
            group = layer.weight.shape[1] // scale.shape[1]
            bits = _bits(fq.config.dtype)
            qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
            # From the fake-quantized weight, not the float one: torchao rounds w * (1/scale), and where
            # that lands on a half-step differently from w / scale the integer would be one step off
            # (digits-mlp int4: logits 0.13 away from the fine-tuned model's; from w_fake: 2e-5).
            q = torch.clamp(torch.round(w_fake / scale.repeat_interleave(group, dim=1)), qmin, qmax)
        learnt[name] = {"q": q.to(torch.int8).numpy(), "scale": scale.numpy(), "group": group,
                        "bits": bits}
        plain = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
        with torch.no_grad():
            plain.weight.copy_(w_fake)
            if layer.bias is not None:
                plain.bias.copy_(layer.bias)
        parent, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, child, plain)
    return learnt


def _bits(dtype) -> int:
    return int(str(dtype).removeprefix("torch.int"))


def qat_finetune(ctx: PassContext, artifact: Artifact, config: QatConfigBase) -> Artifact:
    """Fine-tune with torchao fake quantization; the learnt integer weights go to a MatMulNBits export."""
    module, history = finetune(ctx, config)
    learnt = learnt_integer_weights(module.eval())
    for p in module.parameters():
        p.requires_grad_(False)
    notes = _notes(config, history, len(learnt))
    if config.activation_bits == 8:
        notes.append("ONNX Runtime export: weights as MatMulNBits of the learnt integers; activations "
                     "stay float (torchao's per-token dynamic activation quantization has no ONNX form)")
    facts = {"qdq": learnt, "metrics": _history_metrics(history)}
    return Artifact(ctx.workdir / "model.qat.pt", notes=notes, payload=module, format=Format.TORCH.value,
                    facts=facts)


_ORT = ("onnxruntime",)
for _cls, _suffix in ((QatInt8Config, "int8"), (QatInt4Config, "int4")):
    register_pass(f"torchao-qat-{_suffix}", config=_cls, input=Format.TORCH, output=Format.TORCH,
                  runtimes=("torch",), unsupported=_NO_MPS)(torchao_qat)
    register_pass(f"qat-finetune-{_suffix}", config=_cls, input=Format.TORCH, output=Format.TORCH,
                  runtimes=_ORT)(qat_finetune)
