"""PyTorch, eager (optionally ``torch.compile``), on the CPU, CUDA or Apple's MPS."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from engines.core.config import help_text
from engines.core.formats import Format
from engines.runtimes import RuntimeConfig, RuntimeSpec


class TorchDynamicBackend(str, enum.Enum):
    """Which PyTorch library applies dynamic int8 (and so whose kernels run it)."""

    TORCH_AO = "torch.ao"  # quantize_dynamic: fbgemm/qnnpack kernels, fast in eager mode
    TORCHAO = "torchao"  # Int8DynamicActivationInt8Weight: built for torch.compile


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
    dynamic_int8: TorchDynamicBackend = field(
        default=TorchDynamicBackend.TORCH_AO,
        metadata=help_text("Library and kernels of dynamic-int8: torch.ao quantize_dynamic (fast eager "
                           "kernels; deprecated upstream) or torchao (eager path is slow on CPU; meant for "
                           "compile).", short="dyn-{}"),
    )


SPEC = RuntimeSpec(
    name="torch", title="PyTorch (eager, torchao)", formats=(Format.TORCH,), devices=("cpu", "cuda", "mps"),
    package="torch", session="engines.runtimes.pytorch.session", config_class=TorchRuntimeConfig, order=10,
)
