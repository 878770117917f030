"""PT2E static int8 reaches convolutions that a model hides behind a Conv2d subclass or a shared
activation module (EfficientNet-Lite's pattern), on a small real torch model."""

from __future__ import annotations

import copy

from tests.helpers import needs

# torch is imported by the test, not at collection (seconds, in every xdist worker).
pytestmark = [needs("torch")]


def Net():
    """A small CNN whose convolutions hide behind a Conv2d subclass and share one activation module."""
    from torch import nn

    class PaddedConv(nn.Conv2d):
        """efficientnet-pytorch's Conv2dStaticSamePadding in miniature: padding as a pre-op."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.static_padding = nn.ZeroPad2d((0, 1, 0, 1))

        def forward(self, x):
            return nn.functional.conv2d(self.static_padding(x), self.weight, self.bias, self.stride, self.padding,
                                        self.dilation, self.groups)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = PaddedConv(3, 8, 2), nn.BatchNorm2d(8)
            self.conv2, self.bn2 = PaddedConv(8, 8, 2, groups=8), nn.BatchNorm2d(8)
            self.act = nn.ReLU6()  # one module, called twice: one partition with two outputs
            self.head = nn.Linear(8, 4)

        def forward(self, x):
            x = self.act(self.bn1(self.conv1(x)))
            x = self.act(self.bn2(self.conv2(x)))
            return self.head(x.mean((2, 3)))

    return Net()


def test_conv_subclasses_and_shared_activations_are_quantized():
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    from engines.passes.torch_passes import _int8_convs, _plain_convs, _split_shared_calls

    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(4, 3, 16, 16)
    reference = net(x)
    module = copy.deepcopy(net)
    assert _plain_convs(module) == 2
    torch.testing.assert_close(module(x), reference)  # the rewrite changes nothing numerically
    exported = torch.export.export(module, (x,)).module()
    assert _split_shared_calls(exported) == 1
    quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    prepared(x)
    converted = convert_pt2e(prepared, fold_quantize=True)
    assert _int8_convs(converted) == (2, 2)
    out = converted(x)
    assert torch.nn.functional.cosine_similarity(out.flatten(), reference.flatten(), dim=0) > 0.95
