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
        if new is None:  # the maker keeps this layer as it is
            continue
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


# bitsandbytes 0.50's CPU dequantize kernel blocks each row on its own while its quantizer blocks
# the flattened weight: for rows that are not a whole number of blocks (tiny-lm's 96-wide layers
# with blocks of 64) they disagree, and the weights come back ~0.3 off in relative norm instead of
# ~0.09 (tiny-lm's KL to fp32 0.25 instead of 0.003). Each layer's round trip through the real
# kernels is therefore checked against NF4 computed here, and a smaller block is used where it fails.
NF4_FALLBACK_BLOCKS = (64, 32)
NF4_TOLERANCE = 1.25  # the kernels' round-trip error may exceed the reference by this factor


def nf4_reference_error(weight: Any, block: int) -> float:
    """Relative error of NF4 round to nearest over blocks of the flattened weight (QLoRA's format)."""
    import bitsandbytes.functional as F
    import torch

    code = F.get_4bit_type("nf4", device="cpu")
    flat = weight.detach().float().reshape(-1)
    pad = (-flat.numel()) % block
    blocks = torch.nn.functional.pad(flat, (0, pad)).reshape(-1, block)
    absmax = blocks.abs().amax(1, keepdim=True).clamp(min=1e-38)
    nearest = ((blocks / absmax).unsqueeze(-1) - code).abs().argmin(-1)
    back = (code[nearest] * absmax).reshape(-1)[: flat.numel()]
    return float((back - flat).norm() / flat.norm().clamp(min=1e-38))


def nf4_kernel_error(weight: Any, block: int) -> float:
    """Relative error of the same weight through bitsandbytes' own quantize and dequantize kernels."""
    import bitsandbytes.functional as F

    w = weight.detach().float().contiguous()
    packed, state = F.quantize_4bit(w, blocksize=block, quant_type="nf4")
    back = F.dequantize_4bit(packed, state).float()
    return float((back - w).norm() / w.norm().clamp(min=1e-38))


def nf4_block_for(weight: Any, preferred: int) -> int | None:
    """The largest block, from the configured one down, that bitsandbytes round-trips faithfully
    for this weight on the CPU; None when none does (the layer then stays float)."""
    for block in sorted({preferred, *(b for b in NF4_FALLBACK_BLOCKS if b < preferred)}, reverse=True):
        if nf4_kernel_error(weight, block) <= NF4_TOLERANCE * nf4_reference_error(weight, block) + 1e-6:
            return block
    return None


@register_pass("bnb-nf4", config=Nf4Config, input=Format.TORCH, output=Format.TORCH, runtimes=("torch",),
               unsupported=_UNSUPPORTED, check=_installed)
def bnb_nf4(ctx: PassContext, artifact: Artifact, config: Nf4Config) -> Artifact:
    """bitsandbytes Linear4bit (NF4) for every Linear layer."""
    import bitsandbytes as bnb
    import torch

    from engines.passes.torch_passes import save_module

    dtype = getattr(torch, config.compute_dtype.value)
    smaller: list[int] = []
    kept: list[int] = []

    def make(layer):
        # CUDA's kernels block the flattened weight on both sides; only the CPU's need checking.
        block = config.block_size if ctx.device == "cuda" else nf4_block_for(layer.weight, config.block_size)
        if block is None:
            kept.append(layer.in_features)
            return None
        if block != config.block_size:
            smaller.append(layer.in_features)
        new = bnb.nn.Linear4bit(layer.in_features, layer.out_features, bias=layer.bias is not None,
                                compute_dtype=dtype, compress_statistics=config.double_quant, quant_type="nf4",
                                quant_storage=torch.uint8)
        new.weight.blocksize = block
        return new

    module, count = _replace_linears(ctx, artifact, make)
    notes = [f"bitsandbytes {bnb.__version__} NF4 on {count} Linear layers (block {config.block_size}"
             + (", double quantization" if config.double_quant else "") + f", compute {config.compute_dtype.value})"]
    if smaller:
        notes.append(f"{len(smaller)} Linear layers with smaller blocks (input widths {sorted(set(smaller))}: "
                     f"bitsandbytes' CPU kernels do not round-trip blocks of {config.block_size} there)")
    if kept:
        notes.append(f"{len(kept)} Linear layers stay float (no NF4 block round-trips on bitsandbytes' CPU kernels)")
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
