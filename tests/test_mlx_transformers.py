"""MLX on transformers: Hugging Face causal LMs through mlx-lm (with its KV cache) and the MiniLM
BERT encoder in engines.runtimes.mlx.bert, each checked against the torch model qbench measures.

MLX's CPU build on Linux is slow (a reference BLAS): the MiniLM checks use short rows and a few
sentences; the Llama-style folder is tiny (transformers' LlamaConfig, random weights).
"""

from __future__ import annotations

import numpy as np
import pytest

from engines.bench.worker import open_recipe, reference_outputs, run_outputs
from engines.methods.recipe import parse_recipes
from engines.models import load_model, resolve_model
from engines.runtimes.base import UnsupportedVariant
from tests.helpers import needs

# Found, not imported, at collection (every xdist worker collects every module).
pytestmark = [needs("mlx.core", reason="mlx is not installed (`uv sync --extra mlx`)"), needs("mlx_lm", reason="mlx-lm is not installed (`uv sync --extra mlx`)")]


def save_llama(directory) -> None:
    """Tied embeddings and Llama 3's rope base: both must reach mlx-lm (transformers 5 nests the
    base in ``rope_parameters``, which mlx-lm 0.32 does not read)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         rope_theta=500000.0, tie_word_embeddings=True)
    LlamaForCausalLM(config).eval().save_pretrained(str(directory))


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mlx-llama") / "tiny-llama"
    save_llama(directory)
    model = load_model(resolve_model(str(directory), {"seq_len": 32}))
    return directory, model, reference_outputs(model, tmp_path_factory.mktemp("ref"))


def _open(model, recipe: str, tmp_path):
    workdir = tmp_path / recipe
    workdir.mkdir()
    return open_recipe(model, recipe, "mlx", "cpu", 1, workdir)


def test_llama_folder_runs_as_mlx_lm_model_with_the_torch_weights(llama, tmp_path):
    _, model, reference = llama
    artifact, session = _open(model, "fp32", tmp_path)
    assert artifact.notes[0] == "converted to MLX (mlx-lm llama)"
    assert type(session._module).__module__ == "mlx_lm.models.llama"
    np.testing.assert_allclose(run_outputs(session, model.eval_inputs), reference, atol=1e-4)


def test_quantized_llama_keeps_its_predictions_and_its_tied_embedding_is_quantized(llama, tmp_path):
    _, model, reference = llama
    fp32, _ = _open(model, "fp32", tmp_path)
    for recipe, floor, share in (("weight-int8", 0.95, 0.35), ("int4", 0.6, 0.2)):
        artifact, session = _open(model, recipe, tmp_path)
        top1 = float(np.mean(run_outputs(session, model.eval_inputs).argmax(-1) == reference.argmax(-1)))
        assert top1 >= floor, (recipe, top1)
        assert artifact.size_bytes <= share * fp32.size_bytes, (recipe, artifact.size_bytes, fp32.size_bytes)
        # tied: the output projection is the embedding's as_linear, so it is quantized with it
        assert "1 Embedding quantized" in artifact.notes[1]


def test_mlx_kv_cache_decodes_the_same_tokens_as_recomputing(llama, tmp_path):
    from engines.bench.decode import generate_cached, generate_uncached
    from engines.bench.evaluate import extra_measurements

    _, model, _ = llama
    _, session = _open(model, "fp32", tmp_path)
    decoder, reason = session.kv_decoder()
    assert reason is None
    prompt = model.eval_inputs["input_ids"][:2, :12]
    _, _, cached, cache_bytes = generate_cached(decoder, prompt, 6)
    _, _, uncached = generate_uncached(session, prompt, 6)
    np.testing.assert_array_equal(cached, uncached)
    # mlx-lm's KVCache holds 256 positions per step: 2 layers × (k, v) × 2 rows × 2 kv heads × 256 × 16 floats
    assert cache_bytes == 2 * 2 * 2 * 2 * 256 * 16 * 4
    m = extra_measurements(model, session, batch_size=1, p50_ms=5.0, repeats=1)
    assert m["decode_kv_cache"] == 1 and m["kv_tokens_match"] == 1.0, m
    assert m["decode_tokens_per_s"] == m["kv_decode_tokens_per_s"] > 0 and m["kv_cache_mb"] > 0


def test_mlx_models_without_a_cache_say_so():
    from engines.runtimes.mlx.lm import kv_decoder

    decoder, reason = kv_decoder(object(), "tiny-lm decoder")
    assert decoder is None and reason == "the MLX tiny-lm decoder model has no KV-cache path in qbench (mlx-lm models do)"


def test_an_architecture_mlx_lm_lacks_is_unsupported_with_its_model_type(tmp_path):
    import torch
    from transformers import BloomConfig, BloomForCausalLM

    torch.manual_seed(0)
    directory = tmp_path / "tiny-bloom"
    BloomForCausalLM(BloomConfig(vocab_size=256, hidden_size=32, n_layer=1, n_head=2)).save_pretrained(str(directory))
    model = load_model(resolve_model(str(directory), {"seq_len": 16}))
    with pytest.raises(UnsupportedVariant, match="^mlx-lm has no model for model_type 'bloom'$"):
        _open(model, "fp32", tmp_path)


@pytest.mark.slow
def test_a_sweep_of_the_llama_folder_on_mlx_reports_perplexity_and_cached_decode(llama, store, fast_measure):
    from engines.bench.runner import SweepRequest, SweepRunner

    directory, _, _ = llama
    request = SweepRequest(model=str(directory), methods=parse_recipes(("fp32", "int4")), runtimes=("mlx",),
                           measure=fast_measure,
                           threads=1, model_options={"seq_len": 32})
    results = {r["label"]: r for r in SweepRunner(store).run(request).results}
    assert all(r["status"] == "ok" for r in results.values()), results
    fp32, int4 = results["fp32"]["metrics"], results["int4"]["metrics"]
    assert fp32["perplexity"] == pytest.approx(fp32["reference_perplexity"], rel=1e-4)
    assert int4["perplexity"] > 0 and int4["kl_divergence"] > fp32["kl_divergence"]
    assert fp32["decode_kv_cache"] == int4["decode_kv_cache"] == 1


# --- MiniLM ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm(tmp_path_factory):
    """32-token rows, 16 sentences: MLX's CPU build takes minutes for the full evaluation set."""
    model = load_model(resolve_model("all-MiniLM-L6-v2", {"seq_len": 32}))
    model.eval_inputs = {k: v[:16] for k, v in model.eval_inputs.items()}
    model.eval_labels = None
    return model, reference_outputs(model, tmp_path_factory.mktemp("ref"))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


@pytest.mark.slow
@pytest.mark.real_model
def test_minilm_encoder_in_mlx_gives_the_torch_embedding(minilm, tmp_path):
    model, reference = minilm
    assert model.inputs[-1].name == "token_type_ids"  # three inputs, all passed through
    artifact, session = _open(model, "fp32", tmp_path)
    assert artifact.notes == ["converted to MLX (BERT encoder, mean pooling)"]
    out = run_outputs(session, model.eval_inputs)
    assert _cosines(out, reference).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), 1.0, atol=1e-5)  # the Normalize module


@pytest.mark.slow
@pytest.mark.real_model
def test_quantized_minilm_keeps_its_embedding_and_int4_is_a_fraction_of_the_size(minilm, tmp_path):
    model, reference = minilm
    fp32, _ = _open(model, "fp32", tmp_path)
    int8, session = _open(model, "weight-int8", tmp_path)
    assert _cosines(run_outputs(session, model.eval_inputs), reference).min() >= 0.99
    int4, session = _open(model, "int4", tmp_path)
    assert _cosines(run_outputs(session, model.eval_inputs), reference).mean() >= 0.9
    assert "36 Linear, 3 Embedding quantized" in int4.notes[1]
    assert int4.size_bytes <= 0.2 * fp32.size_bytes < int8.size_bytes, (int4.size_bytes, int8.size_bytes)
