"""TFLite files through ai-edge-litert: the deploy template's own runner (so validating the file
also checks the runner a user gets), one thread."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engines.runtimes.base import Session


def template_module(name: str):
    """A deploy template from engines/export/templates/files, imported as a module."""
    from engines.export.templates import FILES

    spec = importlib.util.spec_from_file_location(f"qbench_template_{name}", FILES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TfliteSession(Session):
    def __init__(self, path: Path):
        import ai_edge_litert

        self.runner = template_module("run_tflite").TfliteRunner(path, threads=1)
        self.info = {"ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"), "threads": 1}

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.runner.run(inputs)

    def bind(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        return lambda: self.runner.run(inputs)


def open_file(path: Path, model) -> Session:
    return TfliteSession(path)
