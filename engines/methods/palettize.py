"""Weight palettization: each weight becomes an index into a small table of values (a look-up table).

Core ML's compressed weight format for the Neural Engine and GPU: 2^bits centroids found by
k-means, per tensor or per group of output channels; the weights are stored as ``bits``-bit indices.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from engines.methods.configs import MethodConfig, help_text
from engines.methods.registry import Compute, register_method


class PaletteGranularity(str, enum.Enum):
    PER_TENSOR = "per_tensor"  # one table per weight tensor
    PER_GROUPED_CHANNEL = "per_grouped_channel"  # one table per group of output channels


@register_method("palettize", compute=Compute.WEIGHT_ONLY, fallbacks=("int4", "weight-int8"),
                 title="palettized weights (k-means LUT)", bits=4, order=24,
                 description="Weights as 4/6/8-bit indices into a k-means look-up table (Core ML "
                             "palettize_weights): the Neural Engine's compressed format.")
@dataclass(frozen=True)
class PalettizeConfig(MethodConfig):
    """k-means palettization of weights (Core ML)."""

    nbits: int = field(default=4, metadata=help_text("Bits per index: 2^nbits table entries (2, 3, 4, 6 or 8).",
                                                     short="{}bit"))
    granularity: PaletteGranularity = field(default=PaletteGranularity.PER_GROUPED_CHANNEL,
                                            metadata=help_text("One table per tensor or per group of channels."))
    group_size: int = field(default=16, metadata=help_text("Output channels sharing a table (per_grouped_channel).",
                                                           short="g{}"))

    def __post_init__(self) -> None:
        if self.nbits not in (1, 2, 3, 4, 6, 8):
            raise ValueError("nbits must be 1, 2, 3, 4, 6 or 8")
        if self.group_size < 1:
            raise ValueError("group_size must be positive")
