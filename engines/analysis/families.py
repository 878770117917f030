"""Architecture families and the recipes a standardized sweep tries on each.

``model_family`` reads a model's family from its light metadata (no torch): the ``family``
attribute when the model spec carries one, else what its task, name and description say. The
candidate recipes per family are data (:data:`FAMILY_RECIPES`), ordered by how likely each is to
pay off on that family; methods the catalog gains later are appended after them, and the runtimes
and devices come from the catalog and detection, so a new method, runtime or device needs no change
here. Plain Python: the CLI, the app and reports use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FAMILIES = ("mlp", "cnn", "encoder", "decoder", "vision-transformer", "generic")

# Per family: recipes in order of priority (fp32 first: every speed-up is taken against it) and why
# each is on the list. A device's own strategy for a method (engines.devices.strategies: e.g.
# ``dynamic-int8:reduce_range=true`` on x86 without VNNI) replaces the plain method name.
FAMILY_RECIPES: dict[str, list[tuple[str, str]]] = {
    "mlp": [("fp32", "the reference"),
            ("dynamic-int8", "linear layers: int8 GEMMs with activation scales found at run time"),
            ("weight-int8", "weight-only int8: a quarter of the bytes, float compute"),
            ("int4", "4-bit blocks: an eighth of the bytes"),
            ("static-int8", "calibrated int8 activations"),
            ("fp16", "half-precision baseline")],
    "cnn": [("fp32", "the reference"),
            ("static-int8", "convolutions gain from calibrated int8 (dynamic int8 leaves convs in float)"),
            ("dynamic-int8", "only the linear layers become int8"),
            ("fp16", "half-precision baseline"),
            ("weight-int8", "weight-only int8: smaller file"),
            ("int4", "4-bit blocks on the linear layers")],
    "encoder": [("fp32", "the reference"),
                ("dynamic-int8", "attention and FFN matmuls in int8: encoders at useful sequence lengths are "
                                 "compute-bound"),
                ("fuse+dynamic-int8", "ONNX Runtime's fused Attention/LayerNorm/Gelu operators, then dynamic "
                                      "int8 (QAttention): fewer, larger kernels"),
                ("static-int8", "calibrated int8 activations (QDQ)"),
                ("int4", "4-bit weights: smaller, but the matmuls stay in float-or-int8 compute"),
                ("fp16", "half-precision baseline"),
                ("weight-int8", "weight-only int8")],
    "decoder": [("fp32", "the reference"),
                ("int4", "decoding is memory-bound: 4-bit weights cut the bytes read per token"),
                ("weight-int8", "8-bit weights: half the saving of int4 at less error"),
                ("dynamic-int8", "int8 GEMMs for the prefill"),
                ("fp16", "half-precision baseline"),
                ("static-int8", "calibrated int8 activations")],
    "vision-transformer": [("fp32", "the reference"),
                           ("dynamic-int8", "patch-token matmuls in int8 (compute-bound like encoders)"),
                           ("static-int8", "calibrated int8 activations, convolutional stem included"),
                           ("fp16", "half-precision baseline"),
                           ("int4", "4-bit weights")],
    "generic": [("fp32", "the reference"), ("dynamic-int8", "int8 linear layers"),
                ("static-int8", "calibrated int8"), ("int4", "4-bit weights"), ("fp16", "half precision")],
}

# Runtimes in order of preference for a standardized sweep; runtimes the catalog lists beyond these
# follow in the catalog's order.
RUNTIME_PREFERENCE = ("onnxruntime", "torch")

# Tokens per row of a text model when its run did not say (qbench's default sequence length).
DEFAULT_SEQ_LEN = 128


def model_family(spec: Any) -> str:
    """The architecture family of a model spec (an object with ``name``/``task``/``description``/
    ``extra``, or its dict). Reads ``family`` when the spec carries it (the attribute the model zoo
    is getting); otherwise derives it, so this is the one place to point at that attribute."""
    get = spec.get if isinstance(spec, dict) else (lambda key, default=None: getattr(spec, key, default))
    family = get("family") or (get("extra") or {}).get("family")
    if family:
        return str(family)
    name = str(get("name") or "").lower()
    task = str(get("task") or "")
    text = f"{name} {get('description') or ''}".lower()
    if task == "causal-lm":
        return "decoder"
    if task in ("embedding",) or "bert" in text or "encoder" in text:
        return "encoder"
    if task.startswith("image") or any(w in text for w in ("vit", "deit", "efficientnet", "resnet", "mobilenet",
                                                           "convnext", "image")):
        return "vision-transformer" if any(w in text for w in ("vit", "deit", "swin", "vision-transformer")) else "cnn"
    if "cnn" in text or "conv" in text:
        return "cnn"
    if "mlp" in text:
        return "mlp"
    return "generic"


@dataclass(frozen=True)
class Candidate:
    """One variant a standardized sweep may measure, and why it is on the list."""

    spec: str  # recipe spec
    runtime: str
    device: str
    why: str
    rank: float  # lower runs first under a budget


def family_recipes(family: str, devices: list[str]) -> list[tuple[str, str]]:
    """The family's recipes (device strategies swapped in), then catalog methods no table names."""
    from engines import catalog
    from engines.devices import detect_devices
    from engines.devices.strategies import device_strategies

    table = FAMILY_RECIPES.get(family, FAMILY_RECIPES["generic"])
    infos = {d.name: d for d in detect_devices()}
    tuned: dict[str, tuple[str, str]] = {}
    for device in devices:
        if device in infos:
            for s in device_strategies(infos[device]):
                base = s.spec.split(":")[0]
                if ":" in s.spec and base not in tuned:
                    tuned[base] = (s.spec, s.why)
    out: list[tuple[str, str]] = []
    for spec, why in table:
        if spec in tuned:
            spec, why = tuned[spec][0], f"{why}; {tuned[spec][1]}"
        out.append((spec, why))
    named = {s.split(":")[0] for rows in FAMILY_RECIPES.values() for s, _ in rows}
    out += [(m, "a method the family table does not rank yet (from the catalog)")
            for m in catalog.METHODS if m not in named]
    return out


def candidates(family: str, devices: list[str], runtimes: list[str] | None = None,
               source_format: Any = None) -> tuple[list[Candidate], list[dict[str, str]]]:
    """(the runnable candidates in order of priority, the refused combinations with their reason).

    Order: fp32 on the preferred runtime first, then its family's recipes, the next runtime's
    fp32 and recipes interleaved two steps behind (a speed-up needs fp32 on the same runtime)."""
    from engines import catalog
    from engines.core.formats import Format
    from engines.devices.strategies import cpu_left_out
    from engines.methods.recipe import parse_recipe

    source = source_format or Format.TORCH
    names = list(runtimes or catalog.RUNTIMES)
    order = [r for r in RUNTIME_PREFERENCE if r in names] + [r for r in names if r not in RUNTIME_PREFERENCE]
    recipes = family_recipes(family, devices)
    out: list[Candidate] = []
    refused: list[dict[str, str]] = []
    for d_rank, device in enumerate(devices):
        for r_rank, runtime in enumerate(order):
            for k, (spec, why) in enumerate(recipes):
                reason = catalog.unsupported_reason(parse_recipe(spec), runtime, device, source)
                if not reason and (slow := cpu_left_out(spec, runtime, device)):
                    reason = f"left out on this CPU (slower than fp32 here): {slow}"
                if reason:
                    refused.append({"spec": spec, "runtime": runtime, "device": device, "reason": reason})
                    continue
                out.append(Candidate(spec, runtime, device, why, rank=k + 2 * r_rank + 3 * d_rank))
    out.sort(key=lambda c: c.rank)
    # A recipe whose runtime·device has no fp32 cannot give a speed-up: fp32 goes before it.
    return out, refused


def model_facts(model: str, request: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the analysis needs to know of a model beyond its results: family, task, parameters,
    tokens per row. Light (no torch); a model no longer found gets what its name says."""
    from engines.models import list_models

    spec = next((m for m in list_models(scan_cache=False) if m.name == model), None)
    if spec is None:
        try:
            from engines.models import resolve_model

            spec = resolve_model(model)
        except (ValueError, OSError):
            spec = None
    task = getattr(spec, "task", None) or "generic"
    options = (request or {}).get("model_options") or {}
    tokens = int(options.get("seq_len") or DEFAULT_SEQ_LEN) if task in ("embedding", "causal-lm") else 1
    return {"model": model, "family": model_family(spec) if spec else model_family({"name": model}),
            "task": task, "params": getattr(spec, "params", None), "tokens": tokens}
