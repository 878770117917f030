"""Mixed precision from layer sensitivity (the ``mixed`` method), realised per runtime.

``torch-mixed``: the layers of the plan are quantized per module (torch.ao dynamic int8 with a
qconfig per module name; torchao Intx int4 with a ``filter_fn``); kept layers stay fp32.
``ort-mixed``: ONNX Runtime's quantizers with ``nodes_to_exclude`` for the kept layers
(``quantize_dynamic``, ``quantize_static``, ``MatMulNBitsQuantizer``).
``mlx-mixed``: one ``mlx.nn.quantize`` call whose predicate gives each Linear/Embedding its own bits
(4 or 8) and group; kept layers stay float, are cast to fp16/bf16, or take 8 bits (``keep=int8``).

All measure sensitivity and search the plan on the calibration rows, never on the held-out set
the result reports; the plan and the per-layer sensitivity go to the result's ``metrics``.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from engines.methods.configs import CalibrationMethod
from engines.methods.mixed import KeepPrecision, MixedBase, MixedConfig, SensitivityMeasure, parse_pins
from engines.passes import Format, PassContext, register_pass
from engines.runtimes.base import Artifact, UnsupportedVariant


def _calibration(ctx: PassContext, config: MixedConfig):
    import numpy as np

    model = ctx.model
    batches = model.calibration_batches(config.calibration_samples)
    if not batches:
        raise UnsupportedVariant("mixed measures sensitivity on calibration rows and the model has none")
    rows = sum(len(b[model.input_names[0]]) for b in batches)
    labels = None if model.calibration_labels is None else np.asarray(model.calibration_labels)[:rows]
    return batches, labels


def _search(ctx: PassContext, config: MixedConfig, layers: dict[str, int], weight_sqnr: dict[str, float], trial,
            reference, labels) -> tuple[dict[str, Any], dict[str, Any]]:
    from engines.analysis import sensitivity as sens

    ranking = sens.measure_sensitivity(layers, weight_sqnr, trial, ctx.model.task, reference, labels,
                                       config.sensitivity is SensitivityMeasure.LAYER, ctx.emit)
    plan = sens.plan_mixed(ranking, trial, ctx.model.task, reference, labels,
                           {"max_accuracy_drop": config.max_accuracy_drop, "min_agreement": config.min_agreement,
                            "kind": config.budget.value},
                           config.max_kept_fraction, parse_pins(config.pins), ctx.emit)
    metrics = sens.mixed_metrics(ranking, plan, config.base.value)
    metrics["mixed_plan"] = {layer: (config.keep.value if p == "fp32" else p)
                             for layer, p in metrics["mixed_plan"].items()}
    return plan, metrics


def _notes(plan: dict[str, Any], config: MixedConfig) -> list[str]:
    kept, quantized = plan["kept"], plan["quantized"]
    s = plan["scores"]
    notes = [f"mixed ({config.base.value}): {len(quantized)} layers quantized, {len(kept)} kept {config.keep.value}"
             + (f" ({', '.join(kept[:4])}{' …' if len(kept) > 4 else ''})" if kept else ""),
             f"budget {plan['budget']}: calibration agreement {s['agreement']:.4f}"
             + (f", accuracy {s['accuracy']:.4f}" if s.get("accuracy") is not None else "")]
    return notes


# --- torch ----------------------------------------------------------------------------------------


_KEEP_INT8_MLX_ONLY = "keep=int8 (8-bit weights for the kept layers) is realised on MLX only"


def _torch_refusal(config: MixedConfig) -> str | None:
    if config.keep is KeepPrecision.INT8:
        return _KEEP_INT8_MLX_ONLY
    if config.base is MixedBase.STATIC_INT8:
        return "mixed with a static-int8 base is realised on ONNX Runtime (quantize_static with excluded nodes)"
    return None


def _torch_keep(module, quantized: set[str], config: MixedConfig) -> None:
    """Hold the kept Linear layers in fp16/bf16: each runs on its input cast down and gives its
    output back in the input's dtype, so the layers around it are unchanged."""
    import torch

    if config.keep is KeepPrecision.FP32:
        return
    dtype = torch.float16 if config.keep is KeepPrecision.FP16 else torch.bfloat16

    def cast_in(layer, args):
        return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    def cast_out(layer, args, output):
        return output.float()  # mixed starts from the fp32 model

    for name, layer in module.named_modules():
        if type(layer) is torch.nn.Linear and name not in quantized:
            layer.to(dtype)
            layer.register_forward_pre_hook(cast_in)
            layer.register_forward_hook(cast_out)


def _torch_realise(module, quantized: set[str], config: MixedConfig):
    import torch

    copy_ = copy.deepcopy(module).eval()
    _torch_keep(copy_, quantized, config)
    if not quantized:
        return copy_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if config.base is MixedBase.DYNAMIC_INT8:
            from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

            supported = torch.backends.quantized.supported_engines
            torch.backends.quantized.engine = "x86" if "x86" in supported else "qnnpack"
            return quantize_dynamic(copy_, {name: per_channel_dynamic_qconfig for name in quantized},
                                    dtype=torch.qint8)
        from torchao.quantization import IntxWeightOnlyConfig, quantize_
        from torchao.quantization.granularity import PerGroup

        quantize_(copy_, IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(config.group_size)),
                  filter_fn=lambda m, fqn: isinstance(m, torch.nn.Linear) and fqn in quantized)
        return copy_


@register_pass("torch-mixed", config=MixedConfig, input=Format.TORCH, output=Format.TORCH, runtimes=("torch",),
               check=_torch_refusal, unsupported={"mps": "torchao integer kernels do not run on MPS"})
def torch_mixed(ctx: PassContext, artifact: Artifact, config: MixedConfig) -> Artifact:
    """Sensitivity-ranked mixed precision with per-module quantization (torch.ao dynamic int8 / torchao int4)."""
    import numpy as np
    import torch

    from engines.analysis.sensitivity import fake_quantize_weight, sqnr_db
    from engines.passes.torch_passes import save_module

    model, module = ctx.model, artifact.payload
    batches, labels = _calibration(ctx, config)
    bits, group = (8, None) if config.base is MixedBase.DYNAMIC_INT8 else (4, config.group_size)
    layers, weight_sqnr = {}, {}
    for name, m in module.named_modules():
        if isinstance(m, torch.nn.Linear):
            w = m.weight.detach().numpy()
            layers[name] = int(w.size)
            weight_sqnr[name] = sqnr_db(w, fake_quantize_weight(w, bits, group))
    if not layers:
        raise UnsupportedVariant("mixed on torch quantizes Linear layers and this model has none")

    def run(m) -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate([m(*(torch.from_numpy(b[n]) for n in model.input_names)).float().numpy()
                                   for b in batches])

    reference = run(module)
    plan, metrics = _search(ctx, config, layers, weight_sqnr,
                            lambda quantized: run(_torch_realise(module, quantized, config)), reference, labels)
    final = _torch_realise(module, set(plan["quantized"]), config)
    out = save_module(final, ctx, "mixed", _notes(plan, config))
    out.facts["metrics"] = metrics
    return out


# --- ONNX Runtime -----------------------------------------------------------------------------------


def _weighted_nodes(proto, op_types: tuple[str, ...]) -> dict[str, list[Any]]:
    """Layer name (the node's module scope, e.g. ``blocks.0.qkv``) → its nodes with a constant weight."""
    inits = {t.name for t in proto.graph.initializer}
    layers: dict[str, list[Any]] = {}
    for node in proto.graph.node:
        if node.op_type in op_types and len(node.input) > 1 and node.input[1] in inits:
            scope = ".".join(node.name.strip("/").split("/")[:-1]) or node.name
            layers.setdefault(scope, []).append(node)
    return layers


def _ort_keep_fp16(path: Path, kept: list[str]) -> int:
    """Run the kept MatMul nodes in float16: each weight stored as float16, the activation cast to
    float16 before the node and its output cast back to float32 after it, nothing else touched
    (``onnxruntime.transformers.float16`` with a block list also casts the graph's inputs and
    outputs and the nodes around). Returns how many nodes were converted (Conv stays float32:
    ONNX Runtime's x86 CPU provider has no float16 Conv)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    proto = onnx.load(str(path))
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    kept_set, converted, nodes = set(kept), 0, []
    for node in graph.node:
        if node.name not in kept_set or node.op_type != "MatMul" or node.input[1] not in inits:
            nodes.append(node)
            continue
        activation, weight = node.input[0], node.input[1]
        half_weight = f"{weight}_fp16"
        if half_weight not in inits:
            inits[half_weight] = numpy_helper.from_array(numpy_helper.to_array(inits[weight]).astype("float16"),
                                                         half_weight)
            graph.initializer.append(inits[half_weight])
        out = node.output[0]
        nodes.append(helper.make_node("Cast", [activation], [f"{node.name}_in_fp16"], to=TensorProto.FLOAT16,
                                      name=f"{node.name}_cast_in"))
        nodes.append(helper.make_node("MatMul", [f"{node.name}_in_fp16", half_weight], [f"{out}_fp16"],
                                      name=node.name))
        nodes.append(helper.make_node("Cast", [f"{out}_fp16"], [out], to=TensorProto.FLOAT, name=f"{node.name}_cast_out"))
        converted += 1
    used = {i for n in nodes for i in n.input}
    for name in [t.name for t in graph.initializer if t.name not in used]:
        graph.initializer.remove(inits[name])
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(proto, str(path))
    return converted


def _ort_refusal(config: MixedConfig) -> str | None:
    if config.keep is KeepPrecision.INT8:
        return _KEEP_INT8_MLX_ONLY
    if config.keep is KeepPrecision.BF16:
        return "ONNX Runtime's CPU MatMul has no bfloat16 kernel: keep=bf16 is realised on torch only"
    return None


def _ort_quantize(config: MixedConfig, src: Path, out: Path, exclude: list[str], calibration) -> None:
    from onnxruntime import quantization as ortq

    if config.base is MixedBase.DYNAMIC_INT8:
        ortq.quantize_dynamic(str(src), str(out), weight_type=ortq.QuantType.QInt8, per_channel=True,
                              nodes_to_exclude=exclude)
    elif config.base is MixedBase.STATIC_INT8:
        from engines.passes.onnx_passes import _CalibrationReader

        method = {CalibrationMethod.MINMAX: ortq.CalibrationMethod.MinMax,
                  CalibrationMethod.ENTROPY: ortq.CalibrationMethod.Entropy,
                  CalibrationMethod.PERCENTILE: ortq.CalibrationMethod.Percentile}[config.calibration_method]
        ortq.quantize_static(str(src), str(out), _CalibrationReader(list(calibration)),
                             quant_format=ortq.QuantFormat.QDQ, per_channel=True,
                             activation_type=ortq.QuantType.QUInt8, weight_type=ortq.QuantType.QInt8,
                             calibrate_method=method, op_types_to_quantize=["MatMul", "Gemm", "Conv"],
                             nodes_to_exclude=exclude)
    else:
        import onnx
        from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

        quantizer = MatMulNBitsQuantizer(onnx.load(str(src)), bits=4, block_size=config.group_size,
                                         is_symmetric=True, accuracy_level=4, nodes_to_exclude=exclude)
        quantizer.process()
        quantizer.model.save_model_to_file(str(out), False)


@register_pass("ort-mixed", config=MixedConfig, input=Format.ONNX, output=Format.ONNX, runtimes=("onnxruntime",),
               check=_ort_refusal,
               unsupported={"cuda": "ONNX Runtime's int8 quantized operators run on the CPU execution provider only"})
def ort_mixed(ctx: PassContext, artifact: Artifact, config: MixedConfig) -> Artifact:
    """Sensitivity-ranked mixed precision: ONNX Runtime quantizers with the kept layers' nodes excluded."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from engines.analysis.sensitivity import fake_quantize_weight, sqnr_db
    from engines.models.base import run_outputs
    from engines.passes.onnx_passes import _quantized, gemm_to_matmul
    from engines.runtimes.ort.session import OnnxSession

    model = ctx.model
    batches, labels = _calibration(ctx, config)
    proto = onnx.load(str(artifact.path))
    gemm_to_matmul(proto)
    src = ctx.workdir / "model.mixed-src.onnx"
    if config.base is MixedBase.STATIC_INT8:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        onnx.save(proto, str(ctx.workdir / "model.mixed-raw.onnx"))
        try:
            quant_pre_process(str(ctx.workdir / "model.mixed-raw.onnx"), str(src), skip_symbolic_shape=True)
            proto = onnx.load(str(src))
        except Exception:  # noqa: BLE001 - pre-processing is an optimisation
            onnx.save(proto, str(src))
    else:
        onnx.save(proto, str(src))
    op_types = ("MatMul",) if config.base is MixedBase.INT4 else ("MatMul", "Conv")
    nodes = _weighted_nodes(proto, op_types)
    if not nodes:
        raise UnsupportedVariant("mixed found no MatMul/Gemm/Conv layer with constant weights in the graph")
    inits = {t.name: t for t in proto.graph.initializer}
    bits, group = (4, config.group_size) if config.base is MixedBase.INT4 else (8, None)
    layers, weight_sqnr = {}, {}
    for layer, layer_nodes in nodes.items():
        w = numpy_helper.to_array(inits[layer_nodes[0].input[1]])
        w2 = w.T if layer_nodes[0].op_type == "MatMul" else w.reshape(w.shape[0], -1)  # → [out, in]
        layers[layer] = int(sum(np.prod(inits[n.input[1]].dims) for n in layer_nodes))
        weight_sqnr[layer] = sqnr_db(w2, fake_quantize_weight(w2, bits, group))
    # Activation × activation MatMuls (attention scores) are not layers: they stay float.
    others = [n.name for n in proto.graph.node if n.op_type in ("MatMul", "Conv", "Gemm")
              and not any(n in group_ for group_ in nodes.values())]
    all_data = {k: np.concatenate([b[k] for b in batches]) for k in model.input_names}
    ref_session = OnnxSession(src, "cpu", ctx.threads)
    reference = run_outputs(ref_session, all_data, model.fixed_batch or 64)
    counter = iter(range(1_000_000))

    def realise(quantized: set[str], out: Path) -> None:
        kept = [n.name for layer, ns in nodes.items() if layer not in quantized for n in ns]
        if quantized:
            _ort_quantize(config, src, out, others + kept, batches)
        else:
            out.write_bytes(src.read_bytes())
        if kept and config.keep is KeepPrecision.FP16:
            _ort_keep_fp16(out, kept)

    def trial(quantized: set[str]) -> np.ndarray:
        if not quantized and config.keep is KeepPrecision.FP32:
            return reference
        out = ctx.workdir / f"model.mixed-trial{next(counter)}.onnx"
        realise(quantized, out)
        outputs = run_outputs(OnnxSession(out, "cpu", ctx.threads), all_data, model.fixed_batch or 64)
        out.unlink(missing_ok=True)
        return outputs

    plan, metrics = _search(ctx, config, layers, weight_sqnr, trial, reference, labels)
    out = ctx.workdir / "model.mixed.onnx"
    realise(set(plan["quantized"]), out)
    notes = _notes(plan, config)
    if others:
        notes.append(f"{len(others)} activation×activation MatMul nodes stay float")
    result = _quantized(out, notes)
    result.facts["metrics"] = metrics
    return result


# --- MLX --------------------------------------------------------------------------------------------


def _mlx_refusal(config: MixedConfig) -> str | None:
    if config.base is MixedBase.STATIC_INT8:
        return ("MLX quantizes weights only: mixed with a static-int8 base (calibrated int8 activations) is "
                "realised on ONNX Runtime")
    if config.keep is KeepPrecision.INT8 and config.base is not MixedBase.INT4:
        return "keep=int8 holds the kept layers above the base's bits: it needs base=int4"
    if config.group_size not in (32, 64, 128):
        return f"MLX quantizes weights in groups of 32, 64 or 128 (got group_size={config.group_size})"
    return None


@register_pass("mlx-mixed", config=MixedConfig, input=Format.MLX, output=Format.MLX, runtimes=("mlx",),
               check=_mlx_refusal)
def mlx_mixed(ctx: PassContext, artifact: Artifact, config: MixedConfig) -> Artifact:
    """Sensitivity-ranked mixed precision on MLX: one mlx.nn.quantize call with bits per layer."""
    import mlx.core as mx
    import numpy as np
    from mlx import nn

    from engines.analysis.sensitivity import sqnr_db
    from engines.passes.mlx_passes import save_mlx
    from engines.runtimes.mlx.convert import _group_for
    from engines.runtimes.mlx.session import MlxSession

    model, module = ctx.model, artifact.payload
    batches, labels = _calibration(ctx, config)
    # MLX has no int8 activations: the dynamic-int8 base is 8-bit weights (what the weight-int8 method does).
    base_bits = 4 if config.base is MixedBase.INT4 else 8
    base_label = "int4" if config.base is MixedBase.INT4 else "weight-int8"
    keep_bits = 8 if config.keep is KeepPrecision.INT8 else None
    half = {KeepPrecision.FP16: mx.float16, KeepPrecision.BF16: mx.bfloat16}.get(config.keep)
    layers, weight_sqnr, groups, skipped = {}, {}, {}, []
    def model_order(item) -> list:  # "blocks.10.fc1" after "blocks.2.fc1", whatever order MLX walks in
        return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in item[0].split(".")]

    for path, layer in sorted(module.named_modules(), key=model_order):
        if not isinstance(layer, (nn.Linear, nn.Embedding)):
            continue
        group = _group_for(layer.weight.shape[-1], config.group_size)
        if group is None:
            skipped.append(path)
            continue
        groups[path], layers[path] = group, int(layer.weight.size)
        restored = mx.dequantize(*mx.quantize(layer.weight, group, base_bits), group, base_bits)
        weight_sqnr[path] = sqnr_db(np.array(layer.weight), np.array(restored))
    if not layers:
        raise UnsupportedVariant("mixed on MLX quantizes Linear and Embedding layers and this model has none "
                                 "whose input size a group of 32, 64 or 128 divides")

    def realise(quantized: set[str]):
        copy_ = copy.deepcopy(module)
        if half is not None:  # kept layers stored in 16 bits; MLX promotes them back to float32 when they run
            modules = dict(copy_.named_modules())
            for path in set(layers) - quantized:
                modules[path].set_dtype(half)

        def bits_for(path: str, layer) -> bool | dict:
            bits = base_bits if path in quantized else keep_bits if path in layers else None
            return {"bits": bits, "group_size": groups[path], "mode": "affine"} if bits else False

        nn.quantize(copy_, class_predicate=bits_for)
        mx.eval(copy_.parameters())
        return copy_

    def run(m) -> np.ndarray:
        session = MlxSession(m, model, half_inputs=False, compiled=False)
        return np.concatenate([session.run(b) for b in batches])

    reference = run(module)
    plan, metrics = _search(ctx, config, layers, weight_sqnr,
                            lambda quantized: reference if not quantized and keep_bits is None and half is None
                            else run(realise(quantized)), reference, labels)
    final = realise(set(plan["quantized"]))
    kept_label = config.keep.value
    metrics["mixed_plan"] = {layer: (base_label if layer in plan["quantized"] else kept_label) for layer in layers}
    float_bits = 16 if half is not None else 32
    metrics["mixed_bits"] = {layer: (base_bits if layer in plan["quantized"] else keep_bits or float_bits)
                             for layer in layers}
    notes = _notes(plan, config)
    widths = sorted(set(metrics["mixed_bits"].values()))
    counts = Counter(metrics["mixed_plan"].values())
    notes.append("layers per precision: " + ", ".join(f"{label} {n}" for label, n in counts.items())
                 + f" (one mlx.nn.quantize call, group {config.group_size})")
    if len(widths) == 1:
        notes.append(f"one bit width only: the budget held with every layer at {widths[0]} bits" if plan["quantized"]
                     else "one bit width only: the budget needed every layer kept")
    if config.base is MixedBase.DYNAMIC_INT8:
        notes.append("MLX has no int8 activations: the dynamic-int8 base is 8-bit weights")
    if skipped:
        notes.append(f"{len(skipped)} layer(s) stay float (no group of 32, 64 or 128 divides their input size)")
    convs = sum(1 for _, m in module.named_modules() if isinstance(m, nn.Conv2d))
    if convs:
        notes.append(f"{convs} Conv2d layer(s) stay float (mixed on MLX covers Linear and Embedding)")
    out = save_mlx(final, ctx, "mixed", notes, **artifact.facts)
    out.facts["metrics"] = metrics
    return out
