"""Torch weights → a GGUF file llama.cpp loads, written with the ``gguf`` package.

Two families, each as an architecture llama.cpp already implements (tensor names and metadata
keys as llama.cpp's ``convert_hf_to_gguf.py`` writes them):

* tiny-lm → ``gpt2``: learned positions, pre-norm LayerNorm blocks with biases, fused QKV, GELU.
  llama.cpp's gpt2 has no bias on the output projection; tiny-lm's head has one. It is folded
  into ``output.weight`` through the final LayerNorm, exactly in real arithmetic: after a
  LayerNorm, ``h = γ⊙n + β`` with ``Σn = 0``, so ``(1/γ)·h`` is a constant and a rank-one term
  ``c ⊗ (1/γ)`` adds the constant vector ``c`` to every position's logits (see :func:`fold_bias`).
  GELU: llama.cpp's is the tanh approximation, torch's the erf form (logits differ by ~1e-3).
* Hugging Face Llama (``model_type`` llama) → ``llama``: RMSNorm, rotary positions (q/k rows
  permuted from Hugging Face's rotate-half order to llama.cpp's, as ``convert_hf_to_gguf.py``
  does), SwiGLU, grouped-query attention, a tied or separate output.

``f16`` writes 2-D weight matrices as float16 and keeps norms and biases float32 (the rule of
``convert_hf_to_gguf.py --outtype f16``, and what llama.cpp's quantizer then starts from);
``f32`` keeps everything float32; ``q8_0`` writes every 2-D weight matrix in Q8_0 with
``gguf.quants`` (the Python port of llama.cpp's Q8_0). Unlike llama.cpp's quantizer, which keeps
a position table at its source type, ``q8_0`` quantizes tiny-lm's ``position_embd`` too (12 K
weights: 0.557× → 0.543× of the F16 file); llama.cpp reads it with ``get_rows`` like any other. Heavy: imports gguf, numpy and torch; the child process only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engines.runtimes.base import UnsupportedVariant

# Byte-level vocabulary: GPT-2's printable stand-in for each byte (id = byte value).
NO_MERGES = ["<no> <merges>"]  # llama.cpp's BPE loader needs the key; this pair never occurs


def byte_tokens() -> list[str]:
    """GPT-2's bytes_to_unicode table, in byte order."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    mapping, extra = {}, 0
    for b in range(256):
        if b in keep:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return [mapping[b] for b in range(256)]


def family(module: Any) -> str | None:
    """``gpt2`` (tiny-lm), ``llama`` (a Hugging Face Llama causal LM), or None."""
    if type(module).__name__ == "TinyLM":
        return "gpt2"
    base = getattr(module, "model", None)
    config = getattr(base, "config", None)
    if type(module).__name__.startswith("CausalLMLogits") and getattr(config, "model_type", None) == "llama":
        return "llama"
    return None


def refusal(module: Any) -> str:
    base = getattr(module, "model", None)
    kind = getattr(getattr(base, "config", None), "model_type", None) or type(module).__name__
    return (f"the llama.cpp runtime writes tiny-lm (as gpt2) and Hugging Face Llama causal LMs as GGUF; "
            f"{kind} is not one of them")


def fold_bias(gamma: np.ndarray, beta: np.ndarray, weight: np.ndarray, bias: np.ndarray):
    """(β', W') with ``W' (γ⊙n + β') = W (γ⊙n + β) + b`` for every ``n`` with ``Σn = 0``.

    With ``u = 1/γ``, ``u·(γ⊙n + β') = u·β'``. β is shifted by ``s γ`` (s = ±1) so that
    ``u·β' = u·β + s·d`` stays at least ``d`` (the width) away from zero; the shift's effect
    ``s W γ`` is taken back in the rank-one term."""
    g, be, w, b = (np.asarray(x, dtype=np.float64) for x in (gamma, beta, weight, bias))
    if np.min(np.abs(g)) < 1e-3:
        raise UnsupportedVariant("the output LayerNorm has a near-zero scale: its head bias cannot be folded for "
                                 "llama.cpp's gpt2")
    u = 1.0 / g
    s = 1.0 if float(u @ be) >= 0 else -1.0
    beta2 = be + s * g
    weight2 = w + np.outer(b - s * (w @ g), u) / float(u @ beta2)
    return beta2.astype(np.float32), weight2.astype(np.float32)


def _np(t) -> np.ndarray:
    return t.detach().cpu().float().numpy()


def _tiny_lm(module: Any) -> tuple[dict[str, np.ndarray], dict[str, Any], list[str]]:
    from engines.models import tiny_lm

    sd = {k: _np(v) for k, v in module.state_dict().items()}
    out = {"token_embd.weight": sd["tokens.weight"], "position_embd.weight": sd["positions.weight"]}
    names = {"ln1": "attn_norm", "qkv": "attn_qkv", "proj": "attn_output", "ln2": "ffn_norm", "fc1": "ffn_up",
             "fc2": "ffn_down"}
    for i in range(tiny_lm.LAYERS):
        for ours, theirs in names.items():
            for kind in ("weight", "bias"):
                out[f"blk.{i}.{theirs}.{kind}"] = sd[f"blocks.{i}.{ours}.{kind}"]
    beta, head = fold_bias(sd["ln.weight"], sd["ln.bias"], sd["head.weight"], sd["head.bias"])
    out.update({"output_norm.weight": sd["ln.weight"], "output_norm.bias": beta, "output.weight": head})
    meta = {"context_length": tiny_lm.CONTEXT, "embedding_length": tiny_lm.WIDTH,
            "feed_forward_length": tiny_lm.FF, "block_count": tiny_lm.LAYERS, "head_count": tiny_lm.HEADS,
            "layer_norm_eps": 1e-5, "kv_width": tiny_lm.WIDTH}
    vocab = {"model": "gpt2", "tokens": byte_tokens(), "merges": NO_MERGES}
    meta["vocab"] = vocab
    notes = [("tiny-lm written as llama.cpp's gpt2; its head bias folded into output.weight through the final "
              "LayerNorm (gpt2 in llama.cpp has no output bias)")]
    return out, meta, notes


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """Hugging Face's rotate-half row order → llama.cpp's interleaved pairs (convert_hf_to_gguf's permute)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _rope_theta(config: Any) -> tuple[float, str | None]:
    rope = getattr(config, "rope_parameters", None) or {}
    scaling = getattr(config, "rope_scaling", None) or {}
    kind = (rope.get("rope_type") if isinstance(rope, dict) else None) or scaling.get("rope_type") or "default"
    theta = (rope.get("rope_theta") if isinstance(rope, dict) else None) or getattr(config, "rope_theta", 10000.0)
    return float(theta), (None if kind == "default" else kind)


def _llama(module: Any) -> tuple[dict[str, np.ndarray], dict[str, Any], list[str]]:
    base = module.model
    c = base.config
    if getattr(c, "attention_bias", False) or getattr(c, "mlp_bias", False):
        raise UnsupportedVariant("this Llama has attention or MLP biases; qbench writes plain Llama GGUF files")
    theta, scaled = _rope_theta(c)
    if scaled:
        raise UnsupportedVariant(f"rope scaling {scaled!r} is not written to GGUF by qbench yet")
    heads, kv_heads = int(c.num_attention_heads), int(c.num_key_value_heads or c.num_attention_heads)
    head_dim = int(getattr(c, "head_dim", None) or c.hidden_size // heads)
    sd = {k: _np(v) for k, v in base.state_dict().items()}
    out = {"token_embd.weight": sd["model.embed_tokens.weight"], "output_norm.weight": sd["model.norm.weight"]}
    tied = bool(getattr(c, "tie_word_embeddings", False)) or "lm_head.weight" not in sd
    if not tied:
        out["output.weight"] = sd["lm_head.weight"]
    for i in range(int(c.num_hidden_layers)):
        p = f"model.layers.{i}."
        out.update({
            f"blk.{i}.attn_norm.weight": sd[p + "input_layernorm.weight"],
            f"blk.{i}.attn_q.weight": _permute(sd[p + "self_attn.q_proj.weight"], heads),
            f"blk.{i}.attn_k.weight": _permute(sd[p + "self_attn.k_proj.weight"], kv_heads),
            f"blk.{i}.attn_v.weight": sd[p + "self_attn.v_proj.weight"],
            f"blk.{i}.attn_output.weight": sd[p + "self_attn.o_proj.weight"],
            f"blk.{i}.ffn_norm.weight": sd[p + "post_attention_layernorm.weight"],
            f"blk.{i}.ffn_gate.weight": sd[p + "mlp.gate_proj.weight"],
            f"blk.{i}.ffn_up.weight": sd[p + "mlp.up_proj.weight"],
            f"blk.{i}.ffn_down.weight": sd[p + "mlp.down_proj.weight"],
        })
    meta = {"context_length": int(getattr(c, "max_position_embeddings", 2048)), "embedding_length": int(c.hidden_size),
            "feed_forward_length": int(c.intermediate_size), "block_count": int(c.num_hidden_layers),
            "head_count": heads, "head_count_kv": kv_heads, "rms_eps": float(c.rms_norm_eps), "rope_theta": theta,
            "rope_dims": head_dim, "head_dim": head_dim, "vocab_size": int(c.vocab_size),
            "kv_width": kv_heads * head_dim}
    tokens, note = _hf_tokens(module, int(c.vocab_size))
    meta["vocab"] = {"model": "gpt2", "tokens": tokens, "merges": NO_MERGES}
    return out, meta, [f"written as llama.cpp's llama ({'tied' if tied else 'separate'} output)", note]


def _hf_tokens(module: Any, vocab: int) -> tuple[list[str], str]:
    """The folder's tokens (for people reading the file); qbench feeds token ids, so text
    tokenization by llama.cpp of this file is not the model's own."""
    directory = getattr(getattr(module.model, "config", None), "_name_or_path", None)
    tokens: list[str] = []
    if directory and Path(directory).is_dir():
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(directory, local_files_only=True)
            tokens = [str(t) for t in tok.convert_ids_to_tokens(list(range(min(vocab, len(tok)))))]
        except Exception:  # noqa: BLE001 - no tokenizer in the folder: placeholders
            tokens = []
    seen: set[str] = set()
    out = []
    for i in range(vocab):
        t = tokens[i] if i < len(tokens) and tokens[i] else f"<|qbench_token_{i}|>"
        if t in seen:
            t = f"<|qbench_token_{i}|>"
        seen.add(t)
        out.append(t)
    what = "the folder's tokenizer tokens" if tokens else "placeholder tokens (the folder has no tokenizer)"
    return out, (f"GGUF vocabulary: {what}, without merges (qbench feeds token ids; llama.cpp's text tokenizer "
                 "is not the model's)")


def write_gguf(module: Any, path: Path, dtype: str = "f32", name: str = "qbench") -> tuple[dict[str, Any], list[str]]:
    """Write ``module`` as GGUF at ``path``; returns (facts, notes). ``dtype``: f32, f16, or q8_0 (every
    2-D weight matrix in Q8_0 with gguf's quantizer, the position table included; see the module)."""
    import gguf

    arch = family(module)
    if arch is None:
        raise UnsupportedVariant(refusal(module))
    tensors, meta, notes = _tiny_lm(module) if arch == "gpt2" else _llama(module)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_file_type({"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}.get(
        dtype, gguf.LlamaFileType.ALL_F32))
    writer.add_context_length(meta["context_length"])
    writer.add_embedding_length(meta["embedding_length"])
    writer.add_feed_forward_length(meta["feed_forward_length"])
    writer.add_block_count(meta["block_count"])
    writer.add_head_count(meta["head_count"])
    if arch == "gpt2":
        writer.add_layer_norm_eps(meta["layer_norm_eps"])
    else:
        writer.add_head_count_kv(meta["head_count_kv"])
        writer.add_layer_norm_rms_eps(meta["rms_eps"])
        writer.add_rope_freq_base(meta["rope_theta"])
        writer.add_rope_dimension_count(meta["rope_dims"])
        writer.add_key_length(meta["head_dim"])
        writer.add_value_length(meta["head_dim"])
        writer.add_vocab_size(meta["vocab_size"])
    vocab = meta["vocab"]
    writer.add_tokenizer_model(vocab["model"])
    writer.add_tokenizer_pre("default")
    writer.add_token_list(vocab["tokens"])
    writer.add_token_types([gguf.TokenType.NORMAL] * len(vocab["tokens"]))
    writer.add_token_merges(vocab["merges"])
    types: dict[str, str] = {}
    for tensor_name, array in tensors.items():
        matrix = array.ndim == 2 and tensor_name.endswith(".weight")
        if dtype == "q8_0" and matrix and array.shape[1] % 32 == 0:
            data = gguf.quants.quantize(np.ascontiguousarray(array, dtype=np.float32), gguf.GGMLQuantizationType.Q8_0)
            writer.add_tensor(tensor_name, data, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            types[tensor_name] = "Q8_0"
            continue
        half = dtype in ("f16", "q8_0") and matrix
        data = np.ascontiguousarray(array, dtype=np.float16 if half else np.float32)
        writer.add_tensor(tensor_name, data)
        types[tensor_name] = "F16" if half else "F32"
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    # the KV cache per position: keys and values of every block, llama.cpp's default F16 cache
    kv_bytes = 2 * meta["block_count"] * meta["kv_width"] * 2
    return {"gguf_arch": arch, "gguf_tensor_types": types, "context_length": meta["context_length"],
            "kv_bytes_per_token": kv_bytes}, notes


def quantize(source: Path, target: Path, ftype: str, threads: int = 1) -> None:
    """llama.cpp's own quantizer (``llama_model_quantize``): ``ftype`` is a LlamaFileType name
    (MOSTLY_F16, MOSTLY_Q8_0, MOSTLY_Q4_0, MOSTLY_Q4_K_M…)."""
    import ctypes

    import gguf
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(getattr(gguf.LlamaFileType, ftype))
    params.nthread = max(1, threads)
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if code != 0:
        raise RuntimeError(f"llama_model_quantize ({ftype}) returned {code}")


def tensor_types(path: Path) -> dict[str, str]:
    """Each tensor's GGML type as gguf.GGUFReader reads the file back."""
    import gguf

    return {t.name: t.tensor_type.name for t in gguf.GGUFReader(str(path)).tensors}


def set_metadata(path: Path, metadata: dict[str, str]) -> None:
    """Rewrite the GGUF file with string keys ``metadata`` added (replacing any of the same name);
    tensors are copied as stored (the approach of gguf-py's gguf_new_metadata script)."""
    import os

    import gguf

    reader = gguf.GGUFReader(str(path))
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    staging = path.with_name(".staging-" + path.name)
    writer = gguf.GGUFWriter(str(staging), arch, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF.") or field.name in metadata:
            continue
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
    for key, value in metadata.items():
        writer.add_string(key, str(value))
    for tensor in reader.tensors:
        writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes,
                               tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()
    del reader  # its memory map, before the file is replaced
    os.replace(staging, path)


def read_metadata(path: Path, prefix: str) -> dict[str, str]:
    import gguf

    reader = gguf.GGUFReader(str(path))
    return {f.name: str(f.contents()) for f in reader.fields.values() if f.name.startswith(prefix)}
