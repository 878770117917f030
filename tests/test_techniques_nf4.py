"""bitsandbytes NF4 and LLM.int8() on a real model (digits-mlp) on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from engines import catalog
from tests.conformance.contract import run_recipe

pytest.importorskip("bitsandbytes")


@pytest.mark.parametrize("recipe, max_size", [("nf4", 0.16), ("nf4:double_quant=true", 0.15), ("bnb-int8", 0.27)])
def test_bitsandbytes_methods_run_on_cpu_and_agree(recipe, max_size):
    fp32 = run_recipe("fp32", "torch")
    figures = run_recipe(recipe, "torch")
    assert figures["top1"] >= 0.95
    assert figures["size_mb"] <= max_size * fp32["size_mb"], (figures["size_mb"], fp32["size_mb"])
    assert np.isfinite(figures["size_mb"])


def test_bitsandbytes_methods_are_refused_elsewhere_with_a_reason():
    assert "only torch can run" in catalog.unsupported_reason("nf4", "onnxruntime", "cpu")
