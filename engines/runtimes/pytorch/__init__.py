"""PyTorch, eager (optionally ``torch.compile``), on the CPU, CUDA or Apple's MPS."""

from __future__ import annotations

from dataclasses import dataclass, field

from engines.core.config import help_text
from engines.passes import Format
from engines.runtimes import RuntimeConfig, RuntimeSpec


@dataclass(frozen=True)
class TorchRuntimeConfig(RuntimeConfig):
    compile: bool = field(
        default=False,
        metadata=help_text("Lower the module with torch.compile (inductor; real int8 kernels for PT2E "
                           "static int8; slow first call, needs a C++ compiler)."),
    )


SPEC = RuntimeSpec(
    name="torch", title="PyTorch (eager, torchao)", formats=(Format.TORCH,), devices=("cpu", "cuda", "mps"),
    package="torch", session="engines.runtimes.pytorch.session", config_class=TorchRuntimeConfig, order=10,
)
