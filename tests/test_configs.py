"""Method configs: typed, validated, and round-tripping through the dict stored in SQLite."""

from __future__ import annotations

import json

import pytest

from engines import catalog
from engines.methods import configs


@pytest.mark.parametrize("method", list(catalog.METHODS))
def test_every_default_config_round_trips_through_json(method):
    cls = catalog.METHODS[method].config_class
    config = cls()
    data = json.loads(json.dumps(configs.config_to_dict(config)))
    assert data["version"] == cls.version
    assert configs.config_from_dict(cls, data) == config


def test_non_default_values_round_trip_with_enums():
    config = configs.StaticInt8Config(
        calibration_method=configs.CalibrationMethod.ENTROPY, calibration_samples=64,
        per_channel=False, quant_format=configs.QuantFormat.QOPERATOR,
    )
    data = configs.config_to_dict(config)
    assert data["calibration_method"] == "entropy"
    assert configs.config_from_dict(configs.StaticInt8Config, data) == config
    assert "calibration_method=entropy" in config.describe()


def test_text_values_are_coerced_to_field_types():
    config = configs.config_from_dict(configs.Int4Config, {"group_size": "128", "symmetric": "false"})
    assert config == configs.Int4Config(group_size=128, symmetric=False)


@pytest.mark.parametrize(
    ("cls", "data", "message"),
    [
        (configs.Int4Config, {"group_size": 48}, "group_size must be one of"),
        (configs.StaticInt8Config, {"calibration_samples": 0}, "calibration_samples"),
        (configs.StaticInt8Config, {"calibration_method": "magic"}, "not one of: minmax, entropy, percentile"),
        (configs.DynamicInt8Config, {"per_chanel": True}, "unknown setting"),
        (configs.Fp16Config, {"keep_io_types": "maybe"}, "not a boolean"),
    ],
)
def test_invalid_settings_are_rejected_with_a_reason(cls, data, message):
    with pytest.raises(ValueError, match=message):
        configs.config_from_dict(cls, data)


def test_field_specs_describe_every_field_for_generated_forms():
    specs = {s["name"]: s for s in configs.field_specs(configs.StaticInt8Config)}
    assert specs["calibration_method"]["choices"] == ["minmax", "entropy", "percentile"]
    assert specs["calibration_samples"]["default"] == 256
    assert all(s["help"] for s in specs.values())


def test_catalog_lists_without_importing_heavy_engines():
    import subprocess
    import sys

    code = (
        "import sys, engines.catalog as c, engines.models as m, engines.bench.runner, engines.store;"
        "c.support_matrix('cpu'); m.list_models();"
        "heavy = [x for x in ('torch', 'onnxruntime', 'onnx', 'transformers', 'sklearn') if x in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_unsupported_pairs_carry_a_reason():
    assert catalog.unsupported_reason("fp32", "onnxruntime", "cpu") is None
    reason = catalog.unsupported_reason("dynamic-int8", "torch", "mps")
    assert reason and ("MPS" in reason or "not present" in reason)
    assert "no mps backend" in catalog.unsupported_reason("fp32", "onnxruntime", "mps")
