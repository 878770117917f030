"""torch → MLX: the model families qbench converts, and weight quantization with ``mlx.nn.quantize``.

Heavy (imports mlx and torch); only the MLX passes import it, in the child process.

Families:
* ``nn.Sequential`` stacks of Linear / Conv2d / MaxPool2d / Flatten / ReLU / GELU / Tanh / Sigmoid
  (the digits MLP and CNN built-ins, and user models of that shape). MLX convolves channels-last,
  so the input is transposed NCHW → NHWC before the first convolution and back before Flatten,
  which keeps torch's Linear weights valid as they are.
* the ``tiny-lm`` decoder (pre-norm GPT blocks with written-out attention), rebuilt in MLX.
* Hugging Face causal LMs whose ``model_type`` mlx-lm implements (Llama, Mistral, Qwen, Phi,
  GPT-2, …): mlx-lm's model class with the torch weights (engines.runtimes.mlx.lm).
* BERT sentence encoders (all-MiniLM-L6-v2): a compact MLX BERT with the wrapper's pooling
  (engines.runtimes.mlx.bert).

Quantization follows MLX's affine scheme (a scale and a bias per group of weights along the
input dimension); a layer whose input size the requested group does not divide gets the largest
supported group that does, or stays float, and the notes say which.
"""

from __future__ import annotations

import math
from typing import Any

import mlx.core as mx
import numpy as np
from mlx import nn

from engines.runtimes.base import UnsupportedVariant

GROUP_SIZES = (32, 64, 128)  # what mx.quantize accepts for the affine mode (0.32)


def _arr(t: Any) -> mx.array:
    return mx.array(t.detach().cpu().float().numpy())


# --- layers --------------------------------------------------------------------------------------


class ToChannelsLast(nn.Module):
    def __call__(self, x: mx.array) -> mx.array:
        return x.transpose(0, 2, 3, 1)


class FlattenChannelsFirst(nn.Module):
    """torch's Flatten after convolutions: back to NCHW first, so Linear weights keep their order."""

    def __init__(self, channels_last: bool):
        super().__init__()
        self.channels_last = channels_last

    def __call__(self, x: mx.array) -> mx.array:
        if self.channels_last and x.ndim == 4:
            x = x.transpose(0, 3, 1, 2)
        return x.reshape(x.shape[0], -1)


class QuantizedConv2d(nn.Module):
    """Conv2d with affine-quantized weights, dequantized at each call (MLX has no quantized
    convolution kernel: this saves memory and file size, not time)."""

    def __init__(self, conv: nn.Conv2d, group_size: int, bits: int):
        super().__init__()
        w = conv.weight  # (out, kh, kw, in)
        self.shape = tuple(w.shape)
        self.stride, self.padding = conv.stride, conv.padding
        self.group_size, self.bits = group_size, bits
        self.weight, self.scales, self.biases = mx.quantize(w.reshape(w.shape[0], -1), group_size, bits)
        if "bias" in conv:
            self.bias = conv.bias

    def __call__(self, x: mx.array) -> mx.array:
        w = mx.dequantize(self.weight, self.scales, self.biases, self.group_size, self.bits).reshape(self.shape)
        y = mx.conv2d(x, w, stride=self.stride, padding=self.padding)
        return y + self.bias if "bias" in self else y


class SequentialModel(nn.Module):
    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = layers

    def __call__(self, x: mx.array) -> mx.array:
        for layer in self.layers:
            x = layer(x)
        return x


def _sequential(module: Any) -> SequentialModel:
    import torch.nn as tnn

    layers: list[nn.Module] = []
    channels_last = False
    for child in module:
        if isinstance(child, tnn.Linear):
            layer = nn.Linear(child.in_features, child.out_features, bias=child.bias is not None)
            layer.weight = _arr(child.weight)  # (out, in) in both frameworks
            if child.bias is not None:
                layer.bias = _arr(child.bias)
        elif isinstance(child, tnn.Conv2d):
            if child.groups != 1 or child.dilation != (1, 1) or isinstance(child.padding, str):
                raise UnsupportedVariant("MLX conversion covers plain Conv2d (no groups, dilation or 'same' padding)")
            if not channels_last:
                layers.append(ToChannelsLast())
                channels_last = True
            layer = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride, child.padding,
                              bias=child.bias is not None)
            layer.weight = _arr(child.weight.permute(0, 2, 3, 1))  # OIHW -> OHWI
            if child.bias is not None:
                layer.bias = _arr(child.bias)
        elif isinstance(child, tnn.MaxPool2d):
            layer = nn.MaxPool2d(child.kernel_size, child.stride, child.padding)
        elif isinstance(child, tnn.Flatten):
            layer = FlattenChannelsFirst(channels_last)
            channels_last = False
        elif isinstance(child, tnn.ReLU):
            layer = nn.ReLU()
        elif isinstance(child, tnn.GELU):
            layer = nn.GELU(approx="tanh" if child.approximate == "tanh" else "none")
        elif isinstance(child, tnn.Tanh):
            layer = nn.Tanh()
        elif isinstance(child, tnn.Sigmoid):
            layer = nn.Sigmoid()
        elif isinstance(child, (tnn.Dropout, tnn.Identity)):
            continue
        else:
            raise UnsupportedVariant(f"MLX conversion has no rule for {type(child).__name__} layers")
        layers.append(layer)
    return SequentialModel(layers)


# --- tiny-lm -------------------------------------------------------------------------------------


class TinyBlock(nn.Module):
    def __init__(self, width: int, heads: int, ff: int):
        super().__init__()
        self.width, self.heads = width, heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc1, self.fc2 = nn.Linear(width, ff), nn.Linear(ff, width)
        self.act = nn.GELU()

    def __call__(self, x: mx.array, mask: mx.array) -> mx.array:
        b, t, _ = x.shape
        h, d = self.heads, self.width // self.heads
        q, k, v = mx.split(self.qkv(self.ln1(x)), 3, axis=-1)
        q, k, v = (z.reshape(b, t, h, d).transpose(0, 2, 1, 3) for z in (q, k, v))
        scores = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(d)) + mask
        att = mx.softmax(scores.astype(mx.float32), axis=-1).astype(v.dtype) @ v
        x = x + self.proj(att.transpose(0, 2, 1, 3).reshape(b, t, self.width))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class TinyLM(nn.Module):
    def __init__(self, vocab: int, context: int, width: int, heads: int, layers: int, ff: int):
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, width), nn.Embedding(context, width)
        self.blocks = [TinyBlock(width, heads, ff) for _ in range(layers)]
        self.ln, self.head = nn.LayerNorm(width), nn.Linear(width, vocab)

    def __call__(self, input_ids: mx.array) -> mx.array:
        t = input_ids.shape[1]
        x = self.tokens(input_ids) + self.positions(mx.arange(t))
        # additive causal mask: -inf above the diagonal (torch's masked_fill, as an addition)
        mask = mx.triu(mx.full((t, t), -mx.inf), k=1).astype(x.dtype)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln(x))


def _tiny_lm(module: Any) -> TinyLM:
    from engines.models import tiny_lm as spec

    model = TinyLM(spec.VOCAB, spec.CONTEXT, spec.WIDTH, spec.HEADS, spec.LAYERS, spec.FF)
    weights = [(name, _arr(p)) for name, p in module.state_dict().items() if name != "causal_mask"]
    model.load_weights(weights, strict=True)
    return model


# --- entry points --------------------------------------------------------------------------------


def to_mlx(module: Any) -> tuple[nn.Module, str]:
    """The MLX twin of a torch module and the family it was converted as."""
    import torch.nn as tnn

    from engines.runtimes.mlx import bert, lm

    if type(module).__name__ == "TinyLM" and hasattr(module, "blocks"):
        model, family = _tiny_lm(module), "tiny-lm decoder"
    elif isinstance(module, tnn.Sequential):
        model, family = _sequential(module), "sequential"
    elif lm.matches(module):
        model, family = lm.convert(module)
    elif bert.matches(module):
        model, family = bert.convert(module)
    else:
        raise UnsupportedVariant(
            "MLX conversion covers nn.Sequential MLP/CNN stacks, the tiny-lm decoder, BERT sentence encoders "
            f"and the Hugging Face causal LMs mlx-lm implements, not {type(module).__name__}")
    model.eval()
    mx.eval(model.parameters())
    return model, family


def _group_for(columns: int, wanted: int) -> int | None:
    """The requested group if it divides ``columns``, else the largest supported one that does."""
    if columns % wanted == 0:
        return wanted
    return next((g for g in sorted(GROUP_SIZES, reverse=True) if g < wanted and columns % g == 0), None)


def quantize(model: nn.Module, bits: int, group_size: int, mode: str = "affine") -> list[str]:
    """Quantize Linear, Embedding and Conv2d weights in place; notes say what stayed float or
    took another group size."""
    regrouped: dict[int, list[str]] = {}
    skipped: list[str] = []
    counts = {"Linear": 0, "Embedding": 0, "Conv2d": 0}

    def predicate(path: str, m: nn.Module) -> bool | dict:
        if not isinstance(m, (nn.Linear, nn.Embedding)):
            return False
        group = _group_for(m.weight.shape[-1], group_size) if mode == "affine" else group_size
        if group is None or m.weight.shape[-1] % group:
            skipped.append(path)
            return False
        counts[type(m).__name__] += 1
        if group != group_size:
            regrouped.setdefault(group, []).append(path)
            return {"group_size": group, "bits": bits, "mode": mode}
        return True

    nn.quantize(model, group_size=group_size, bits=bits, mode=mode, class_predicate=predicate)
    if mode == "affine":  # convolutions: no MLX kernel, so a dequantize-per-call wrapper (see QuantizedConv2d)
        layers = model.layers if isinstance(model, SequentialModel) else []
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.Conv2d):
                group = _group_for(int(np.prod(layer.weight.shape[1:])), group_size)
                if group is None:
                    skipped.append(f"layers.{i}")
                    continue
                if group != group_size:
                    regrouped.setdefault(group, []).append(f"layers.{i}")
                layers[i] = QuantizedConv2d(layer, group, bits)
                counts["Conv2d"] += 1
    mx.eval(model.parameters())
    done = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    notes = [f"mlx.nn.quantize {mode} {bits}-bit, group {group_size}: {done or 'nothing'} quantized"]
    if counts["Conv2d"]:
        notes.append(f"{counts['Conv2d']} Conv2d weights dequantized per call (MLX has no quantized convolution)")
    for group, paths in sorted(regrouped.items()):
        notes.append(f"group {group} for {len(paths)} layer(s) whose input size is not a multiple of {group_size}")
    if skipped:
        notes.append(f"{len(skipped)} layer(s) stay float (no supported group divides their input size)")
    return notes
