"""Method configs: typed, validated, and round-tripping through the dict stored in SQLite."""

from __future__ import annotations

import json

import pytest

from engines import catalog
from engines.methods import configs, parse_recipe
from engines.methods.configs import CalibrationMethod, QuantFormat
from engines.methods.floats import Fp16Config
from engines.methods.int4 import Int4Config
from engines.methods.int8 import DynamicInt8Config, StaticInt8Config
from engines.methods.recipe import Recipe


@pytest.mark.parametrize("method", list(catalog.METHODS))
def test_every_default_config_round_trips_through_json(method):
    cls = catalog.METHODS[method].config_class
    config = cls()
    data = json.loads(json.dumps(configs.config_to_dict(config)))
    assert data["version"] == cls.version
    assert configs.config_from_dict(cls, data) == config


def test_non_default_values_round_trip_with_enums():
    config = StaticInt8Config(
        calibration_method=CalibrationMethod.ENTROPY, calibration_samples=64,
        per_channel=False, quant_format=QuantFormat.QOPERATOR,
    )
    data = configs.config_to_dict(config)
    assert data["calibration_method"] == "entropy"
    assert configs.config_from_dict(StaticInt8Config, data) == config
    assert "calibration_method=entropy" in config.describe()


def test_text_values_are_coerced_to_field_types():
    config = configs.config_from_dict(Int4Config, {"group_size": "128", "symmetric": "false"})
    assert config == Int4Config(group_size=128, symmetric=False)


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [
        (Int4Config, {"group_size": 48}, "group_size must be one of"),
        (StaticInt8Config, {"calibration_samples": 0}, "calibration_samples"),
        (StaticInt8Config, {"calibration_method": "magic"}, "not one of: minmax, entropy, percentile"),
        (DynamicInt8Config, {"per_chanel": True}, "unknown setting"),
        (Fp16Config, {"keep_io_types": "maybe"}, "not a boolean"),
    ],
)
def test_invalid_settings_are_rejected_with_a_reason(cls, data, message):
    with pytest.raises(ValueError, match=message):
        configs.config_from_dict(cls, data)


def test_field_specs_describe_every_field_for_generated_forms():
    specs = {s["name"]: s for s in configs.field_specs(StaticInt8Config)}
    assert specs["calibration_method"]["choices"] == ["minmax", "entropy", "percentile"]
    assert specs["calibration_samples"]["default"] == 256
    assert all(s["help"] for s in specs.values())


def test_catalog_lists_without_importing_heavy_engines():
    import subprocess
    import sys

    code = (
        "import sys, engines.catalog as c, engines.models as m, engines.bench.runner, engines.store;"
        "from engines.methods.recipe import parse_recipe;"
        "c.support_matrix('cpu'); m.list_models(); c.plan_variant(parse_recipe('int4:group_size=128'), 'onnxruntime', 'cpu');"
        "heavy = [x for x in ('torch', 'onnxruntime', 'onnx', 'transformers', 'sklearn', 'numpy')"
        " if x in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_unsupported_pairs_carry_a_reason():
    assert catalog.unsupported_reason(parse_recipe("fp32"), "onnxruntime", "cpu") is None
    reason = catalog.unsupported_reason(parse_recipe("dynamic-int8"), "torch", "mps")
    assert reason and ("MPS" in reason or "not present" in reason)
    assert "no mps backend" in catalog.unsupported_reason(parse_recipe("fp32"), "onnxruntime", "mps")


# --- recipes -----------------------------------------------------------------------------------


def test_recipe_specs_parse_with_settings_and_keep_a_stable_id_and_label():
    plain, g128, g32 = parse_recipe("int4"), parse_recipe("int4:group_size=128"), parse_recipe("int4:group_size=32")
    assert (plain.label, g128.label, g32.label) == ("int4", "int4(g128)", "int4(g32)")
    assert len({plain.id, g128.id, g32.id}) == 3
    assert parse_recipe("int4:group_size=128").id == g128.id  # stable across parses (and processes: a hash)
    assert parse_recipe(g128.spec_text) == g128
    assert Recipe.from_list(json.loads(json.dumps(g128.to_list()))) == g128
    assert parse_recipe("int4:group_size=64").id == plain.id  # the default spelled out is the same recipe


def test_recipe_defaults_apply_before_the_spec_settings():
    recipe = parse_recipe("static-int8:per_channel=false", {"static-int8": {"calibration_method": "entropy"}})
    assert recipe.steps[0] == StaticInt8Config(calibration_method=CalibrationMethod.ENTROPY, per_channel=False)
    assert recipe.label == "static-int8(entropy,per-tensor)"


@pytest.mark.parametrize(("text", "message"), [
    ("int5", "unknown method 'int5'; valid: fp32"),
    ("int4:group=128", "int4 has no setting 'group'; valid: group_size, symmetric"),
    ("int4:group_size", "expected FIELD=VALUE"),
    ("int4:group_size=48", "group_size must be one of"),
])
def test_bad_recipe_specs_say_what_is_valid(text, message):
    with pytest.raises(ValueError, match=message):
        parse_recipe(text)


def test_multi_step_recipes_chain_with_plus():
    recipe = parse_recipe("fp32+int4:group_size=128")
    assert recipe.label == "fp32+int4(g128)" and recipe.method == "fp32" and len(recipe.to_list()) == 2


def test_settings_stored_before_a_meaning_changed_read_as_they_ran():
    """dynamic-int8 version 1 quantized convolutions on ONNX Runtime; version 2 leaves them float
    unless asked: a stored version-1 config reads back as what it measured."""
    from engines.core.config import config_from_dict, config_to_dict
    from engines.methods.int8 import DynamicInt8Config

    assert config_from_dict(DynamicInt8Config, {"per_channel": True, "version": 1}).quantize_conv is True
    assert config_from_dict(DynamicInt8Config, config_to_dict(DynamicInt8Config())).quantize_conv is False
    assert DynamicInt8Config.version == 2
    # static-int8 version 1 ran without ONNX Runtime's convolution bias correction
    assert config_from_dict(StaticInt8Config, {"per_channel": True, "version": 1}).bias_correction is False
    assert config_from_dict(StaticInt8Config, config_to_dict(StaticInt8Config())).bias_correction is True
    # version 2 corrected biases on ONNX Runtime only; version 3 on torch PT2E too
    old = config_from_dict(StaticInt8Config, {"per_channel": True, "version": 2})
    assert old.bias_correction is True and old.torch_bias_correction is False and old.torch_restricted_weights is False
    assert config_from_dict(StaticInt8Config, {"per_channel": True, "version": 1}).torch_bias_correction is False
    new = config_from_dict(StaticInt8Config, config_to_dict(StaticInt8Config()))
    assert new.torch_bias_correction is True and new.torch_restricted_weights is True
