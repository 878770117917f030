"""Decode with a KV cache against decode without one, per token, at a 128-token context.

    uv run python bench/kv_cache_decode.py [--models tiny-lm,llama] [--runtimes torch,onnxruntime]
                                           [--prompt 96] [--new 32] [--rounds 5] [--threads 1]

For each model (``tiny-lm``, and ``llama``: a Llama-style folder made here with transformers,
random weights, 4 layers of width 256) and runtime, one fp32 variant is opened in this process
(:func:`engines.bench.worker.open_recipe`, which also builds ONNX Runtime's decode-step graph),
then greedy generation of ``--new`` tokens after a ``--prompt``-token prompt is timed in
interleaved rounds: once feeding the whole sequence for each token (what qbench measured
before), once with the cache. Per token = decode seconds / (new - 1) (the first token belongs to
time to first token). Ratio = median(no cache) / median(cache) per token, with a 95 % bootstrap
interval over the rounds; the script also checks that both paths chose the same tokens.

Expected: the uncached step costs O(context) full forwards, the cached one a single position, so
at a 128-token context the cached path is several times faster per token; for a model this small
the gap is narrowed by the per-call overhead, which both pay.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from engines.bench.decode import generate_cached, generate_uncached
from engines.bench.measure import bootstrap_ratio_ci
from engines.bench.worker import open_recipe
from engines.models import load_model, resolve_model


def llama_folder(root: Path) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = root / "bench-llama"
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=2048, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                         num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=512)
    LlamaForCausalLM(config).eval().save_pretrained(str(directory))
    return directory


def measure(name: str, runtime: str, args, root: Path) -> None:
    from dataclasses import replace

    target = "tiny-lm" if name == "tiny-lm" else str(llama_folder(root))
    spec = resolve_model(target, {"seq_len": args.prompt + args.new})
    if runtime == "onnxruntime":  # as a sweep's child does: the cached export and its decode graph
        spec = replace(spec, extra={**spec.extra, "source_format": "onnx"})
    model = load_model(spec)
    workdir = root / f"{name}-{runtime}"
    workdir.mkdir(parents=True, exist_ok=True)
    _, session = open_recipe(model, "fp32", runtime, "cpu", args.threads, workdir)
    decoder, reason = session.kv_decoder()
    if decoder is None:
        print(f"{name:8} {runtime:12} no cached path: {reason}")
        return
    prompt = model.example_inputs(1)["input_ids"][:, : args.prompt]
    generate_uncached(session, prompt, args.new)
    generate_cached(decoder, prompt, args.new)  # warm-up of both
    plain, cached, same = [], [], True
    for i in range(args.rounds):
        order = (0, 1) if i % 2 == 0 else (1, 0)
        for which in order:
            if which == 0:
                _, decode_s, tokens_plain = generate_uncached(session, prompt, args.new)
                plain.append(decode_s / (args.new - 1) * 1000)
            else:
                _, decode_s, tokens_cached, cache_bytes = generate_cached(decoder, prompt, args.new)
                cached.append(decode_s / (args.new - 1) * 1000)
        same = same and np.array_equal(tokens_plain, tokens_cached)
    ratio, lo, hi = bootstrap_ratio_ci(np.array(plain), np.array(cached))
    print(f"{name:8} {runtime:12} context {args.prompt + args.new}: no cache {np.median(plain):7.3f} ms/token, "
          f"KV cache {np.median(cached):7.3f} ms/token → ×{ratio:.2f} [{lo:.2f}, {hi:.2f}], "
          f"cache {cache_bytes / 2**20:.2f} MB, same tokens: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="tiny-lm,llama")
    parser.add_argument("--runtimes", default="torch,onnxruntime")
    parser.add_argument("--prompt", type=int, default=96)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            for runtime in args.runtimes.split(","):
                measure(name, runtime, args, Path(tmp))


if __name__ == "__main__":
    main()
