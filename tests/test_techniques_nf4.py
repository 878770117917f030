"""bitsandbytes NF4 and LLM.int8() on a real model (digits-mlp) on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from engines import catalog
from engines.methods.recipe import parse_recipe
from tests.conformance.contract import run_recipe
from tests.helpers import needs

# Found, not imported, at collection (bitsandbytes imports torch and its kernels: seconds).
pytestmark = [needs("bitsandbytes")]


@pytest.mark.parametrize("recipe, max_size", [("nf4", 0.16), ("nf4:double_quant=true", 0.15), ("bnb-int8", 0.27)])
def test_bitsandbytes_methods_run_on_cpu_and_agree(recipe, max_size):
    fp32 = run_recipe("fp32", "torch")
    figures = run_recipe(recipe, "torch")
    assert figures["top1"] >= 0.95
    assert figures["size_mb"] <= max_size * fp32["size_mb"], (figures["size_mb"], fp32["size_mb"])
    assert np.isfinite(figures["size_mb"])


def test_bitsandbytes_methods_are_refused_elsewhere_with_a_reason():
    assert "only torch can run" in catalog.unsupported_reason(parse_recipe("nf4"), "onnxruntime", "cpu")


def test_nf4_block_falls_back_where_the_cpu_kernels_disagree_with_nf4():
    from engines.passes.bnb_passes import nf4_block_for, nf4_kernel_error, nf4_reference_error

    torch = pytest.importorskip("torch")
    weight = torch.randn(288, 96, generator=torch.Generator().manual_seed(0)) * 0.02
    # rows of 96 are not a whole number of 64-blocks: bitsandbytes' CPU dequantize blocks per row
    assert nf4_kernel_error(weight, 64) > 2 * nf4_reference_error(weight, 64)
    assert nf4_block_for(weight, 64) == 32
    assert nf4_block_for(torch.randn(96, 384) * 0.02, 64) == 64


@pytest.mark.slow  # tiny-lm trains once per session (~1 min)
@pytest.mark.real_model
def test_nf4_on_tiny_lm_stays_close_to_fp32(tmp_path):
    import tempfile
    from pathlib import Path

    from engines.bench.evaluate import evaluate
    from engines.bench.worker import open_recipe, reference_outputs, run_outputs
    from engines.models import load_model, resolve_model

    model = load_model(resolve_model("tiny-lm"))
    reference = reference_outputs(model, Path(tempfile.mkdtemp()))
    artifact, session = open_recipe(model, "nf4", "torch", "cpu", 1, tmp_path)
    report = evaluate(model, run_outputs(session, model.eval_inputs), reference)
    # was 0.25 (perplexity 12.7 against fp32's 9.9) before the per-row block check
    assert report["metrics"]["kl_divergence"] < 0.01, report["metrics"]
    assert any("smaller blocks" in n for n in artifact.notes), artifact.notes
