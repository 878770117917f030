"""MLX files through the deploy template's own runner (model.json + safetensors), on the CPU."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engines.export.sessions.tflite import template_module
from engines.runtimes.base import Session


class MlxFileSession(Session):
    def __init__(self, path: Path):
        import mlx.core as mx

        mx.set_default_device(mx.cpu)  # the validation compares numbers; Metal timing is the sweep's job
        self._mx = mx
        self.runner = template_module("run_mlx").MlxRunner(path)
        self.info = {"mlx": mx.__version__, "device": "cpu", "metal": mx.metal.is_available()}

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.runner.run(inputs)

    def bind(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        return lambda: self.runner.run(inputs)


def open_file(path: Path, model) -> Session:
    return MlxFileSession(path)
