"""torch PT2E static int8's convolution bias correction, on a small real depthwise CNN."""

from __future__ import annotations

import copy
import warnings

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn


class Depthwise(nn.Module):
    """A 3x3 depthwise conv (stride 2, padded) whose filters have one or two large taps, as after BN
    folding: int8 rounding shifts each filter's sum, hence its answer to flat inputs. The second conv
    has no bias: correction gives it one."""

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


def _quantized(model, calibration, correct: bool):
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from engines.passes.pt2e_bias_correction import correct_pt2e_conv_biases

    exported = torch.export.export(copy.deepcopy(model), (calibration[0],)).module()
    quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
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
