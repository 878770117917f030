"""PyTorch passes: torchao ``quantize_`` configs, torch.ao dynamic int8, PT2E static int8.

torch variants are quantized in memory, the way an application using torchao does it; each
pass saves the state dict only so that the artifact's size on disk can be measured. Their
output is a module only the torch runtime runs (torchao tensor subclasses do not export).
Everything heavy is imported inside the functions.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import platform
import warnings
from typing import Any

from engines.methods.configs import CalibrationMethod
from engines.methods.floats import Bf16Config, Fp16Config
from engines.methods.int4 import Int4Algorithm, Int4Config
from engines.methods.int8 import DynamicInt8Config, StaticInt8Config, WeightInt8Config
from engines.passes import Format, PassContext, register_pass
from engines.runtimes.base import Artifact, UnsupportedVariant

# torchao's CPU wheel tries to load CUDA kernels and warns about each; none of it matters here.
logging.getLogger("torchao").setLevel(logging.ERROR)

_TORCH = ("torch",)
_NO_MPS_INT = {"mps": "torchao integer kernels do not run on MPS"}


def save_module(module: Any, ctx: PassContext, name: str, notes: list[str] | None = None,
                **facts: Any) -> Artifact:
    """The module as an artifact: in memory for the runtime, its state dict on disk for the size."""
    import torch

    path = ctx.workdir / f"model.{name}.pt"
    torch.save(module.state_dict(), path)
    return Artifact(path, notes=notes or [], payload=module, format=Format.TORCH.value, facts=facts)


def _copy(artifact: Artifact) -> Any:
    """A private copy: the loaded model's own module stays the fp32 reference."""
    return copy.deepcopy(artifact.payload).eval()


def _count(module: Any, kind: str) -> int:
    import torch

    return sum(1 for m in module.modules() if isinstance(m, getattr(torch.nn, kind)))


def _linears_or_refuse(module: Any, what: str) -> int:
    linears = _count(module, "Linear")
    if linears == 0:
        raise UnsupportedVariant(f"{what} quantizes Linear layers and this model has none")
    return linears


def _convs_note(module: Any, why: str) -> list[str]:
    convs = _count(module, "Conv2d")
    return [f"{convs} Conv2d layers stay float ({why})"] if convs else []


EMBEDDING_MIN_VALUES = 1 << 16  # smaller tables are not worth the accuracy (as for ONNX Runtime)


def _torchao(ctx: PassContext, artifact: Artifact, ao_config: Any, name: str, embedding_config: Any = None,
             group_size: int | None = None) -> Artifact:
    import torch
    from torchao.quantization import quantize_

    module = _copy(artifact)
    linears = _linears_or_refuse(module, f"torchao {name}")
    notes: list[str] = []
    # Group-wise configs need in_features divisible by the group: other layers stay float.
    fits = (lambda m, fqn: isinstance(m, torch.nn.Linear) and (group_size is None or m.in_features % group_size == 0))
    quantized = sum(1 for m in module.modules() if fits(m, ""))
    if quantized == 0:
        raise UnsupportedVariant(f"no Linear layer's input width is a multiple of group size {group_size}")
    if quantized < linears:
        notes.append(f"{linears - quantized} Linear layers stay float (input width not a multiple of {group_size})")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_(module, ao_config, filter_fn=fits)
        tables = [fqn for fqn, m in module.named_modules()
                  if isinstance(m, torch.nn.Embedding) and m.weight.numel() >= EMBEDDING_MIN_VALUES]
        if embedding_config is not None and tables:
            quantize_(module, embedding_config, filter_fn=lambda m, fqn: fqn in tables)
    notes.insert(0, f"torchao {type(ao_config).__name__} on {quantized} Linear layers")
    if embedding_config is not None and tables:
        notes.append(f"{len(tables)} embedding tables as torchao {type(embedding_config).__name__}")
    return save_module(module, ctx, name, notes + _convs_note(module, "torchao quantize_ targets Linear"))


@register_pass("torch-half", config=Fp16Config, input=Format.TORCH, output=Format.TORCH, runtimes=_TORCH)
def torch_half(ctx: PassContext, artifact: Artifact, config: Fp16Config) -> Artifact:
    """Cast the module to float16 (inputs are cast when it runs)."""
    return save_module(_copy(artifact).half(), ctx, "fp16", half_inputs=True)


@register_pass("torch-bfloat16", config=Bf16Config, input=Format.TORCH, output=Format.TORCH, runtimes=_TORCH)
def torch_bfloat16(ctx: PassContext, artifact: Artifact, config: Bf16Config) -> Artifact:
    """Cast the module to bfloat16 (float inputs are cast when it runs): oneDNN's bf16 GEMMs on
    AVX512_BF16 / AMX; without them torch emulates bf16 and it runs slower than fp32."""
    import torch

    from engines.devices import cpu_features

    isa = cpu_features()
    native = [f for f in ("amx_bf16", "avx512_bf16") if isa.has(f)]
    note = (f"bf16 matmuls on {' and '.join(native)} (oneDNN)" if native else
            "no AVX512_BF16 or AMX found: torch emulates bf16 in fp32 (expect it slower than fp32)")
    return save_module(_copy(artifact).to(torch.bfloat16), ctx, "bf16", [note], input_dtype="bfloat16")


@register_pass("torchao-weight-int8", config=WeightInt8Config, input=Format.TORCH, output=Format.TORCH,
               runtimes=_TORCH, unsupported=_NO_MPS_INT)
def torchao_weight_int8(ctx: PassContext, artifact: Artifact, config: WeightInt8Config) -> Artifact:
    """torchao Int8WeightOnlyConfig (one scale per channel)."""
    import torch
    from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerAxis

    tables = IntxWeightOnlyConfig(weight_dtype=torch.int8, granularity=PerAxis(0)) if config.quantize_embeddings else None
    return _torchao(ctx, artifact, Int8WeightOnlyConfig(), "weight-int8", tables)


@register_pass("torch-dynamic-int8", config=DynamicInt8Config, input=Format.TORCH, output=Format.TORCH,
               runtimes=_TORCH, unsupported=_NO_MPS_INT)
def torch_dynamic_int8(ctx: PassContext, artifact: Artifact, config: DynamicInt8Config) -> Artifact:
    """Dynamic int8 through the library the torch runtime's ``dynamic_int8`` setting names: torch.ao
    quantize_dynamic (the default) or torchao."""
    from engines.runtimes.pytorch import TorchDynamicBackend

    library = getattr(ctx.runtime_config, "dynamic_int8", TorchDynamicBackend.TORCH_AO)
    if library is TorchDynamicBackend.TORCHAO:
        return _torchao_dynamic_int8(ctx, artifact)
    return _torch_ao_dynamic_int8(ctx, artifact, config)


def _torch_ao_dynamic_int8(ctx: PassContext, artifact: Artifact, config: DynamicInt8Config) -> Artifact:
    """Classic eager dynamic quantization: real int8 GEMMs (fbgemm/x86 on x86, qnnpack on ARM)."""
    import torch

    supported = torch.backends.quantized.supported_engines
    engine = "x86" if "x86" in supported else "fbgemm" if "fbgemm" in supported else "qnnpack"
    torch.backends.quantized.engine = engine
    module = _copy(artifact)
    linears = _linears_or_refuse(module, "torch.ao dynamic int8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the deprecation notice of torch.ao.quantization
        from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

        qconfig = per_channel_dynamic_qconfig if config.per_channel else default_dynamic_qconfig
        quantized = torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear: qconfig}, dtype=torch.qint8)
    notes = [f"torch.ao quantize_dynamic ({engine}) on {linears} Linear layers"]
    notes += _convs_note(module, "dynamic quantization covers Linear only")
    return save_module(quantized, ctx, "dynamic-int8", notes, quantized_engine=engine)


def _torchao_dynamic_int8(ctx: PassContext, artifact: Artifact) -> Artifact:
    """torchao Int8DynamicActivationInt8WeightConfig (meant for torch.compile)."""
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig

    return _torchao(ctx, artifact, Int8DynamicActivationInt8WeightConfig(), "dynamic-int8")


@register_pass("torchao-int4", config=Int4Config, input=Format.TORCH, output=Format.TORCH, runtimes=_TORCH,
               unsupported=_NO_MPS_INT)
def torchao_int4(ctx: PassContext, artifact: Artifact, config: Int4Config) -> Artifact:
    """torchao IntxWeightOnlyConfig(int4, PerGroup): runs on any CPU (the packed Int4 kernels need
    CUDA, or bf16 on x86)."""
    import torch
    from torchao.quantization import IntxWeightOnlyConfig
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_primitives import MappingType

    algorithm = {}
    if config.algorithm is Int4Algorithm.HQQ:  # torchao's HQQ optimises scales only (symmetric)
        from torchao.quantization.quantize_.workflows.intx.intx_choose_qparams_algorithm import (
            IntxChooseQParamsAlgorithm,
        )

        algorithm = {"intx_choose_qparams_algorithm": IntxChooseQParamsAlgorithm.HQQ_SCALE_ONLY}
    ao_config = IntxWeightOnlyConfig(
        weight_dtype=torch.int4, granularity=PerGroup(config.group_size),
        mapping_type=MappingType.SYMMETRIC if config.symmetric else MappingType.ASYMMETRIC, **algorithm,
    )
    embeddings = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(config.group_size),
                                      mapping_type=ao_config.mapping_type)  # round to nearest for tables
    quantized = _torchao(ctx, artifact, ao_config, "int4", embeddings if config.quantize_embeddings else None,
                         group_size=config.group_size)
    # torchao keeps one int4 value per byte; the file packs two (engines/passes/packed_int4.py).
    from engines.passes.packed_int4 import save_packed

    packed = save_packed(quantized.payload, quantized.path)
    quantized.notes.append(f"saved with {packed} int4 weights packed two values per byte")
    return quantized


def _pt2e_refusal(config: StaticInt8Config) -> str | None:
    if config.calibration_method is not CalibrationMethod.MINMAX:
        return (f"{config.calibration_method.value} calibration is offered by ONNX Runtime only; "
                "torch PT2E uses its quantizer's observers")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return "torch static int8 uses the x86 PT2E quantizer; this CPU is not x86"
    return None


def _prune_unused(graph_module: Any) -> None:
    """Drop parameters and buffers the converted graph no longer reads: convert_pt2e folds each
    weight into an int8 constant but leaves the float original registered (5.4 MB of state for a
    4.3 MB fp32 digits-mlp)."""
    used = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    for name, _ in list(graph_module.named_parameters()) + list(graph_module.named_buffers()):
        if name in used or any(u.startswith(name + ".") for u in used):
            continue
        owner_name, _, attr = name.rpartition(".")
        owner = graph_module.get_submodule(owner_name) if owner_name else graph_module
        if attr in owner._parameters:
            del owner._parameters[attr]
        elif attr in owner._buffers:
            del owner._buffers[attr]
    graph_module.delete_all_unused_submodules()


def _save_quantized(converted: Any, example: tuple, dynamic: tuple, ctx: PassContext) -> Any:
    """The quantized program on disk (int8 weights and their scales): an exported program where
    torch.export takes it back, else the pruned state dict. Returns the path."""
    import torch

    path = ctx.workdir / "model.static-int8.pt2"
    try:
        program = torch.export.export(converted, example, dynamic_shapes=dynamic)
        # The archive would keep the example batch (a calibration batch: 13.9 MB of EfficientNet's
        # images, weighing more than its int8 weights) and count it as the model's size.
        program.example_inputs = None
        torch.export.save(program, path)
    except Exception:  # noqa: BLE001 - the state dict holds the same int8 tensors
        path = ctx.workdir / "model.static-int8.pt"
        torch.save(converted.state_dict(), path)
    return path


def _plain_convs(module: Any) -> int:
    """Give the quantizer plain ``nn.Conv2d`` modules; returns how many were rewritten.

    PT2E's quantizers find convolutions by the *exact* module type recorded at export, so a
    subclass hides them: efficientnet-pytorch's ``Conv2dStaticSamePadding`` (TensorFlow's 'SAME'
    padding as a pre-op) left all 49 of EfficientNet-Lite0's convolutions in float while the result
    read "static int8". Such a module becomes its padding followed by an ``nn.Conv2d`` with the same
    weights; a subclass that keeps ``nn.Conv2d.forward`` becomes ``nn.Conv2d`` as it is."""
    import torch.nn as nn

    rewritten = 0
    for name, child in list(module.named_modules()):
        if not isinstance(child, nn.Conv2d) or type(child) is nn.Conv2d or not name:
            continue
        padding = getattr(child, "static_padding", None)
        if isinstance(padding, nn.Module):
            plain = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride, child.padding,
                              child.dilation, child.groups, child.bias is not None, child.padding_mode)
            plain.load_state_dict(child.state_dict(), strict=False)
            replacement: nn.Module = nn.Sequential(padding, plain)
        elif type(child).forward is nn.Conv2d.forward:
            child.__class__, replacement = nn.Conv2d, child
        else:
            continue
        owner_name, _, attr = name.rpartition(".")
        setattr(module.get_submodule(owner_name) if owner_name else module, attr, replacement)
        rewritten += 1
    return rewritten


def _split_shared_calls(graph_module: Any) -> int:
    """One source partition per call of a module used at several places; returns how many calls
    were split off.

    A model that builds one ``nn.ReLU6()`` and calls it twice per block (EfficientNet-Lite) exports
    both calls under one module name, so the quantizer's partition of that module has two outputs
    and X86InductorQuantizer refuses the whole model ("Input partition has more than one output
    node"). Each call is a separate activation, so each gets its own name in the export metadata
    (``source_fn_stack``, or ``nn_module_stack``'s innermost entry, which torch ≥ 2.10 partitions by)."""
    groups: dict[str, list[Any]] = {}
    for node in graph_module.graph.nodes:
        if node.op != "call_function":
            continue
        if node.meta.get("source_fn_stack"):
            groups.setdefault("fn:" + str(node.meta["source_fn_stack"][-1][0]), []).append(node)
        elif node.meta.get("nn_module_stack"):
            groups.setdefault("mod:" + list(node.meta["nn_module_stack"].values())[-1][0], []).append(node)
    split = 0
    for nodes in groups.values():
        members = set(nodes)
        outputs = [n for n in nodes if any(user not in members for user in n.users)]
        if len(nodes) < 2 or len(outputs) != len(nodes):
            continue  # one call, or one call made of several nodes (batch norm and its getitems)
        for index, node in enumerate(nodes[1:], start=1):
            if node.meta.get("source_fn_stack"):
                *outer, (name, kind) = node.meta["source_fn_stack"]
                node.meta["source_fn_stack"] = [*outer, (f"{name}__call{index}", kind)]
            else:
                stack = dict(node.meta["nn_module_stack"])
                key, (fqn, kind) = list(stack.items())[-1]
                stack[key] = (f"{fqn}__call{index}", kind)
                node.meta["nn_module_stack"] = stack
            split += 1
    return split


def _int8_convs(graph_module: Any) -> tuple[int, int]:
    """(convolutions whose weight arrives through a dequantize, all convolutions) in the converted graph."""
    import torch

    convs = [n for n in graph_module.graph.nodes if n.op == "call_function" and n.target in (
        torch.ops.aten.conv2d.default, torch.ops.aten.conv1d.default)]
    quantized = sum(1 for n in convs if len(n.args) > 1 and "dequantize" in str(getattr(n.args[1], "target", "")))
    return quantized, len(convs)


def x86_quantizer(config: StaticInt8Config) -> Any:
    """X86InductorQuantizer with its default static config; with ``torch_restricted_weights``, weights
    in [-127, 127] (scale max/127: each channel's largest weight sits on the grid)."""
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq

    quantization = xiq.get_default_x86_inductor_quantization_config(is_dynamic=False)
    if config.torch_restricted_weights:
        quantization = dataclasses.replace(quantization, weight=dataclasses.replace(quantization.weight, quant_min=-127))
    return xiq.X86InductorQuantizer().set_global(quantization)


@register_pass("pt2e-static-int8", config=StaticInt8Config, input=Format.TORCH, output=Format.TORCH,
               runtimes=_TORCH, check=_pt2e_refusal, owns=("torch_bias_correction", "torch_restricted_weights"),
               unsupported={"cuda": "the x86 PT2E quantizer targets CPUs", **_NO_MPS_INT})
def pt2e_static_int8(ctx: PassContext, artifact: Artifact, config: StaticInt8Config) -> Artifact:
    """PT2E export + X86InductorQuantizer, calibrated, weights folded to int8.

    The torch runtime lowers the result with inductor (``freezing``), which replaces each
    dequantize → linear → quantize pattern with oneDNN's int8 ``qlinear`` kernels (VNNI/AMX where
    the CPU has them); eager Q/DQ, which only simulates int8 in float, runs when the runtime's
    ``simulate_int8`` asks for it and is flagged ``simulated``."""
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model = ctx.model
    batches = model.calibration_batches(config.calibration_samples)
    example = tuple(torch.from_numpy(batches[0][n]) for n in model.input_names)
    batch = torch.export.Dim("batch", min=1, max=65536)
    dynamic = tuple({0: batch} for _ in model.input_names)
    module = _copy(artifact)
    plain = _plain_convs(module)
    exported = torch.export.export(module, example, dynamic_shapes=dynamic).module()
    _split_shared_calls(exported)
    quantizer = x86_quantizer(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_pt2e(exported, quantizer)
        tensors = [tuple(torch.from_numpy(b[n]) for n in model.input_names) for b in batches]
        corrected = 0
        if config.bias_correction and config.torch_bias_correction:  # calibrates as it measures
            from engines.passes.pt2e_bias_correction import correct_pt2e_conv_biases

            corrected = correct_pt2e_conv_biases(prepared, tensors)
        else:
            with torch.no_grad():
                for b in tensors:
                    prepared(*b)
        converted = convert_pt2e(prepared, fold_quantize=True)
        _prune_unused(converted)
        path = _save_quantized(converted, example, dynamic, ctx)
    samples = sum(len(b[model.input_names[0]]) for b in batches)
    notes = [f"PT2E X86InductorQuantizer, calibrated on {samples} samples; saved with int8 weights"
             + (" in [-127, 127]" if config.torch_restricted_weights else "")]
    int8_convs, convs = _int8_convs(converted)
    if convs:
        notes.append(f"{int8_convs} of {convs} convolutions in int8"
                     + (f" ({plain} convolution subclasses rewritten as nn.Conv2d for the quantizer)" if plain else ""))
    if corrected:
        notes.append(f"{corrected} convolution biases corrected for int8 weight rounding")
    return Artifact(path, notes=notes, payload=converted, format=Format.TORCH.value, facts={"pt2e": True})
