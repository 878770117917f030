"""int4 algorithms as a config choice: round to nearest and HQQ on both runtimes, side by side on the
trained tiny-lm decoder, with perplexity and KL to fp32."""

from __future__ import annotations

import pytest

from engines.methods import parse_recipe
from tests.helpers import FAST, qbench_json

pytestmark = [pytest.mark.slow, pytest.mark.real_model]


def test_rtn_and_hqq_side_by_side_on_tiny_lm(tmp_path):
    proc, payload = qbench_json("run", "--model", "tiny-lm", "--methods",
                                "fp32,int4:group_size=32,int4:group_size=32:algorithm=hqq",
                                "--runtimes", "onnxruntime,torch", "--db", str(tmp_path / "q.db"), *FAST)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = {(r["label"], r["runtime"]): r for r in payload["results"]}
    assert {r["status"] for r in table.values()} == {"ok"}
    for runtime in ("onnxruntime", "torch"):
        rtn, hqq = table[("int4(g32)", runtime)], table[("int4(g32,hqq)", runtime)]
        assert rtn["recipe_id"] != hqq["recipe_id"]
        for r in (rtn, hqq):
            assert 0 < r["metrics"]["kl_divergence"] < 0.05
            assert r["metrics"]["perplexity"] < table[("fp32", runtime)]["metrics"]["perplexity"] * 1.05
        # HQQ fits each block's scale to the weights: it should not lose more than round to nearest
        assert hqq["metrics"]["kl_divergence"] <= rtn["metrics"]["kl_divergence"] * 1.1, runtime
    assert any("HQQ" in n for n in table[("int4(g32,hqq)", "onnxruntime")]["notes"])


def test_the_algorithm_is_part_of_the_recipe():
    assert parse_recipe("int4:algorithm=hqq").label == "int4(hqq)"
    with pytest.raises(ValueError, match="setting algorithm expects one of its choices, got .gptq.; valid: rtn, hqq"):
        parse_recipe("int4:algorithm=gptq")
