"""MLX safetensors: the MLX module's weights and ``model.json``, validated by the deploy runner."""

from __future__ import annotations

from engines.export.targets.base import ExportTarget

SPEC = ExportTarget(
    name="mlx", title="MLX safetensors", filename="model.safetensors", runtime="mlx", packages=("mlx",), extra="mlx",
    validates_with="MLX", module="engines.export.targets.mlx.target", order=40,
    quick_start=("pip install -r deploy/python/requirements.txt   # or: uv sync --extra mlx\n"
                 "python deploy/python/run_mlx.py                 # runs deploy/example_request.json"),
)
