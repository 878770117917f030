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
        metadata=help_text("Lower the module with torch.compile (inductor; slow first call, needs a C++ "
                           "compiler). PT2E static int8 is always lowered, unless simulate_int8."),
    )
    simulate_int8: bool = field(
        default=False,
        metadata=help_text("Run PT2E static int8 as its eager quantize/dequantize graph: float kernels "
                           "that simulate int8 (slow; flagged 'simulated'), instead of inductor's int8 kernels."),
    )


SPEC = RuntimeSpec(
    name="torch", title="PyTorch (eager, torchao)", formats=(Format.TORCH,), devices=("cpu", "cuda", "mps"),
    package="torch", session="engines.runtimes.pytorch.session", config_class=TorchRuntimeConfig, order=10,
)
