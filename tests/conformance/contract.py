"""The contract every registered pass and runtime keeps, on a small real model (digits-mlp).

A runtime: each method it can run on the CPU quantizes, opens, runs the held-out set and agrees
with the float reference; a method it cannot run has a reason; devices it lacks or this machine
lacks have a reason. A pass: a recipe that needs it is planned through it, and the artifact it
produces opens and runs on the runtime that plans it. New plugins are checked by calling
:func:`check_runtime` / :func:`check_pass` (the suite parametrizes over the registries).
"""

from __future__ import annotations

import dataclasses
import enum
import tempfile
from functools import cache
from pathlib import Path

import numpy as np

from engines import catalog
from engines.bench.worker import open_recipe, reference_outputs, run_outputs
from engines.devices import detect_devices
from engines.methods.recipe import Recipe
from engines.models import load_model, resolve_model
from engines.passes import Plan, all_passes
from engines.runtimes.base import UnsupportedVariant

MODEL = "digits-mlp"
# Known gaps, each with its reason; the contract checks everything else about these variants.
SIZE_GAPS: dict[tuple[str, str], str] = {}


@cache
def small_model():
    model = load_model(resolve_model(MODEL))
    return model, reference_outputs(model, Path(tempfile.mkdtemp()))


def run_recipe(recipe: Recipe | str, runtime: str) -> dict:
    """Quantize, open and run one variant in this process; its agreement and size."""
    model, reference = small_model()
    workdir = Path(tempfile.mkdtemp(prefix="qbench-contract-"))
    artifact, session = open_recipe(model, recipe if isinstance(recipe, str) else recipe.spec_text, runtime, "cpu",
                                    1, workdir)
    outputs = run_outputs(session, model.eval_inputs)
    timed = session.bind(model.example_inputs(4))
    timed()  # the timed callable runs on pre-converted inputs
    assert outputs.shape == reference.shape, (outputs.shape, reference.shape)
    assert np.isfinite(outputs).all()
    top1 = float(np.mean(outputs.argmax(-1) == reference.argmax(-1)))
    return {"top1": top1, "size_mb": artifact.size_bytes / 2**20, "artifact": artifact}


def check_runtime(name: str) -> dict[str, dict]:
    """Every method on this runtime's CPU backend: runs and agrees, or is refused with a reason."""
    spec = catalog.RUNTIMES[name]
    present = {d.name for d in detect_devices() if d.present}
    for device in ("cpu", "cuda", "mps", "ane"):
        if device not in spec.devices or device not in present:
            reason = catalog.unsupported_reason("fp32", name, device)
            assert reason and isinstance(reason, str), (name, device)
    figures: dict[str, dict] = {}
    for method, method_spec in catalog.METHODS.items():
        planned = catalog.plan_variant(method, name, "cpu")
        if not isinstance(planned, Plan):
            assert planned.strip(), f"{method} on {name}: refused without a reason"
            continue
        try:
            figures[method] = run_recipe(method, name)
        except UnsupportedVariant as exc:  # found out only when applied (e.g. a model without Linear)
            assert str(exc).strip()
            if method == "fp32":  # the runtime cannot run on this machine at all (Core ML off macOS)
                return figures
            continue
        # digits-mlp keeps its answers under every method down to 4 bits
        assert figures[method]["top1"] >= 0.95, (method, name, figures[method]["top1"])
    assert "fp32" in figures, f"{name} cannot run the float reference"
    fp32_size = figures["fp32"]["size_mb"]
    for method, fig in figures.items():
        bits = catalog.METHODS[method].bits
        if bits <= 8 and (method, name) not in SIZE_GAPS:  # integer weights: at most ~half of fp32's bytes
            assert fig["size_mb"] <= 0.6 * fp32_size, (method, name, fig["size_mb"], fp32_size)
    return figures


def example_recipe(pass_name: str) -> Recipe | None:
    """A recipe whose plan goes through ``pass_name`` (the default config, or one enum choice away)."""
    spec = all_passes()[pass_name]
    if spec.config_class is None:
        return Recipe((catalog.METHODS["fp32"].config_class(),))
    config = spec.config_class()
    candidates = [config]
    for field in dataclasses.fields(config):
        if isinstance(field.default, enum.Enum):
            candidates += [dataclasses.replace(config, **{field.name: choice}) for choice in type(field.default)]
    for candidate in candidates:
        if spec.selects is None or spec.selects(candidate):
            return Recipe((candidate,))
    return None


def check_pass(pass_name: str) -> None:
    """Some runtime plans the pass for its example recipe, and the result runs and agrees."""
    recipe = example_recipe(pass_name)
    assert recipe is not None, f"no config of {pass_name}'s type selects it"
    spec = all_passes()[pass_name]
    if spec.runtimes and not any(r in catalog.RUNTIMES for r in spec.runtimes):
        import pytest

        pytest.skip(f"{pass_name} serves {', '.join(spec.runtimes)}, an export target rather than a sweep runtime "
                    "(tests/test_export.py converts and validates it)")
    if spec.runtimes and not any(catalog.RUNTIMES[r].installed() for r in spec.runtimes if r in catalog.RUNTIMES):
        import pytest

        pytest.skip(f"{pass_name} serves {', '.join(spec.runtimes)}, not installed here")
    for runtime in catalog.RUNTIMES:
        planned = catalog.plan_variant(recipe, runtime, "cpu")
        if isinstance(planned, Plan) and pass_name in planned.names:
            try:
                figures = run_recipe(recipe, runtime)
            except UnsupportedVariant as exc:  # the pass ran; this machine cannot run its output
                assert str(exc).strip()
                return
            assert figures["top1"] >= 0.95, (pass_name, runtime, figures["top1"])
            assert figures["artifact"].format == all_passes()[pass_name].output.value or pass_name != planned.names[-1]
            return
    raise AssertionError(f"no runtime's plan uses {pass_name} for {recipe.label}")
