"""The model zoo: built-in models and models found on disk, listed without importing torch."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """Light metadata of a model; ``loader`` ("module:function") builds it in a child process."""

    name: str
    task: str
    source: str  # "built-in", "file", "hf-dir", "hf-cache"
    description: str
    loader: str
    params: int | None = None
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


BUILTIN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "digits-mlp", "classification", "built-in",
            "MLP 64→1024→1024→10 trained on scikit-learn digits (seeded, cached)",
            "engines.models.digits:load", params=1_127_434,
        ),
        ModelSpec(
            "digits-cnn", "classification", "built-in",
            "3-layer CNN on 8×8 scikit-learn digits (seeded, cached)",
            "engines.models.digits:load", params=65_994,
        ),
    )
}


def list_models() -> list[ModelSpec]:
    """Built-in models, then models discovered on disk."""
    return list(BUILTIN_MODELS.values())


def model_names() -> list[str]:
    return [spec.name for spec in list_models()]


class ModelNotFound(ValueError):
    pass


def resolve_model(name_or_path: str) -> ModelSpec:
    """A catalog name, or a path to a model file or directory."""
    for spec in list_models():
        if spec.name == name_or_path:
            return spec
    path = Path(name_or_path).expanduser()
    if path.exists():
        from engines.models.files import spec_for_path

        return spec_for_path(path)
    raise ModelNotFound(
        f"unknown model {name_or_path!r}: not a built-in name and no such file. "
        f"Known models: {', '.join(model_names())}"
    )


def load_model(spec: ModelSpec):
    """Import the loader and build the model (child process only: imports torch)."""
    module_name, func_name = spec.loader.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return func(spec.path or spec.name) if spec.path else func(spec.name)
