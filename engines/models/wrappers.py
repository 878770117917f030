"""Small torch wrappers shared by the loaders (child process only: imports torch).

Every runtime calls a model's module with its inputs as positional tensors, and some tools
(``torch.export`` for PT2E static quantization) match inputs against ``forward``'s signature, so a
wrapper must declare exactly as many positional parameters as the model has inputs: a
``forward(*args)`` is seen as a single input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

MAX_INPUTS = 4


class FixedArity(torch.nn.Module):
    """Subclasses implement ``call(*tensors)``; :func:`with_arity` gives them a real signature."""

    def call(self, *args: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


_FORWARDS: dict[int, Callable[..., Any]] = {
    1: lambda self, a: self.call(a),
    2: lambda self, a, b: self.call(a, b),
    3: lambda self, a, b, c: self.call(a, b, c),
    4: lambda self, a, b, c, d: self.call(a, b, c, d),
}


def with_arity(module: FixedArity, inputs: int) -> FixedArity:
    """``module`` with a ``forward`` of exactly ``inputs`` positional parameters."""
    if inputs not in _FORWARDS:
        raise ValueError(f"models with {inputs} inputs are not supported (at most {MAX_INPUTS})")
    cls = type(f"{type(module).__name__}{inputs}", (type(module),), {"forward": _FORWARDS[inputs]})
    module.__class__ = cls
    return module


def first_tensor(out: Any) -> torch.Tensor:
    """The first tensor of a model's output (a tensor, tuple, list, dict or ModelOutput)."""
    while not isinstance(out, torch.Tensor):
        if isinstance(out, dict):
            out = next(iter(out.values()))
        elif isinstance(out, (tuple, list)) and out:
            out = out[0]
        else:
            raise TypeError(f"the model returned {type(out).__name__}, not a tensor")
    return out
