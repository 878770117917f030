"""The conformance suite: one contract, parametrized over every registered runtime and pass."""

from __future__ import annotations

import pytest
from contract import check_pass, check_runtime

from engines import catalog
from engines.passes import all_passes


@pytest.mark.parametrize("runtime", [name for name, spec in catalog.RUNTIMES.items() if spec.installed()])
def test_runtime_contract(runtime):
    check_runtime(runtime)


@pytest.mark.parametrize("pass_name", list(all_passes()))
def test_pass_contract(pass_name):
    check_pass(pass_name)
