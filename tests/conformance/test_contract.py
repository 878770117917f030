"""The conformance suite: one contract, parametrized over every registered runtime and pass."""

from __future__ import annotations

import pytest
from contract import check_pass, check_runtime

from engines import catalog
from engines.passes import all_passes


# The contracts that take longest here (a build per method, or a conversion per pass) run in the whole
# suite only (``slow``); the quick loop keeps the others.
SLOW_RUNTIMES = {"torch", "llama.cpp", "coreml"}
SLOW_PASSES = {"coreml-palettize", "pt2e-static-int8"}


def _params(names, slow):
    return [pytest.param(name, marks=pytest.mark.slow) if name in slow else name for name in names]


@pytest.mark.parametrize("runtime", _params([n for n, spec in catalog.RUNTIMES.items() if spec.installed()],
                                            SLOW_RUNTIMES))
def test_runtime_contract(runtime):
    check_runtime(runtime)


@pytest.mark.parametrize("pass_name", _params(list(all_passes()), SLOW_PASSES))
def test_pass_contract(pass_name):
    check_pass(pass_name)
