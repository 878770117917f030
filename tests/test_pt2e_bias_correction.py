"""torch PT2E static int8's weight rounding (bias correction, restricted range), on a small real depthwise CNN."""

from __future__ import annotations

import copy
import warnings

import pytest

from tests.helpers import needs

# torch is imported by the tests, not at collection (seconds, in every xdist worker).
pytestmark = [needs("torch")]


def Depthwise():
    """A 3x3 depthwise conv (stride 2, padded) whose filters have one or two large taps, as after BN
    folding: int8 rounding shifts each filter's sum, hence its answer to flat inputs. The second conv
    has no bias: correction gives it one."""
    import torch
    from torch import nn

    class Depthwise(nn.Module):
        def __init__(self):
            super().__init__()
            gen = torch.Generator().manual_seed(0)
            self.dw = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)
            self.pw = nn.Conv2d(16, 8, 1, bias=False)
            w = torch.randn(16, 1, 3, 3, generator=gen) * 0.05
            w[:, 0, 1, 1] = torch.rand(16, generator=gen) * 10 + 5
            w[:, 0, 0, 1] = -w[:, 0, 1, 1] + torch.randn(16, generator=gen) * 0.05
            with torch.no_grad():
                self.dw.weight.copy_(w)
                self.dw.bias.zero_()

        def forward(self, x):
            return self.pw(self.dw(x))

    return Depthwise()


def _quantized(model, calibration, correct: bool, restricted: bool = True):
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from engines.methods.int8 import StaticInt8Config
    from engines.passes.pt2e_bias_correction import correct_pt2e_conv_biases
    from engines.passes.torch_passes import x86_quantizer

    exported = torch.export.export(copy.deepcopy(model), (calibration[0],)).module()
    quantizer = x86_quantizer(StaticInt8Config(torch_restricted_weights=restricted))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_pt2e(exported, quantizer)
        corrected = 0
        if correct:
            corrected = correct_pt2e_conv_biases(prepared, [(x,) for x in calibration])
        else:
            with torch.no_grad():
                for x in calibration:
                    prepared(x)
        return convert_pt2e(prepared, fold_quantize=True), corrected


def test_bias_correction_removes_the_mean_error_of_int8_weights():
    import torch

    model = Depthwise().eval()
    gen = torch.Generator().manual_seed(1)
    # positive, mostly flat activations (after ReLU6) with some texture
    calibration = [3 + torch.randn(8, 16, 12, 12, generator=gen) * 0.3 for _ in range(2)]
    held_out = 3 + torch.randn(8, 16, 12, 12, generator=gen) * 0.3
    plain, none = _quantized(model, calibration, correct=False)
    corrected, count = _quantized(model, calibration, correct=True)
    assert (none, count) == (0, 2)
    with torch.no_grad():
        ref = model(held_out)
        mean_error = lambda q: (q(held_out) - ref).mean(dim=(0, 2, 3)).abs().mean().item()
        before, after = mean_error(plain), mean_error(corrected)
    assert after < before / 3, (before, after)


def _int8_weights(converted):
    """(int8 weight, its dequantize node's args) of each convolution of a converted graph."""
    import torch

    found = []
    for node in converted.graph.nodes:
        if node.op == "call_function" and node.target is torch.ops.aten.conv2d.default:
            dq = node.args[1]
            found.append((getattr(converted, dq.args[0].target), dq.args))
    return found


@pytest.mark.parametrize("restricted", [True, False])
def test_restricted_range_puts_each_channels_largest_weight_on_the_grid(restricted):
    """[-127, 127]: scale max|w|/127, so the largest tap of each filter (the one that carries a depthwise
    filter after BN folding) is exact; with the x86 default [-128, 127] (scale max|w|/127.5) it is half a step off."""
    import torch

    model = Depthwise().eval()
    calibration = [3 + torch.randn(4, 16, 12, 12, generator=torch.Generator().manual_seed(1)) * 0.3]
    converted, _ = _quantized(model, calibration, correct=False, restricted=restricted)
    (q, args), _ = _int8_weights(converted)
    scale = getattr(converted, args[1].target)
    assert q.dtype == torch.int8 and (int(q.min()) >= -127) == restricted
    weights = model.dw.weight.detach().flatten(1)
    tap = weights.abs().argmax(dim=1, keepdim=True)  # each filter's largest weight
    dequantized = q.flatten(1).float() * scale[:, None]
    error = (dequantized.gather(1, tap) - weights.gather(1, tap)).abs().flatten() / scale
    if restricted:
        assert error.max() < 1e-3
    else:
        assert error.min() > 0.4  # half a step off on every channel
