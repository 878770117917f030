"""The contract every registered pass and runtime keeps, on a small real model (digits-mlp).

A runtime: each method it can run on the CPU quantizes, opens, runs the held-out set and agrees
with the float reference; a method it cannot run has a reason; devices it lacks or this machine
lacks have a reason; where this machine refuses to open what the passes built (Core ML off macOS),
the artifact itself is checked (format, bytes, the program's spec and op counts). A pass: a recipe that needs it is planned through it, and the artifact it
produces opens and runs on the runtime that plans it. New plugins are checked by calling
:func:`check_runtime` / :func:`check_pass` (the suite parametrizes over the registries).
"""

from __future__ import annotations

import importlib
import tempfile
from functools import cache
from pathlib import Path

import numpy as np

from engines import catalog
from engines.bench.worker import _context, add_kv_graph, apply_passes, reference_outputs, run_outputs
from engines.devices import detect_devices
from engines.methods.recipe import Recipe, parse_recipe
from engines.models import load_model, resolve_model
from engines.passes import Plan, all_passes
from engines.runtimes import runtime_spec
from engines.runtimes.base import UnsupportedVariant

MODEL = "digits-mlp"
# The built-in model the contract runs for a runtime that takes only some tasks (RuntimeSpec.tasks).
MODEL_FOR_TASK = {"causal-lm": "tiny-lm"}
# Known gaps, each with its reason; the contract checks everything else about these variants.
SIZE_GAPS: dict[tuple[str, str], str] = {}


def model_for(runtime: str) -> str:
    """digits-mlp, or a built-in model of a task the runtime runs when it runs only some."""
    tasks = runtime_spec(runtime).tasks
    return MODEL if tasks is None else MODEL_FOR_TASK[tasks[0]]


@cache
def small_model(name: str = MODEL):
    model = load_model(resolve_model(name))
    return model, reference_outputs(model, Path(tempfile.mkdtemp()))


def run_recipe(recipe: Recipe | str, runtime: str, device: str = "cpu") -> dict:
    """Quantize, open and run one variant in this process; its agreement and size. Where the runtime
    refuses to open the artifact on this machine (Core ML off macOS), ``refused`` says why, ``top1`` is
    None and the artifact has been checked instead (:func:`check_artifact`)."""
    model, reference = small_model(model_for(runtime))
    workdir = Path(tempfile.mkdtemp(prefix="qbench-contract-"))
    recipe = parse_recipe(recipe) if isinstance(recipe, str) else recipe
    planned = catalog.plan_variant(recipe, runtime, device)
    if isinstance(planned, str):
        raise UnsupportedVariant(planned)
    steps = [p.to_dict() for p in planned.passes]
    ctx = _context(model, workdir, runtime, device, 1)
    artifact, _ = apply_passes(model, steps, ctx)
    add_kv_graph(model, steps, ctx, artifact)
    spec = runtime_spec(runtime)
    try:
        session = importlib.import_module(spec.session).open_session(artifact, model, device, 1, spec.config_class())
    except UnsupportedVariant as exc:  # this machine cannot run it: check what the passes built
        assert str(exc).strip(), f"{recipe.spec_text} on {runtime}: refused without a reason"
        check_artifact(artifact, runtime, planned.names)
        return {"top1": None, "size_mb": artifact.size_bytes / 2**20, "artifact": artifact, "refused": str(exc)}
    outputs = run_outputs(session, model.eval_inputs)
    timed = session.bind(model.example_inputs(4))
    timed()  # the timed callable runs on pre-converted inputs
    assert outputs.shape == reference.shape, (outputs.shape, reference.shape)
    assert np.isfinite(outputs).all()
    top1 = float(np.mean(outputs.argmax(-1) == reference.argmax(-1)))
    return {"top1": top1, "size_mb": artifact.size_bytes / 2**20, "artifact": artifact, "refused": None}


def check_artifact(artifact, runtime: str, passes: list[str]) -> None:
    """What can be checked of an artifact the runtime will not open here: it exists and has bytes,
    it is in a format the runtime opens, and (Core ML) its program is readable — an op histogram,
    a compute precision and batch shapes read from the saved spec, compressed ops after a
    compressing pass."""
    assert artifact.path.exists() and artifact.size_bytes > 0, artifact.path
    formats = {f.value for f in catalog.RUNTIMES[runtime].formats}
    assert artifact.format in formats, (artifact.format, formats)
    if runtime == "coreml":
        from engines.runtimes.coreml.convert import batch_input, load, op_counts, program_precision

        package = load(artifact.path)  # read back from disk, not the in-memory model
        ops, spec = op_counts(package), package.get_spec()
        assert sum(ops.values()) > 0 and ops == artifact.metrics["coreml_ops"], (ops, artifact.metrics)
        assert program_precision(spec)["compute"] in ("float16", "float32"), program_precision(spec)
        assert batch_input(spec)["kind"] in ("fixed", "enumerated"), batch_input(spec)
        compressing = [p for p in passes if p in ("coreml-weight-int8", "coreml-int4", "coreml-palettize",
                                                  "coreml-w8a8")]
        if compressing:
            assert artifact.metrics["coreml_compressed_ops"] >= 1, (compressing, ops)


def check_runtime(name: str) -> dict[str, dict]:
    """Every method on this runtime's CPU backend: runs and agrees, or is refused with a reason."""
    spec = catalog.RUNTIMES[name]
    present = {d.name for d in detect_devices() if d.present}
    for device in ("cpu", "cuda", "mps", "ane"):
        if device not in spec.devices or device not in present:
            reason = catalog.unsupported_reason(parse_recipe("fp32"), name, device)
            if reason is None and spec.builds_without_device and device in spec.devices:
                # planned for a device this machine lacks (Core ML's ANE programs): built, then refused
                built = run_recipe("fp32", name, device)
                assert built["refused"], f"{name} ran on {device}, which this machine does not have"
                continue
            assert reason and isinstance(reason, str), (name, device)
    figures: dict[str, dict] = {}
    for method, method_spec in catalog.METHODS.items():
        planned = catalog.plan_variant(Recipe.default(method_spec), name, "cpu")
        if not isinstance(planned, Plan):
            assert planned.strip(), f"{method} on {name}: refused without a reason"
            continue
        try:
            figures[method] = run_recipe(method, name)
        except UnsupportedVariant as exc:  # found out only when applied (e.g. a model without Linear)
            assert str(exc).strip()
            continue
        # the contract's small model keeps its answers under every method down to 4 bits (where it could run here)
        top1 = figures[method]["top1"]
        assert top1 is None or top1 >= 0.95, (method, name, top1)
    assert "fp32" in figures, f"{name} cannot run the float reference"
    fp32_size = figures["fp32"]["size_mb"]
    for method, fig in figures.items():
        bits = catalog.METHODS[method].bits
        if bits <= 8 and (method, name) not in SIZE_GAPS:  # integer weights: at most ~half of fp32's bytes
            assert fig["size_mb"] <= 0.6 * fp32_size, (method, name, fig["size_mb"], fp32_size)
    return figures


def example_recipe(pass_name: str) -> Recipe:
    """A recipe whose plan goes through ``pass_name``: its config's defaults (a choice between
    passes for one config is a runtime's setting, never a config's)."""
    spec = all_passes()[pass_name]
    if spec.config_class is None:
        return Recipe((catalog.METHODS["fp32"].config_class(),))
    return Recipe((spec.config_class(),))


def check_pass(pass_name: str) -> None:
    """Some runtime plans the pass for its example recipe, and the result runs and agrees."""
    recipe = example_recipe(pass_name)
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
            figures = run_recipe(recipe, runtime)  # a refusal to open it checks the artifact instead
            assert figures["refused"] or figures["top1"] >= 0.95, (pass_name, runtime, figures["top1"])
            assert figures["artifact"].format == all_passes()[pass_name].output.value or pass_name != planned.names[-1]
            return
    raise AssertionError(f"no runtime's plan uses {pass_name} for {recipe.label}")
