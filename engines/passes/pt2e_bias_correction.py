"""Empirical bias correction of convolutions in a prepared PT2E graph (``pt2e-static-int8``).

The torch counterpart of :mod:`engines.passes.onnx_bias_correction`: the same correction (Nagel et
al. 2019, Data-Free Quantization, sec. 4.2), applied where PT2E has folded batch norm into the
convolutions and put an observer on each weight, so that the weights are rounded exactly as
``convert_pt2e`` will round them (the observer's own scales and zero points).
"""

from __future__ import annotations

import functools
from typing import Any


def correct_pt2e_conv_biases(prepared: Any, batches: list[tuple]) -> int:
    """Shift the bias of each observed convolution of ``prepared`` (after ``prepare_pt2e``) by minus
    the mean, over ``batches`` (tuples of input tensors), of the output error its int8 weights add;
    in place, before ``convert_pt2e``. Returns the number of convolutions corrected.

    Running the batches through ``prepared`` is also its calibration: every observer sees them, and a
    weight's observer runs before its convolution, so the weight's int8 grid is known when the error
    is measured. The caller need not run them first.

    The float graph's own conv inputs are used (observers pass values through), and the mean
    error per output channel is ``conv(x, round(W) - W)`` averaged over batch and positions: padding,
    strides and groups come with the convolution's own arguments. Convolutions without a bias get
    one. Without correction EfficientNet-Lite0's torch int8 kept 12.7 dB logit SQNR (top-1 0.78);
    with it 20.4 dB (0.87), as ONNX Runtime's corrected graph (20.9 dB).
    """
    import torch

    convs = (torch.ops.aten.conv2d.default, torch.ops.aten.conv1d.default)
    sums: dict[str, Any] = {}
    counts: dict[str, int] = {}

    def rounded(node: Any, weight: Any) -> Any | None:
        observer = node.args[1]
        if not (isinstance(observer, torch.fx.Node) and observer.op == "call_module"):
            return None  # the weight is not observed: it stays float and adds no error
        obs = prepared.get_submodule(observer.target)
        if not hasattr(obs, "calculate_qparams") or getattr(obs, "ch_axis", None) is None:
            return None
        scale, zero = obs.calculate_qparams()
        return torch.fake_quantize_per_channel_affine(weight, scale.float(), zero.int(), obs.ch_axis,
                                                      obs.quant_min, obs.quant_max)

    class ErrorProbe(torch.fx.Interpreter):
        def run_node(self, node):
            out = super().run_node(node)
            if node.op == "call_function" and node.target in convs:
                args = [self.env[a] if isinstance(a, torch.fx.Node) else a for a in node.args]
                weight = rounded(node, args[1])
                if weight is not None:
                    error = node.target(args[0], weight - args[1], None, *args[3:])
                    dims = [0, *range(2, error.dim())]
                    sums[node.name] = sums.get(node.name, 0) + error.double().sum(dim=dims)
                    counts[node.name] = counts.get(node.name, 0) + error.numel() // error.shape[1]
            return out

    with torch.no_grad():
        for batch in batches:
            ErrorProbe(prepared).run(*batch)
        for node in prepared.graph.nodes:
            if node.name not in sums:
                continue
            shift = (sums[node.name] / counts[node.name]).float()
            bias = node.args[2] if len(node.args) > 2 else None
            if isinstance(bias, torch.fx.Node) and bias.op == "get_attr":
                tensor = functools.reduce(getattr, bias.target.split("."), prepared)
                tensor.data -= shift
                continue
            name = f"{node.name}_corrected_bias"
            prepared.register_buffer(name, -shift)
            with prepared.graph.inserting_before(node):
                attr = prepared.graph.get_attr(name)
            args = list(node.args) + [None] * max(0, 3 - len(node.args))
            args[2] = attr
            node.args = tuple(args)
        prepared.recompile()
    return len(sums)
