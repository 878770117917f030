"""Quantization-aware training: fake-quantized fine-tuning on the model's training data, then a real
quantized model (torchao QAT on torch; MatMulNBits nodes for ONNX Runtime)."""

from __future__ import annotations

from dataclasses import dataclass, field

from engines.methods.configs import MethodConfig, check_block, help_text
from engines.methods.registry import Compute, register_method

WEIGHT_BITS = (2, 3, 4, 8)


@dataclass(frozen=True)
class QatConfigBase(MethodConfig):
    """Shared fields of the QAT methods: the schedule and the bit widths being trained for."""

    epochs: int = field(default=3, metadata=help_text("Passes over the training data with fake quantization "
                                                      "(0: no training, the same layers quantized post-training).",
                                                      short="e{}"))
    learning_rate: float = field(default=1e-4, metadata=help_text("Adam learning rate of the fine-tuning.",
                                                                  short="lr{}"))
    batch_size: int = field(default=64, metadata=help_text("Training rows per optimiser step.", short="bs{}"))
    max_steps_per_epoch: int = field(default=100, metadata=help_text(
        "Cap on optimiser steps per epoch (keeps fine-tuning short on large data sets).", short="s{}"))
    weight_bits: int = 8
    activation_bits: int = 8
    group_size: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.epochs <= 100:
            raise ValueError("epochs must be between 0 and 100")
        if not 0 < self.learning_rate < 1:
            raise ValueError("learning_rate must be in (0, 1)")
        if not 1 <= self.batch_size <= 4096:
            raise ValueError("batch_size must be between 1 and 4096")
        if self.max_steps_per_epoch < 1:
            raise ValueError("max_steps_per_epoch must be at least 1")
        if self.weight_bits not in WEIGHT_BITS:
            raise ValueError(f"weight_bits must be one of {', '.join(map(str, WEIGHT_BITS))}")
        if self.activation_bits not in (0, 8):
            raise ValueError("activation_bits must be 8 (int8 activations, dynamic per token) or 0 (float)")
        if self.group_size:
            check_block(self.group_size, "group_size")


@register_method("qat-int8", compute=Compute.INT, fallbacks=("static-int8", "dynamic-int8"),
                 title="QAT int8 (W8A8 dynamic)", bits=8, needs_training_data=True, order=30,
                 description="Fine-tune with fake-quantized int8 weights and activations (torchao QAT), then "
                             "convert: torchao int8 on torch, a QDQ graph on ONNX Runtime.")
@dataclass(frozen=True)
class QatInt8Config(QatConfigBase):
    """QAT for int8 weights (one scale per output channel) and int8 dynamic activations."""

    weight_bits: int = field(default=8, metadata=help_text("Weight bits trained for: 2, 3, 4 or 8.", short="w{}"))
    activation_bits: int = field(default=8, metadata=help_text(
        "Activation bits: 8 (dynamic, per token; torch) or 0 (float activations).", short="a{}"))
    group_size: int = field(default=0, metadata=help_text("Weights per scale; 0: one scale per output channel.",
                                                          short="g{}"))


@register_method("qat-int4", compute=Compute.WEIGHT_ONLY, fallbacks=("int4", "weight-int8"),
                 title="QAT int4 (weights)", bits=4, needs_training_data=True, order=31,
                 description="Fine-tune with fake-quantized block-wise int4 weights (torchao QAT), then convert: "
                             "torchao Intx on torch, blocked int4 QDQ (MatMulNBits) on ONNX Runtime.")
@dataclass(frozen=True)
class QatInt4Config(QatConfigBase):
    """QAT for block-wise int4 weights; activations float by default (8: int8 dynamic on torch)."""

    weight_bits: int = field(default=4, metadata=help_text("Weight bits trained for: 2, 3, 4 or 8.", short="w{}"))
    activation_bits: int = field(default=0, metadata=help_text(
        "Activation bits: 0 (float) or 8 (dynamic, per token; torch).", short="a{}"))
    group_size: int = field(default=32, metadata=help_text("Weights sharing one scale: 16 to 256.", short="g{}"))
