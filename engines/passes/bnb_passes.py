"""bitsandbytes passes: NF4 (``Linear4bit``) and LLM.int8() (``Linear8bitLt``) on torch modules.

bitsandbytes 0.50 runs both on the CPU (its own or PyTorch fallback kernels) as well as CUDA;
it has no MPS backend. Each ``Linear`` is replaced by the bitsandbytes layer holding its weights,
which are quantized when the module is moved to the device.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import warnings
from typing import Any

from engines.methods.nf4 import BnbInt8Config, Nf4Config
from engines.passes import Format, PassContext, register_pass
from engines.runtimes.base import Artifact, UnsupportedVariant

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)

_UNSUPPORTED = {"mps": "bitsandbytes has no MPS backend", "ane": "bitsandbytes runs on CPU and CUDA only"}


def _installed(config: Any) -> str | None:
    if importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed (`pip install 'qbench[bnb]'`)"
    return None


def _replace_linears(ctx: PassContext, artifact: Artifact, make) -> tuple[Any, int]:
    import torch

    module = copy.deepcopy(artifact.payload).eval()
    count = 0
    for name, layer in list(module.named_modules()):
        if type(layer) is not torch.nn.Linear:
            continue
        new = make(layer)
        new.load_state_dict(layer.state_dict())
        parent, _, child = name.rpartition(".")
        setattr(module.get_submodule(parent) if parent else module, child, new)
        count += 1
    if count == 0:
        raise UnsupportedVariant("bitsandbytes replaces Linear layers and this model has none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = module.to(ctx.device if ctx.device == "cuda" else "cpu")  # quantizes the weights
    for p in module.parameters():
        p.requires_grad_(False)
    return module, count


def _convs_note(module) -> list[str]:
    import torch

    convs = sum(1 for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    return [f"{convs} Conv2d layers stay float (bitsandbytes quantizes Linear)"] if convs else []


@register_pass("bnb-nf4", config=Nf4Config, input=Format.TORCH, output=Format.TORCH, runtimes=("torch",),
               unsupported=_UNSUPPORTED, check=_installed)
def bnb_nf4(ctx: PassContext, artifact: Artifact, config: Nf4Config) -> Artifact:
    """bitsandbytes Linear4bit (NF4) for every Linear layer."""
    import bitsandbytes as bnb
    import torch

    from engines.passes.torch_passes import save_module

    dtype = getattr(torch, config.compute_dtype.value)

    def make(layer):
        new = bnb.nn.Linear4bit(layer.in_features, layer.out_features, bias=layer.bias is not None,
                                compute_dtype=dtype, compress_statistics=config.double_quant, quant_type="nf4",
                                quant_storage=torch.uint8)
        new.weight.blocksize = config.block_size
        return new

    module, count = _replace_linears(ctx, artifact, make)
    notes = [f"bitsandbytes {bnb.__version__} NF4 on {count} Linear layers (block {config.block_size}"
             + (", double quantization" if config.double_quant else "") + f", compute {config.compute_dtype.value})"]
    return save_module(module, ctx, "nf4", notes + _convs_note(module))


@register_pass("bnb-int8", config=BnbInt8Config, input=Format.TORCH, output=Format.TORCH, runtimes=("torch",),
               unsupported=_UNSUPPORTED, check=_installed)
def bnb_int8(ctx: PassContext, artifact: Artifact, config: BnbInt8Config) -> Artifact:
    """bitsandbytes Linear8bitLt (LLM.int8()) for every Linear layer."""
    import bitsandbytes as bnb

    from engines.passes.torch_passes import save_module

    def make(layer):
        return bnb.nn.Linear8bitLt(layer.in_features, layer.out_features, bias=layer.bias is not None,
                                   has_fp16_weights=False, threshold=config.threshold)

    module, count = _replace_linears(ctx, artifact, make)
    notes = [f"bitsandbytes {bnb.__version__} LLM.int8() on {count} Linear layers (threshold {config.threshold:g})"]
    return save_module(module, ctx, "bnb-int8", notes + _convs_note(module))
