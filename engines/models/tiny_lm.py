"""``tiny-lm``: a small GPT-style decoder trained on text that ships with qbench.

Byte-level (vocabulary of 256, no tokenizer file), 3 pre-norm transformer blocks of width 96,
a context of 128 bytes: about 0.4 M parameters. It is trained once, for a fixed number of steps
with a fixed seed, on the training part of ``data/tiny_lm_text.txt`` (original prose written for
qbench, MIT-licensed with the project), and cached under ``$QBENCH_HOME/models/tiny-lm``. The
held-out tail of the same text gives perplexity and the KL divergence of every variant's
next-byte distributions to fp32.

The training is deliberately brief (200 steps, about a minute on 2 CPU cores): the model reaches
a held-out perplexity of about 10 per byte (uniform guessing would be 256), enough for the
quantized variants' perplexity and KL to be meaningful. More steps would buy a better model at
the price of a slower first run.

The attention is written out with plain ``Linear``/``matmul``/``softmax`` so that every
runtime sees ordinary MatMul weights: torchao quantizes the ``Linear`` layers, ONNX Runtime's
MatMulNBits and quantize_dynamic the exported MatMul nodes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path

import numpy as np

from engines.models import ModelSpec
from engines.models.base import InputSpec, LoadedModel, TrainingData
from engines.models.corpus import lm_splits, lm_text_fingerprint
from engines.paths import models_cache_dir

NAME = "tiny-lm"
RECIPE_VERSION = 2  # bump when the architecture or the training recipe changes
SEED = 0
VOCAB = 256
CONTEXT = 128
WIDTH, HEADS, LAYERS, FF = 96, 4, 3, 384
TRAIN_STEPS, TRAIN_BATCH, LEARNING_RATE = 200, 16, 3e-3
CALIBRATION_WINDOWS = 64
TRAINING_WINDOWS = 512  # random windows of the training text offered to fine-tuning methods (QAT)
PROMPT_TOKENS, NEW_TOKENS = 64, 32  # generation timing: prompt bytes, then bytes generated


def encode(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)


def decode(ids) -> str:
    return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


def _build():
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
            self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
            self.proj = nn.Linear(WIDTH, WIDTH)
            self.fc1, self.fc2 = nn.Linear(WIDTH, FF), nn.Linear(FF, WIDTH)
            self.act = nn.GELU()

        def forward(self, x, mask):
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(WIDTH, dim=-1)
            q, k, v = (z.reshape(b, t, HEADS, WIDTH // HEADS).transpose(1, 2) for z in (q, k, v))
            if self.training:  # the fused kernel: same maths, about twice as fast to train
                att = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            else:  # written out, so every exporter and quantizer sees plain MatMul/Softmax
                scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(WIDTH // HEADS))
                scores = scores.masked_fill(mask[:t, :t], float("-inf"))
                att = torch.matmul(torch.softmax(scores, dim=-1), v)
            x = x + self.proj(att.transpose(1, 2).reshape(b, t, WIDTH))
            return x + self.fc2(self.act(self.fc1(self.ln2(x))))

        def forward_cached(self, x, past_k, past_v):
            """The new positions attend to the cached ones and to each other (causally); returns
            the block's output and the keys / values extended by the new positions."""
            b, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(WIDTH, dim=-1)
            q, k, v = (z.reshape(b, t, HEADS, WIDTH // HEADS).transpose(1, 2) for z in (q, k, v))
            k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
            past = past_k.shape[2]
            scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(WIDTH // HEADS))
            # query i sits at position past + i: it may not see the keys after it
            keys = torch.arange(past + t, device=x.device)
            queries = torch.arange(t, device=x.device) + past
            scores = scores.masked_fill(keys[None, :] > queries[:, None], float("-inf"))
            att = torch.matmul(torch.softmax(scores, dim=-1), v)
            x = x + self.proj(att.transpose(1, 2).reshape(b, t, WIDTH))
            return x + self.fc2(self.act(self.fc1(self.ln2(x)))), k, v

    class TinyLM(nn.Module):
        """input_ids (batch, seq) int64 -> next-byte logits (batch, seq, 256)."""

        def __init__(self):
            super().__init__()
            self.tokens = nn.Embedding(VOCAB, WIDTH)
            self.positions = nn.Embedding(CONTEXT, WIDTH)
            self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
            self.ln = nn.LayerNorm(WIDTH)
            self.head = nn.Linear(WIDTH, VOCAB)
            upper = torch.triu(torch.ones(CONTEXT, CONTEXT, dtype=torch.bool), diagonal=1)
            self.register_buffer("causal_mask", upper, persistent=False)

        def forward(self, input_ids):
            t = input_ids.shape[1]
            positions = torch.arange(t, device=input_ids.device)
            x = self.tokens(input_ids) + self.positions(positions)
            for block in self.blocks:
                x = block(x, self.causal_mask)
            return self.head(self.ln(x))

        def decode_step(self, input_ids, past=None):
            """KV-cache generation: ``past`` is one (keys, values) pair per block, each (batch,
            heads, cached positions, head width), or None before the prompt. Returns the new
            positions' logits and the extended cache (engines.models.kv_cache)."""
            b, t = input_ids.shape
            if past is None:
                empty = torch.zeros(b, HEADS, 0, WIDTH // HEADS, dtype=self.ln.weight.dtype,
                                    device=input_ids.device)
                past = [(empty, empty) for _ in self.blocks]
            offset = past[0][0].shape[2]
            positions = torch.arange(t, device=input_ids.device) + offset
            x = self.tokens(input_ids) + self.positions(positions)
            present = []
            for block, (k, v) in zip(self.blocks, past):
                x, k, v = block.forward_cached(x, k, v)
                present.append((k, v))
            return self.head(self.ln(x)), present

    model = TinyLM()
    _init_weights(model)
    return model


def _init_weights(model) -> None:
    """GPT-2's initialisation (N(0, 0.02), residual projections scaled by depth): a short
    training run gets noticeably further from it than from PyTorch's defaults."""
    import torch

    for name, p in model.named_parameters():
        if p.dim() >= 2:
            std = 0.02 / math.sqrt(2 * LAYERS) if name.endswith(("proj.weight", "fc2.weight")) else 0.02
            torch.nn.init.normal_(p, 0.0, std)
        elif name.endswith("bias"):
            torch.nn.init.zeros_(p)


def _train():
    import torch

    torch.manual_seed(SEED)
    model = _build()
    train_text, _ = lm_splits()
    data = torch.from_numpy(encode(train_text))
    gen = torch.Generator().manual_seed(SEED)
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LEARNING_RATE, total_steps=TRAIN_STEPS,
                                                pct_start=0.1)
    model.train()
    for _ in range(TRAIN_STEPS):
        starts = torch.randint(0, len(data) - CONTEXT - 1, (TRAIN_BATCH,), generator=gen)
        batch = torch.stack([data[s : s + CONTEXT + 1] for s in starts.tolist()])
        logits = model(batch[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    return model.eval()


def recipe() -> dict:
    return {
        "recipe_version": RECIPE_VERSION, "seed": SEED, "steps": TRAIN_STEPS, "batch": TRAIN_BATCH,
        "lr": LEARNING_RATE, "shape": [VOCAB, CONTEXT, WIDTH, HEADS, LAYERS, FF],
        "text": lm_text_fingerprint(),
    }


@contextlib.contextmanager
def _exclusive(lock_path: Path):
    """One trainer at a time: concurrent children wait and then reuse the cached weights."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: the atomic rename below still keeps the file whole
        yield
        return
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cached_weights() -> Path:
    """Train once; later calls (and other child processes) load the cached file."""
    folder = models_cache_dir() / NAME
    folder.mkdir(parents=True, exist_ok=True)
    weights, meta = folder / "weights.pt", folder / "meta.json"
    expected = recipe()

    def fresh() -> bool:
        try:
            return weights.exists() and json.loads(meta.read_text())["recipe"] == expected
        except (OSError, ValueError, KeyError):
            return False  # missing or unreadable metadata: retrain

    if fresh():
        return weights
    with _exclusive(folder / ".lock"):
        if fresh():  # another process trained it while this one waited
            return weights
        import torch

        model = _train()
        tmp = weights.with_suffix(f".tmp{os.getpid()}")
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, weights)  # atomic: a reader never sees half a file
        meta_tmp = meta.with_suffix(f".tmp{os.getpid()}")
        meta_tmp.write_text(json.dumps({"recipe": expected, "model": NAME}, indent=2))
        os.replace(meta_tmp, meta)
    return weights


def windows(ids: np.ndarray, length: int, count: int | None = None, seed: int | None = None) -> np.ndarray:
    """Windows of ``length`` + 1 tokens: consecutive and non-overlapping, or ``count`` random ones."""
    if seed is None:
        n = (len(ids) - 1) // length
        return np.stack([ids[i * length : i * length + length + 1] for i in range(n)])
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(ids) - length - 1, size=count)
    return np.stack([ids[s : s + length + 1] for s in starts])


def load(spec: ModelSpec | str) -> LoadedModel:
    """The model for one variant; ONNX Runtime variants get the cached ONNX export (no torch)."""
    options = spec.extra if isinstance(spec, ModelSpec) else {}
    seq_len = int(options.get("seq_len") or CONTEXT)
    if not 8 <= seq_len <= CONTEXT:
        raise ValueError(f"tiny-lm has a context of {CONTEXT} bytes; seq_len must be 8..{CONTEXT}")
    from engines.models import onnx_cache

    if not onnx_cache.wants_onnx(options):
        return _load_torch(seq_len)
    weights = cached_weights()  # trains first if needed, so that the key sees the final file
    parts = {"recipe": recipe(), "weights": onnx_cache.file_stamp([weights]), "seq_len": seq_len}
    return onnx_cache.onnx_model(NAME, parts, lambda: _load_torch(seq_len))


def _load_torch(seq_len: int) -> LoadedModel:
    import torch

    model = _build()
    model.load_state_dict(torch.load(cached_weights(), weights_only=True))
    model.eval()
    train_text, held_out = lm_splits()
    test = windows(encode(held_out), seq_len)
    calibration = windows(encode(train_text), seq_len, CALIBRATION_WINDOWS, seed=SEED)
    training = windows(encode(train_text), seq_len, TRAINING_WINDOWS, seed=SEED + 1)
    return LoadedModel(
        name=NAME,
        task="causal-lm",
        module=model,
        inputs=[InputSpec("input_ids", ("batch", "seq"), "int64")],
        output_name="logits",
        output_axes={0: "batch", 1: "seq"},
        eval_inputs={"input_ids": test[:, :-1]},
        eval_labels=test[:, 1:],
        calibration_inputs={"input_ids": calibration[:, :-1]},
        calibration_labels=calibration[:, 1:],
        training_data=TrainingData({"input_ids": training[:, :-1]}, training[:, 1:]),
        params=sum(p.numel() for p in model.parameters()),
        details={
            "dataset": "qbench's own prose (engines/models/data/tiny_lm_text.txt), held-out tail",
            "tokenizer": "bytes (vocabulary 256)", "seq_len": seq_len, "held_out_windows": len(test),
            "held_out_tokens": int(test[:, 1:].size), "vocab_size": VOCAB,
            "prompt_tokens": min(PROMPT_TOKENS, seq_len // 2),
            "new_tokens": min(NEW_TOKENS, seq_len - min(PROMPT_TOKENS, seq_len // 2)),
            "kv_cache": {"layers": LAYERS, "heads": HEADS, "head_dim": WIDTH // HEADS, "max_positions": CONTEXT},
        },
    )
