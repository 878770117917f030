"""What the model catalog needs to know about vision models, without importing numpy or torch:
the family of a Hugging Face image classifier, and specs for ``torchvision:NAME``."""

from __future__ import annotations

from typing import Any

from engines.models import ModelSpec

# model_type values of HF image classifiers that are transformers (the rest are CNNs).
VIT_TYPES = {"vit", "deit", "beit", "swin", "swinv2", "dinov2", "dinov2_with_registers", "data2vec-vision",
             "vit_hybrid", "vit_msn", "levit", "pvt", "pvt_v2", "cvt", "mobilevit", "mobilevitv2",
             "efficientformer", "focalnet", "segformer", "hiera", "ijepa", "siglip_vision_model"}


TORCHVISION_PREFIX = "torchvision:"


def torchvision_spec(name: str) -> ModelSpec:
    """``torchvision:resnet18`` → a spec; the architecture name is checked without importing torch
    where possible (torchvision's registry is consulted in the child)."""
    arch = name[len(TORCHVISION_PREFIX):]
    if not arch or not arch.replace("_", "").isalnum():
        raise ValueError(f"{name!r}: name a torchvision classification architecture, e.g. torchvision:resnet18")
    family = "vision-transformer" if arch.startswith(("vit_", "swin", "maxvit")) else "cnn"
    return ModelSpec(name, "classification", "torchvision",
                     f"torchvision {arch} (ImageNet weights when torch's hub cache holds them, else seeded "
                     "random weights)", "engines.models.vision:load_torchvision",
                     extra={"modality": "image", "arch": arch}, family=family)


def is_image_classifier(config: dict[str, Any]) -> bool:
    return any(str(a).endswith("ForImageClassification") for a in config.get("architectures") or [])


def hf_family(config: dict[str, Any]) -> str:
    return "vision-transformer" if str(config.get("model_type", "")).lower() in VIT_TYPES else "cnn"


