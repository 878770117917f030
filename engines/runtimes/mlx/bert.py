"""BERT encoders in MLX: the sentence-embedding models (all-MiniLM-L6-v2 and the like).

mlx-lm has decoders only and no installed package has an MLX BERT, so this is a compact one:
embeddings + LayerNorm, then post-LN layers of self-attention (``mx.fast.scaled_dot_product_attention``
with the padding mask) and a GELU feed-forward. Its modules carry transformers' ``BertModel``
names, so the torch state dict loads by name with ``strict=True`` (a missing or extra weight is an
error, not a silent zero). The output is what engines.models.hf's ``SentenceEmbedding`` wrapper
returns: the same pooling (mean over the mask, CLS or max), L2-normalised when it is.

Heavy (imports mlx and torch); only the MLX passes import it, in the child process.
"""

from __future__ import annotations

from typing import Any

import mlx.core as mx
from mlx import nn

from engines.runtimes.base import UnsupportedVariant

_ACTIVATIONS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}


def matches(module: Any) -> bool:
    """The ``embedding`` wrapper of engines.models.hf (an encoder, a pooling mode)."""
    return hasattr(getattr(module, "encoder", None), "config") and hasattr(module, "mode")


class _Linear(nn.Module):
    """``dense`` + ``LayerNorm`` pairs keep transformers' nesting (``attention.output.dense``)."""

    def __init__(self, inputs: int, outputs: int, eps: float | None = None):
        super().__init__()
        self.dense = nn.Linear(inputs, outputs)
        if eps is not None:
            self.LayerNorm = nn.LayerNorm(outputs, eps=eps)


class _SelfAttention(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(width, width), nn.Linear(width, width), nn.Linear(width, width)


class _Attention(nn.Module):
    def __init__(self, width: int, eps: float):
        super().__init__()
        self.self = _SelfAttention(width)
        self.output = _Linear(width, width, eps)


class BertLayer(nn.Module):
    def __init__(self, width: int, heads: int, ff: int, eps: float, approx: str):
        super().__init__()
        self.heads = heads
        self.attention = _Attention(width, eps)
        self.intermediate = _Linear(width, ff)
        self.output = _Linear(ff, width, eps)
        self.act = nn.GELU(approx=approx)

    def __call__(self, x: mx.array, keep: mx.array) -> mx.array:
        b, t, width = x.shape
        h, d = self.heads, width // self.heads
        attn = self.attention.self
        q, k, v = (lin(x).reshape(b, t, h, d).transpose(0, 2, 1, 3) for lin in (attn.query, attn.key, attn.value))
        # keep: (batch, 1, 1, seq) booleans, False on padding (transformers adds the dtype's minimum there)
        ctx = mx.fast.scaled_dot_product_attention(q, k, v, scale=d**-0.5, mask=keep)
        ctx = ctx.transpose(0, 2, 1, 3).reshape(b, t, width)
        out = self.attention.output
        x = out.LayerNorm(out.dense(ctx) + x)  # post-LN, as BERT
        y = self.output.dense(self.act(self.intermediate.dense(x)))
        return self.output.LayerNorm(y + x)


class _Embeddings(nn.Module):
    def __init__(self, config: Any):
        super().__init__()
        width = config.hidden_size
        self.word_embeddings = nn.Embedding(config.vocab_size, width)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, width)
        self.token_type_embeddings = nn.Embedding(max(1, config.type_vocab_size), width)
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps)


class _Encoder(nn.Module):
    def __init__(self, config: Any, approx: str):
        super().__init__()
        self.layer = [BertLayer(config.hidden_size, config.num_attention_heads, config.intermediate_size,
                                config.layer_norm_eps, approx) for _ in range(config.num_hidden_layers)]


class BertSentenceEmbedding(nn.Module):
    """(input_ids, attention_mask[, token_type_ids]) -> pooled embedding (batch, hidden)."""

    def __init__(self, config: Any, mode: str, normalize: bool):
        super().__init__()
        self.embeddings = _Embeddings(config)
        self.encoder = _Encoder(config, _ACTIVATIONS[config.hidden_act])
        self.mode, self.normalize = mode, normalize

    def __call__(self, input_ids: mx.array, attention_mask: mx.array, token_type_ids: mx.array | None = None):
        emb = self.embeddings
        t = input_ids.shape[1]
        types = token_type_ids if token_type_ids is not None else mx.zeros_like(input_ids)
        x = emb.word_embeddings(input_ids) + emb.position_embeddings(mx.arange(t)) + emb.token_type_embeddings(types)
        x = emb.LayerNorm(x)
        keep = (attention_mask != 0)[:, None, None, :]
        for layer in self.encoder.layer:
            x = layer(x, keep)
        mask = attention_mask[..., None].astype(x.dtype)
        if self.mode == "cls":
            pooled = x[:, 0]
        elif self.mode == "max":
            pooled = mx.where(mask > 0, x, mx.array(-1e9, x.dtype)).max(axis=1)
        else:
            pooled = (x * mask).sum(axis=1) / mx.maximum(mask.sum(axis=1), 1e-9)
        if self.normalize:
            norm = mx.sqrt((pooled.astype(mx.float32) ** 2).sum(axis=-1, keepdims=True))
            pooled = (pooled / mx.maximum(norm, 1e-12)).astype(x.dtype)
        return pooled


def convert(module: Any) -> tuple[nn.Module, str]:
    encoder = module.encoder
    config = encoder.config
    if config.model_type != "bert":
        raise UnsupportedVariant(f"MLX conversion covers BERT encoders, not model_type {config.model_type!r}")
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        raise UnsupportedVariant(f"MLX BERT covers absolute positions, not {config.position_embedding_type!r}")
    if config.hidden_act not in _ACTIVATIONS:
        raise UnsupportedVariant(f"MLX BERT has no rule for the {config.hidden_act!r} activation")
    if module.mode not in ("mean", "cls", "max"):
        raise UnsupportedVariant(f"MLX BERT pools by mean, CLS or max, not {module.mode!r}")
    model = BertSentenceEmbedding(config, module.mode, bool(module.normalize))
    # index buffers (position_ids, token_type_ids) are not weights; the pooler is not used for embeddings
    weights = [(name, mx.array(t.detach().cpu().float().numpy())) for name, t in encoder.state_dict().items()
               if t.is_floating_point() and not name.startswith("pooler.")]
    model.load_weights(weights, strict=True)
    return model, f"BERT encoder, {module.mode} pooling"
