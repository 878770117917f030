"""Hugging Face–format directories loaded with transformers, strictly offline (child process).

Each task becomes one fp32 module that returns one tensor, so that every runtime and quantizer
sees the same graph:

* ``embedding``: encoder + the model's pooling (sentence-transformers ``1_Pooling``: mean, CLS
  or max; L2-normalised when the model has a ``Normalize`` module) -> (batch, dim). Evaluated on
  the 100 paraphrase sentences that ship with qbench.
* ``classification``: sequence-classification logits -> (batch, labels), on the same sentences.
* ``causal-lm``: next-token logits -> (batch, seq, vocab) without a KV cache, on windows of the
  held-out text; perplexity, KL to fp32 and generation speed come from :mod:`engines.evaluate`.

Inputs are padded or cut to ``seq_len`` tokens (default 128; the sweep's ``seq_len`` option).
A directory without a tokenizer gets generated token ids instead (said in ``details``).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from engines.models import ModelSpec
from engines.models.base import InputSpec, LoadedModel
from engines.models.corpus import calibration_sentences, lm_splits, sentence_pairs
from engines.models.hub import ModelFileError, hf_directory_spec

DEFAULT_SEQ = 128
LOGITS_BUDGET_BYTES = 96 * 2**20  # causal-LM held-out logits (kept twice: reference and variant)
MIN_LM_WINDOWS = 2
PROMPT_TOKENS, NEW_TOKENS = 32, 16


def _offline() -> None:
    # The runner sets these for children; a loader called from anywhere else must not reach out.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)


def model_dir(spec: ModelSpec) -> Path:
    directory = Path(spec.path or spec.extra.get("dir") or "")
    if not (directory / "config.json").exists():
        raise ModelFileError(f"{directory} has no config.json: not a Hugging Face model directory")
    return directory


def _pretrained_kwargs(spec: ModelSpec, directory: Path) -> dict[str, Any]:
    import torch

    kwargs: dict[str, Any] = {"local_files_only": True, "dtype": torch.float32,
                              # written-out attention: exports to plain MatMul/Softmax everywhere
                              "attn_implementation": "eager"}
    # never fall back to unpickling unless the weights are a pickle and the user allowed it
    kwargs["use_safetensors"] = not _needs_pickle(spec, directory)
    return kwargs


def _needs_pickle(spec: ModelSpec, directory: Path) -> bool:
    """True for pytorch_model.bin weights, which load only with the user's permission."""
    if not (spec.extra.get("needs_pickle") or (
        not any(directory.glob("*.safetensors")) and any(directory.glob("pytorch_model*.bin"))
    )):
        return False
    if not spec.extra.get("allow_pickle"):
        from engines.models.files import pickle_refusal

        raise pickle_refusal(f"{directory} (pytorch_model.bin)")
    return True


def _tokenizer(directory: Path):
    from transformers import AutoTokenizer

    from engines.models.hub import has_tokenizer_files

    if not has_tokenizer_files(directory):
        return None  # transformers would build an empty tokenizer that maps everything to <unk>
    try:
        return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    except Exception:  # noqa: BLE001 - a tokenizer class this install lacks: generated ids
        return None


def _max_positions(config: dict[str, Any]) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(config.get(key), int) and config[key] > 0:
            return int(config[key])
    return None


def _seq_len(spec: ModelSpec, config: dict[str, Any]) -> int:
    seq = int(spec.extra.get("seq_len") or DEFAULT_SEQ)
    limit = _max_positions(config)
    if limit is not None and seq > limit:
        raise ValueError(f"seq_len {seq} is longer than the model's {limit} positions")
    return seq


def _ensure_loaded_ok(directory: Path) -> None:
    """Truncated weights make transformers fail deep inside; say it plainly first."""
    from engines.models.hub import safetensors_header, weight_files

    for path in weight_files(directory)[0]:
        safetensors_header(path)


LOADER_VERSION = 1  # bump when what load() builds changes: cached ONNX exports are redone


def load(spec: ModelSpec) -> LoadedModel:
    """The model for one variant. ONNX Runtime variants get the cached fp32 ONNX export and
    data (no torch, no transformers in their process) once a first variant has made it."""
    directory = model_dir(spec)
    _ensure_loaded_ok(directory)
    _needs_pickle(spec, directory)  # refused here too, whoever started the job
    from engines.models import onnx_cache

    if not onnx_cache.wants_onnx(spec.extra):
        return _load_torch(spec, directory)
    from engines.models.hub import TOKENIZER_FILES, weight_files

    files = [*weight_files(directory)[0], *weight_files(directory)[1], directory / "config.json"]
    files += [directory / f for f in TOKENIZER_FILES if (directory / f).exists()]
    parts = {"loader": LOADER_VERSION, "dir": str(directory), "files": onnx_cache.file_stamp(files),
             "task": spec.task, "seq_len": spec.extra.get("seq_len"), "pooling": spec.extra.get("pooling")}
    if spec.extra.get("images"):  # image classifiers: the held-out set's size
        parts["images"] = spec.extra["images"]
    return onnx_cache.onnx_model(spec.name, parts, lambda: _load_torch(spec, directory))


# Architectures whose inputs are not token ids: the loader feeds text, so they would fail deep in
# their forward (a ViT: "'NoneType' object has no attribute 'dtype'").
_NOT_TEXT = {"ObjectDetection": "object detection",
             "SemanticSegmentation": "image segmentation", "AudioClassification": "audio classification",
             "CTC": "speech recognition", "SpeechSeq2Seq": "speech recognition", "Vision2Seq": "image-to-text",
             "ImageTextToText": "image-text-to-text"}
_NOT_TEXT_TYPES = {"vit": "image", "deit": "image", "beit": "image", "convnext": "image", "resnet": "image",
                   "swin": "image", "dinov2": "image", "clip": "image-text", "whisper": "speech", "wav2vec2": "speech"}


def _refuse_non_text(config: dict[str, Any], directory: Path) -> None:
    from engines.core.errors import ModelLoadError

    for arch in config.get("architectures") or []:
        for suffix, what in _NOT_TEXT.items():
            if arch.endswith(suffix):
                raise ModelLoadError(f"{directory.name}: {what} models ({arch}) are not supported by the HF "
                                     "loader yet; it loads text models (embeddings, classification, causal LMs) and image classifiers")
    kind = _NOT_TEXT_TYPES.get(str(config.get("model_type", "")).lower())
    if kind:
        raise ModelLoadError(f"{directory.name}: {kind} models (model_type {config['model_type']!r}) are not "
                             "supported by the HF loader yet; it loads text models and image classifiers "
                             "(…ForImageClassification)")


def _load_torch(spec: ModelSpec, directory: Path) -> LoadedModel:
    _offline()
    _quiet_transformers()
    config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    from engines.models import vision, vision_catalog

    if vision_catalog.is_image_classifier(config):  # pixels in, logits out: engines.models.vision
        return vision.load_hf_image(spec, directory, config, _pretrained_kwargs(spec, directory))
    _refuse_non_text(config, directory)
    task = spec.task
    if task not in ("embedding", "classification", "causal-lm"):
        task = hf_directory_spec(directory, check_weights=False).task
    seq = _seq_len(spec, config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if task == "causal-lm":
            return _load_causal_lm(spec, directory, config, seq)
        return _load_encoder(spec, directory, config, seq, task)


# --- encoders -----------------------------------------------------------------------------------


def _encoder_wrapper(base, input_names: list[str], pooling: dict[str, Any] | None):
    from engines.models.wrappers import FixedArity, with_arity

    class SentenceEmbedding(FixedArity):
        """Encoder + pooling (+ L2 normalisation): token ids -> one vector per row."""

        def __init__(self):
            super().__init__()
            self.encoder = base
            self.mode = (pooling or {}).get("mode", "mean")
            self.normalize = bool((pooling or {}).get("normalize", False))

        def call(self, *args):
            import torch

            kwargs = dict(zip(input_names, args))
            hidden = self.encoder(**kwargs).last_hidden_state
            mask = kwargs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            if self.mode == "cls":
                pooled = hidden[:, 0]
            elif self.mode == "max":
                pooled = (hidden + (mask - 1.0) * 1e9).max(dim=1).values
            else:
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            if self.normalize:
                # written out rather than F.normalize: ReduceL2's form changes across ONNX opsets
                pooled = pooled / torch.sqrt((pooled * pooled).sum(dim=-1, keepdim=True)).clamp(min=1e-12)
            return pooled

    class Logits(FixedArity):
        def __init__(self):
            super().__init__()
            self.model = base

        def call(self, *args):
            return self.model(**dict(zip(input_names, args))).logits

    return with_arity(SentenceEmbedding() if pooling is not None else Logits(), len(input_names))


def _encode_sentences(tokenizer, sentences: list[str], seq: int, names: list[str]) -> dict[str, np.ndarray]:
    enc = tokenizer(sentences, padding="max_length", truncation=True, max_length=seq, return_tensors="np")
    return {name: np.asarray(enc[name], dtype=np.int64) for name in names}


def _generated_token_rows(rows: int, seq: int, vocab: int, names: list[str], seed: int) -> dict[str, np.ndarray]:
    """Token ids for a directory without a tokenizer: random ids, rows of varying length."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(max(2, seq // 4), seq + 1, size=rows)
    ids = rng.integers(min(1000, vocab // 2), vocab, size=(rows, seq))
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    ids = np.where(mask == 1, ids, 0)
    out = {"input_ids": ids.astype(np.int64), "attention_mask": mask,
           "token_type_ids": np.zeros((rows, seq), dtype=np.int64)}
    return {name: out[name] for name in names}


def _load_encoder(spec: ModelSpec, directory: Path, config: dict[str, Any], seq: int,
                  task: str) -> LoadedModel:
    from transformers import AutoModel, AutoModelForSequenceClassification

    kwargs = _pretrained_kwargs(spec, directory)
    cls = AutoModelForSequenceClassification if task == "classification" else AutoModel
    base = cls.from_pretrained(str(directory), **kwargs).eval()
    if task == "embedding" and getattr(base, "pooler", None) is not None:
        # Sentence embeddings pool the last hidden state; BERT's own pooler (Linear + Tanh) would
        # be dead code that still costs time, and PT2E's quantizer trips over its unused output.
        base.pooler = None
    tokenizer = _tokenizer(directory)
    names = ["input_ids", "attention_mask"]
    accepts_types = tokenizer is None or "token_type_ids" in getattr(tokenizer, "model_input_names", [])
    if int(config.get("type_vocab_size") or 0) > 0 and accepts_types:
        names.append("token_type_ids")
    pairs = sentence_pairs()
    details: dict[str, Any] = {"seq_len": seq, "directory": str(directory), "model_type": config.get("model_type")}
    if tokenizer is not None:
        eval_inputs = _encode_sentences(tokenizer, list(pairs.sentences), seq, names)
        calibration = _encode_sentences(tokenizer, calibration_sentences(), seq, names)
        labels = np.asarray(pairs.partner) if task == "embedding" else None
        details["dataset"] = ("qbench's 50 paraphrase pairs (engines/models/data/sentence_pairs.tsv); "
                              "accuracy = paraphrase recall@1")
        details["tokens_per_row"] = float(eval_inputs["attention_mask"].sum(axis=1).mean())
    else:
        vocab = int(config.get("vocab_size") or 1000)
        eval_inputs = _generated_token_rows(len(pairs.sentences), seq, vocab, names, seed=0)
        calibration = _generated_token_rows(64, seq, vocab, names, seed=1)
        labels = None
        details["dataset"] = "generated token ids (the directory has no tokenizer)"
    pooling = spec.extra.get("pooling") or {"mode": "mean", "normalize": False}
    module = _encoder_wrapper(base, names, pooling if task == "embedding" else None).eval()
    return LoadedModel(
        name=spec.name, task=task, module=module,
        inputs=[InputSpec(n, ("batch", "seq"), "int64") for n in names],
        output_name="embedding" if task == "embedding" else "logits",
        eval_inputs=eval_inputs, eval_labels=labels, calibration_inputs=calibration,
        params=sum(p.numel() for p in base.parameters()), details=details,
    )


# --- causal language models -------------------------------------------------------------------


def _lm_wrapper(base):
    from engines.models.wrappers import FixedArity, with_arity

    class CausalLMLogits(FixedArity):
        """input_ids (batch, seq) -> logits (batch, seq, vocab); no KV cache."""

        def __init__(self):
            super().__init__()
            self.model = base

        def call(self, input_ids):
            import torch

            # An explicit all-ones mask: without one, transformers looks for packed sequences
            # with torch.diff, which the ONNX exporter cannot express.
            mask = torch.ones_like(input_ids)
            return self.model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits

        def decode_step(self, input_ids, past=None):
            """KV-cache generation with the model's own cache (engines.models.kv_cache): ``past``
            is one (keys, values) pair per layer, or None before the prompt."""
            import torch
            from transformers import DynamicCache

            cache = DynamicCache(ddp_cache_data=list(past)) if past else DynamicCache()
            offset = past[0][0].shape[2] if past else 0
            b, t = input_ids.shape
            mask = torch.ones((b, offset + t), dtype=torch.long, device=input_ids.device)
            positions = (torch.arange(t, device=input_ids.device) + offset).unsqueeze(0).expand(b, t)
            # transformers 5 names the argument and the output ``cache``; older ``past_key_values``
            key = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
            out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                             use_cache=True, **{key: cache})
            returned = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
            return out.logits, [(layer.keys, layer.values) for layer in returned.layers]

    return with_arity(CausalLMLogits(), 1)


def lm_windows(ids: np.ndarray, seq: int, max_windows: int) -> np.ndarray:
    count = min(max_windows, (len(ids) - 1) // seq)
    if count < 1:
        raise ValueError(f"the held-out text gives fewer than {seq + 1} tokens; use a smaller seq_len")
    return np.stack([ids[i * seq : i * seq + seq + 1] for i in range(count)])


def _load_causal_lm(spec: ModelSpec, directory: Path, config: dict[str, Any], seq: int) -> LoadedModel:
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(directory), **_pretrained_kwargs(spec, directory)).eval()
    vocab = int(base.config.vocab_size)
    tokenizer = _tokenizer(directory)
    # Logits are (windows, seq, vocab) floats, held for the reference and each variant.
    max_windows = max(MIN_LM_WINDOWS, LOGITS_BUDGET_BYTES // (seq * vocab * 4))
    train_text, held_out = lm_splits()
    details: dict[str, Any] = {"seq_len": seq, "directory": str(directory), "vocab_size": vocab,
                               "model_type": config.get("model_type")}
    if tokenizer is not None:
        test_ids = np.asarray(tokenizer(held_out)["input_ids"], dtype=np.int64)
        train_ids = np.asarray(tokenizer(train_text)["input_ids"], dtype=np.int64)
        details["dataset"] = "qbench's own prose (engines/models/data/tiny_lm_text.txt), held-out tail"
    else:
        rng = np.random.default_rng(0)
        test_ids = rng.integers(0, vocab, size=seq * 8 + 1)
        train_ids = rng.integers(0, vocab, size=seq * 16 + 1)
        details["dataset"] = "generated token ids (the directory has no tokenizer): perplexity is not meaningful"
    if len(test_ids) < seq + 1:  # a coarse tokenizer on short held-out text: shorten the windows
        seq = max(8, (len(test_ids) - 1) // MIN_LM_WINDOWS)
        details["seq_len"] = seq
    test = lm_windows(test_ids, seq, max_windows)
    calibration = lm_windows(train_ids, seq, 32)
    prompt = min(PROMPT_TOKENS, seq // 2)
    details.update({"held_out_windows": len(test), "held_out_tokens": int(test[:, 1:].size),
                    "prompt_tokens": prompt, "new_tokens": min(NEW_TOKENS, seq - prompt)})
    module = _lm_wrapper(base).eval()
    from engines.models.kv_cache import cache_layout

    layout = cache_layout(module)  # None: a model whose cache is not a plain (keys, values) per layer
    if layout is not None:
        details["kv_cache"] = {**layout, "max_positions": _max_positions(config)}
    return LoadedModel(
        name=spec.name, task="causal-lm", module=module,
        inputs=[InputSpec("input_ids", ("batch", "seq"), "int64")],
        output_name="logits", output_axes={0: "batch", 1: "seq"},
        eval_inputs={"input_ids": test[:, :-1]}, eval_labels=test[:, 1:],
        calibration_inputs={"input_ids": calibration[:, :-1]},
        params=sum(p.numel() for p in base.parameters()), details=details,
    )
