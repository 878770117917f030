"""What an artifact is: the currency passes exchange and runtimes open.

It sits below both: a runtime declares the formats it opens and a pass the format it takes and
gives, and neither needs the other's package for that.
"""

from __future__ import annotations

import enum


class Format(str, enum.Enum):
    """An artifact's kind, as stored (its value) and as shown (its title)."""

    TORCH = "torch"  # an nn.Module in memory (its state dict on disk, for the size)
    ONNX = "onnx"
    COREML = "coreml"
    TFLITE = "tflite"
    MLX = "mlx"
    GGUF = "gguf"

    @property
    def title(self) -> str:
        return {"torch": "PyTorch module", "onnx": "ONNX graph", "coreml": "Core ML package",
                "tflite": "TFLite flatbuffer", "mlx": "MLX module",
                "gguf": "GGUF file"}[self.value]
