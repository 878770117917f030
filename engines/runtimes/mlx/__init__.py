"""MLX (Apple's array framework): Metal on Apple Silicon (device ``gpu``), its CPU build elsewhere.

On Linux the ``mlx[cpu]`` wheel runs on the CPU with a reference BLAS: numbers are correct,
speeds are not representative of a Mac (see docs/apple-silicon.md).

Model families (engines.runtimes.mlx.convert ``to_mlx``): Sequential MLP/CNN stacks, the tiny-lm
decoder, BERT sentence encoders (``bert``) and Hugging Face causal LMs that mlx-lm implements
(``lm``, which also gives the session its KV-cache decoder).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engines.core.config import help_text
from engines.core.formats import Format
from engines.runtimes import RuntimeConfig, RuntimeSpec


@dataclass(frozen=True)
class MlxRuntimeConfig(RuntimeConfig):
    compile: bool = field(
        default=False,
        metadata=help_text("Trace the forward pass once with mx.compile (fuses element-wise work; first call slower)."),
    )


SPEC = RuntimeSpec(
    name="mlx", title="MLX", formats=(Format.MLX,), devices=("cpu", "gpu"), package="mlx",
    session="engines.runtimes.mlx.session", config_class=MlxRuntimeConfig, extra="mlx",
    order=30,
)
