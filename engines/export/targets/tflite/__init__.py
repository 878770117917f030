"""TensorFlow Lite (LiteRT): litert-torch converts the torch module, ai-edge-litert validates the file.

LiteRT is not a benchmarked runtime: the target brings its own planning runtime for the passes."""

from __future__ import annotations

from engines.export.targets.base import ExportTarget


def planning_runtime():
    """LiteRT as a planning target (not a registered, benchmarked runtime: it exists for export)."""
    from engines.core.formats import Format
    from engines.runtimes import RuntimeSpec

    return RuntimeSpec(name="litert", title="LiteRT (TFLite)", formats=(Format.TFLITE,), devices=("cpu",),
                       package="ai_edge_litert", session="", extra="tflite")


SPEC = ExportTarget(
    name="tflite", title="TensorFlow Lite (LiteRT)", filename="model.tflite", runtime="litert",
    packages=("litert_torch", "ai_edge_litert"), extra="tflite", validates_with="ai-edge-litert",
    module="engines.export.targets.tflite.target", planning_runtime=planning_runtime, order=20,
    quick_start=("pip install -r deploy/python/requirements.txt   # or: uv sync --extra tflite\n"
                 "python deploy/python/run_tflite.py              # runs deploy/example_request.json"),
)
