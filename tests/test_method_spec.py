"""A method's facts live on its spec, so a new method is one file.

A method written in one temporary module (its config, its facts and the pass that carries it out)
and named in ``$QBENCH_PLUGINS`` shows up in the catalog, the refusal check, the CLI's ``--methods``,
the sweep plan, the roofline's reading of it and export's fallbacks, with no table edited. The
processes that load it are subprocesses, so this process's registries stay as they are. The grep
tests keep the facts from drifting back into tables of names.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import FAST, qbench, qbench_json, source_lines_matching

# bfloat16-rounded weights, kept in float32: what a bf16 checkpoint loses, measured on any runtime.
ROUND_BF16_METHOD = '''
"""bf16-round: weights rounded to bfloat16 and held in float32 (the error of a bf16 checkpoint)."""

from dataclasses import dataclass, field

from engines.methods.configs import MethodConfig, help_text
from engines.methods.registry import Compute, register_method
from engines.passes import Format, PassContext, register_pass
from engines.runtimes.base import Artifact


@register_method("bf16-round", title="bfloat16-rounded weights", bits=16, compute=Compute.FLOAT,
                 fallbacks=("fp16",), order=2,
                 description="Weights rounded to bfloat16, held in float32: the accuracy of a bf16 checkpoint.")
@dataclass(frozen=True)
class RoundBf16Config(MethodConfig):
    """Round every floating-point parameter to bfloat16."""

    biases: bool = field(default=True, metadata=help_text("Round the biases too.", short=("w-only", "w+b")))


@register_pass("torch-round-bf16", config=RoundBf16Config, input=Format.TORCH, output=Format.TORCH,
               runtimes=("torch", "onnxruntime"))
def round_bf16(ctx: PassContext, artifact: Artifact, config: RoundBf16Config) -> Artifact:
    """Round the weights to bfloat16 in a copy of the module (torch runs it, ONNX Runtime once exported)."""
    import copy

    import torch

    module = copy.deepcopy(artifact.payload).eval()
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.is_floating_point() and (config.biases or not name.endswith("bias")):
                p.copy_(p.to(torch.bfloat16).to(p.dtype))
    path = ctx.workdir / "model.bf16-round.pt"
    torch.save(module.state_dict(), path)
    return Artifact(path, notes=["weights rounded to bfloat16"], payload=module, format=Format.TORCH.value)
'''

PROBE = '''
import json
from engines import catalog
from engines.analysis import roofline
from engines.api import prepare
from engines.bench.request import plan_variants
from engines.methods.recipe import parse_recipe
from engines.methods.registry import method_spec

spec = method_spec("bf16-round")
recipe = parse_recipe("bf16-round:biases=false")
planned = catalog.plan_variant(recipe, "onnxruntime", "cpu")
variants = plan_variants(prepare("digits-mlp", methods=["fp32", "bf16-round"]).request)
variant = {"runtime": "onnxruntime", "latency_ms": {"p50": 1.0}, "method": "bf16-round", "size_mb": 1.0}
print(json.dumps({
    "listed": "bf16-round" in catalog.METHODS,
    "compute": spec.compute.value, "fallbacks": list(spec.fallbacks), "reference": spec.is_reference,
    "plan": planned.names,
    "refusal": catalog.unsupported_reason(recipe, "llama.cpp", "cpu"),
    "variants": [v.recipe.label for v in variants],
    "diagnosis": roofline.diagnose(variant, None, {"family": "mlp"}, None, 1.0),
}))
'''


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "round_bf16_method.py").write_text(textwrap.dedent(ROUND_BF16_METHOD))
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    return {"QBENCH_PLUGINS": "round_bf16_method", "PYTHONPATH": path}


def test_a_method_in_one_module_reaches_the_catalog_the_refusals_and_the_plan(plugin_env):
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300,
                         env={**os.environ, **plugin_env}, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts["listed"] and facts["compute"] == "float" and facts["fallbacks"] == ["fp16"]
    assert not facts["reference"]
    assert facts["plan"] == ["torch-round-bf16", "export-onnx"]  # its pass, then the conversion ORT opens
    # Its pass says who runs what it makes: llama.cpp is refused by the planner, with no list to edit.
    assert facts["refusal"] == "llama.cpp has no pass for bf16-round; its passes make what only onnxruntime, torch can run"
    assert facts["variants"] == ["fp32", "bf16-round"]
    assert facts["diagnosis"].startswith("no roofline measured")


def test_a_method_in_one_module_is_a_choice_of_the_commands(plugin_env):
    methods = {m["name"]: m for m in json.loads(qbench("methods", "--json", env=plugin_env).stdout)}
    assert methods["bf16-round"]["support"]["onnxruntime"]["cpu"] == "ok"
    assert (methods["bf16-round"]["compute"], methods["bf16-round"]["fallbacks"]) == ("float", ["fp16"])
    assert methods["fp32"]["reference"] and not methods["bf16-round"]["reference"]
    assert methods["static-int8"]["settings"]["quant_format"]["option_of"] == ["ort-static-int8"]
    assert methods["static-int8"]["settings"]["per_channel"]["option_of"] == []  # every backend reads it
    assert methods["bf16-round"]["support"]["torch"]["cpu"] == "ok"
    # --methods knows it: a setting it lacks is named against its own settings, and an unknown
    # method's message lists it among the valid ones.
    bad = qbench("run", "--model", "digits-mlp", "--methods", "bf16-round:group_size=8", env=plugin_env)
    assert bad.returncode != 0 and "bf16-round has no setting 'group_size'; valid: biases" in bad.stderr
    unknown = qbench("run", "--model", "digits-mlp", "--methods", "bf17", env=plugin_env)
    assert unknown.returncode != 0 and "bf16-round" in unknown.stderr


@pytest.mark.slow
def test_a_method_in_one_module_runs_in_a_sweep(plugin_env, tmp_path):
    proc, payload = qbench_json("run", "--db", str(tmp_path / "q.db"), "--model", "digits-mlp", "--methods",
                                "fp32,bf16-round", "--runtimes", "onnxruntime", *FAST, env=plugin_env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    by_label = {r["label"]: r for r in payload["results"]}
    assert by_label["bf16-round"]["status"] == "ok", by_label["bf16-round"].get("error")
    assert by_label["bf16-round"]["passes"] == ["torch-round-bf16", "export-onnx"]
    assert by_label["bf16-round"]["agreement"]["top1"] >= 0.9


# --- the facts stay on the specs --------------------------------------------------------------------


def test_every_method_states_its_facts_and_its_fallbacks_are_methods():
    from engines.methods.registry import Compute, all_methods, reference_method

    methods = all_methods()
    assert reference_method() == "fp32" and [n for n, s in methods.items() if s.is_reference] == ["fp32"]
    for name, spec in methods.items():
        assert isinstance(spec.compute, Compute)
        assert set(spec.fallbacks) <= set(methods) - {name}, f"{name}: fallbacks {spec.fallbacks}"
        assert spec.transforms is not spec.is_reference


def test_the_recipes_the_rankings_propose_are_registered_methods():
    """The family and device rankings may name recipes (an order of preference is data), but every
    name must parse against the registry: a renamed or removed method fails here."""
    from engines.analysis.families import FAMILY_RECIPES
    from engines.devices import DeviceInfo
    from engines.devices.isa import CpuFeatures
    from engines.devices.strategies import cpu_strategies, device_strategies
    from engines.methods.recipe import parse_recipe

    specs = [s for rows in FAMILY_RECIPES.values() for s, _ in rows]
    for features in (("avx512_vnni", "avx512f"), ("avx2",), (), ("dotprod", "i8mm")):
        arch = "arm64" if "dotprod" in features else "x86_64"
        specs += [s.spec for s in cpu_strategies(CpuFeatures(arch=arch, features=features, source="test"))]
    for name in ("mps", "gpu", "ane", "cuda"):
        specs += [s.spec for s in device_strategies(DeviceInfo(name=name, title=name, present=False, detail=""))]
    for spec in specs:
        parse_recipe(spec)  # raises on an unknown method or setting


# What may never come back outside engines/methods/: a test of a method's name against the reference,
# the compute tables, the fallback table, and runtimes listing the methods they accept.
FACT_TABLES = re.compile(
    r"""[!=]=\s*['"]fp32['"]|['"]fp32['"]\s*[!=]=|['"]fp32['"]\s+(?:not\s+)?in\b|\bin\s+[(\[{]\s*['"]fp32['"]"""
    r"""|\bWEIGHT_ONLY\s*=|\bINT_COMPUTE\s*=|\bNEAREST\s*[:=]|\baccepts\s*=\s*[(\[]"""
    r"""|\bmethod\s*(?:=|!=|<>|\bIN\s*\()\s*'fp32'""")  # and in SQL
ALLOWED = {
    "engines/passes/mixed_passes.py": "a mixed-precision layer pin ('fp32' or 'quant'), not the reference",
    "qbench_tui/screens/result_detail.py": "a mixed-precision plan's layer precision, not the reference",
}


def test_no_method_fact_is_kept_in_a_table_of_names():
    offenders = source_lines_matching(FACT_TABLES, ALLOWED, ("engines/methods/",))
    assert offenders == [], "ask the method's spec (method_spec(name).compute / .is_reference / .fallbacks)"


def test_the_store_names_no_method():
    """The store's SQL takes the reference (and any method) from the method specs: no registered
    method's name is an SQL literal ('fp32') in engines/store/."""
    from engines.methods.registry import all_methods

    names = "|".join(re.escape(name) for name in all_methods())
    literal = re.compile(rf"'(?:{names})'")
    offenders = [line for line in source_lines_matching(literal, {}) if line.startswith("engines/store/")]
    assert offenders == [], "read the reference from the method spec (engines.store.query.reference_sql)"


def test_the_fact_grep_catches_what_it_forbids():
    for line in ('if r["method"] == "fp32":', "x = 'fp32' != m", 'if m in ("fp32", "fp16"):',
                 'WEIGHT_ONLY = ("int4",)', 'NEAREST: dict = {}', '    accepts=("fp32", "fp16"),',
                 "\"AND f.method = 'fp32' \"", "WHERE method IN ('fp32', 'fp16')", "r.method<>'fp32'"):
        assert FACT_TABLES.search(line), line
    for line in ('Strategy("fp32", "cpu", "the reference")', 'keep: str = "fp32"', "accepts: Callable | None"):
        assert not FACT_TABLES.search(line), line


# --- recipes are parsed where their text enters, then travel typed ---------------------------------

# Where recipe text may become a Recipe: the edges (the Python API that the CLI calls too, the app's
# set-up and its per-cell refusal check, the CLI's auto command), a stored request read back, and
# the tables of recipe texts that rankings and scripts hold.
PARSE_ALLOWED = {
    "engines/api.py": "the Python API's prepare (the CLI's run goes through it)",
    "engines/bench/request.py": "a stored or sent request read back (from_dict)",
    "engines/bench/autosearch.py": "auto's search: the strategies' recipe texts and its finalists",
    "engines/bench/worker.py": "open_recipe, the bench scripts' entry point",
    "engines/export/pipeline.py": "export reads a stored result's recipe and its fallbacks",
    "engines/analysis/families.py": "auto's ranking of recipe texts per model family",
    "qbench_tui/controllers/sweep.py": "the app's set-up, submitted",
    "qbench_tui/system.py": "the app's per-cell refusal check",
    "qbench_tui/cli/auto.py": "auto's chosen recipe texts",
}


def test_recipe_text_is_parsed_only_where_it_enters():
    call = re.compile(r"(?<![.\w])parse_recipes?\(")  # a call, not a message naming it
    offenders = source_lines_matching(call, PARSE_ALLOWED, ("engines/methods/",))
    assert offenders == [], "parse where the text enters; pass Recipe objects downward"


def test_a_request_holds_recipes_and_stores_the_text_that_parses_back():
    from engines.bench.request import SweepRequest, plan_variants
    from engines.catalog import unsupported_reason
    from engines.methods.recipe import parse_recipes

    configs = {"int4": {"group_size": 128}}
    # int4 at the method's own default (64) although the defaults say 128: the stored text must keep it.
    recipes = parse_recipes(["fp32", "int4", "int4:group_size=64"], configs)
    request = SweepRequest(model="digits-mlp", methods=recipes, runtimes=("onnxruntime",), configs=configs)
    assert [v.recipe.label for v in plan_variants(request)] == ["fp32", "int4(g128)", "int4"]
    stored = request.to_dict()
    assert stored["methods"] == ["fp32", "int4", "int4:group_size=64"]
    assert SweepRequest.from_dict(json.loads(json.dumps(stored))) == request
    with pytest.raises(TypeError, match="parse them where they enter"):
        SweepRequest(model="digits-mlp", methods=("fp32",), runtimes=("onnxruntime",))
    with pytest.raises(TypeError, match="recipes, not text"):
        unsupported_reason("fp32", "onnxruntime", "cpu")  # type: ignore[arg-type]


# --- passes own their options ---------------------------------------------------------------------


def test_a_backends_options_belong_to_its_passes_not_to_other_runtimes_variants():
    """``quantize_conv`` and ``quant_format`` are ONNX Runtime's passes' options: a variant on torch
    leaves them at their defaults, so it is labelled (and identified) as what ran, and a request
    holding both spellings measures that variant once."""
    from engines.bench.request import SweepRequest, plan_variants
    from engines.methods.recipe import parse_recipes
    from engines.passes import all_passes

    owners = {p.name: p.owns for p in all_passes().values() if p.owns}
    assert owners["ort-dynamic-int8"] == ("quantize_conv", "reduce_range")
    assert "quant_format" in owners["ort-static-int8"]
    methods = parse_recipes(["dynamic-int8:quantize_conv=true", "dynamic-int8", "static-int8:quant_format=qoperator"])
    request = SweepRequest(model="digits-mlp", methods=methods, runtimes=("torch", "onnxruntime"))
    assert [(v.recipe.label, v.runtime) for v in plan_variants(request)] == [
        ("dynamic-int8", "torch"), ("dynamic-int8(q-conv)", "onnxruntime"), ("dynamic-int8", "onnxruntime"),
        ("static-int8", "torch"), ("static-int8(qoperator)", "onnxruntime")]


def test_a_runtimes_choice_lives_on_its_runtime_config_and_the_old_spelling_says_where():
    """Which torch library applies dynamic int8 is the torch runtime's ``dynamic_int8`` setting, not
    a method setting: typing the old ``torch_backend`` (recipe text, ``--set``, the Python API)
    names the new place, a stored config holding it still loads, and no method config carries a
    runtime's knob (a field whose help names one runtime first, "torch only", "ONNX Runtime only",
    "ONNX Runtime, attention graphs", is an option a pass owns, so other runtimes' variants drop it)."""
    from engines.bench.request import SweepRequest
    from engines.core.config import config_from_dict, field_specs
    from engines.methods.int8 import DynamicInt8Config
    from engines.methods.recipe import parse_recipes
    from engines.methods.registry import all_methods
    from engines.passes import all_passes
    from engines.runtimes import runtime_spec

    torch_config = config_from_dict(runtime_spec("torch").config_class, {"dynamic_int8": "torchao"})
    assert torch_config.dynamic_int8.value == "torchao"
    for typed in (lambda: parse_recipes(["dynamic-int8:torch_backend=torchao"]),
                  lambda: parse_recipes(["dynamic-int8"], {"dynamic-int8": {"torch_backend": "torchao"}})):
        with pytest.raises(ValueError, match=r"torch runtime's dynamic_int8 .*--set torch\.dynamic_int8=torchao"):
            typed()
    stored = config_from_dict(DynamicInt8Config, {"per_channel": False, "torch_backend": "torchao", "version": 2})
    assert stored == DynamicInt8Config(per_channel=False)
    old_run = SweepRequest.from_dict({  # a run stored with the old spelling still resumes
        "model": "digits-mlp", "methods": ["dynamic-int8:torch_backend=torchao", "fp32"], "runtimes": ["torch"],
        "devices": ["cpu"], "batch_sizes": [1], "configs": {"dynamic-int8": {"torch_backend": "torchao"}}})
    assert old_run.runtime_config("torch").dynamic_int8.value == "torchao"
    assert [r.label for r in old_run.methods] == ["dynamic-int8", "fp32"]
    owned = {name for p in all_passes().values() if p.config_class is not None for name in p.owns}
    for spec in all_methods().values():
        for field in field_specs(spec.config_class):
            one_runtime = ("torch only", "torch pt2e only", "onnx runtime only", "onnx runtime,", "onnx runtime:")
            if field["help"].lower().startswith(one_runtime):
                assert field["name"] in owned, f"{spec.name}.{field['name']} is a runtime's knob no pass owns"


def test_the_torch_runtimes_dynamic_int8_setting_picks_the_library_that_applies_it(tmp_path):
    """One pass carries dynamic int8 out on torch; the variant's runtime config (not the method's)
    says whether torch.ao's quantize_dynamic or torchao applies it, and the session runs either."""
    import numpy as np

    from engines.bench.worker import open_recipe
    from engines.models import load_model, resolve_model

    model = load_model(resolve_model("digits-mlp"))
    batch = {name: values[:4] for name, values in model.eval_inputs.items()}
    notes = {}
    for library in ("torch.ao", "torchao"):
        (tmp_path / library).mkdir()
        artifact, session = open_recipe(model, "dynamic-int8", "torch", "cpu", 1, tmp_path / library,
                                        runtime_config={"dynamic_int8": library})
        assert np.isfinite(session.run(batch)).all()
        notes[library] = " ".join(artifact.notes)
    assert "torch.ao quantize_dynamic" in notes["torch.ao"] and "torchao Int8Dynamic" in notes["torchao"]
