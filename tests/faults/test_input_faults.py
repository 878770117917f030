"""Bad settings on the command line: each error names the method, the setting, the expected type
and the valid values, in one line (no raw ``int()`` message, no traceback)."""

from __future__ import annotations

import pytest

from engines.methods import parse_recipe
from tests.helpers import qbench


@pytest.mark.parametrize(("text", "expected"), [
    ("int4:group_size=abc", ["int4", "group_size", "an integer", "'abc'", "16, 32, 64, 128, 256"]),
    ("int4:symmetric=maybe", ["int4", "symmetric", "true or false", "'maybe'"]),
    ("int4:algorithm=zzz", ["int4", "algorithm", "rtn", "hqq"]),
    ("int4:group_size=7", ["int4", "group_size", "16, 32, 64, 128, 256", "got 7"]),
    ("static-int8:calibration_samples=x", ["static-int8", "calibration_samples", "an integer", "between"]),
])
def test_a_setting_that_does_not_parse_names_method_setting_type_and_range(text, expected):
    with pytest.raises(ValueError) as info:
        parse_recipe(text)
    message = str(info.value)
    assert all(part in message for part in expected), message
    assert "invalid literal" not in message


def test_the_command_line_shows_the_setting_error_in_one_line(tmp_path):
    proc = qbench("run", "--model", "digits-mlp", "--methods", "int4:group_size=abc", "--db", str(tmp_path / "q.db"),
                  timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "int4" in line and "group_size" in line and "an integer" in line, line
