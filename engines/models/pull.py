"""Download a model from the Hugging Face Hub into the user's HF cache (``qbench pull ORG/NAME``).

``huggingface_hub.snapshot_download`` fetches only what qbench loads (configs, safetensors
weights, tokenizer and preprocessor files, a sentence-transformers pooling folder) into the
standard cache (``HF_HUB_CACHE``, ``HF_HOME/hub`` or ``~/.cache/huggingface/hub``), where
:func:`engines.models.hub.scan_hf_cache` lists it as ``ORG/NAME`` for ``qbench models`` and the
app. Without a network (or with ``HF_HUB_OFFLINE=1``) a model already cached is found there;
one that is not is a :class:`PullOffline` whose message lists what is cached.

Run as ``python -m engines.models.pull ORG/NAME`` it prints one JSON event per line (``progress``
with bytes done / total, then ``done`` or ``error``): the app's pull action runs it so, in a
child process, and the UI never imports huggingface_hub.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# What qbench's loaders read; other weight formats (pickles, TF, Flax, ONNX copies) are skipped.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "1_Pooling/*"]
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class PullError(Exception):
    """A pull that cannot be done; the message is one line for the user."""


class PullUsageError(PullError):
    """Bad input: a malformed name, or no such model on the Hub."""


class PullOffline(PullError):
    """The Hub cannot be reached and the model is not cached."""


@dataclass
class PullResult:
    repo_id: str
    path: str
    files: int
    size_mb: float
    cached: bool  # True: found in the cache without downloading (offline, or already complete)
    family: str | None = None
    task: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_repo_id(repo_id: str) -> str:
    if not REPO_ID.match(repo_id or "") or "--" in repo_id or ".." in repo_id:
        raise PullUsageError(f"{repo_id!r} is not a Hub model name: use ORG/NAME (e.g. google/vit-base-patch16-224)")
    return repo_id


def cached_names() -> list[str]:
    from engines.models.hub import scan_hf_cache

    return [spec.name for spec in scan_hf_cache()]


def offline_message(repo_id: str, cause: str) -> str:
    from engines.models.hub import hf_cache_dir

    names = cached_names()
    listed = ", ".join(names) if names else "none"
    return (f"offline: cannot reach the Hugging Face Hub to download {repo_id} ({cause}); "
            f"cached in {hf_cache_dir()}: {listed}")


def pull(repo_id: str, revision: str | None = None,
         on_progress: Callable[[int, int, str], None] | None = None) -> PullResult:
    """Download ``repo_id`` (or find it in the cache); ``on_progress(done, total, what)`` in bytes."""
    check_repo_id(repo_id)
    import huggingface_hub
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from engines.models.hub import ModelFileError, hf_cache_dir, hf_directory_spec

    tqdm_class = _progress_class(on_progress) if on_progress else None
    offline = bool(constants.HF_HUB_OFFLINE)
    before = _snapshot_files(repo_id)
    try:
        path = snapshot_download(repo_id, revision=revision, cache_dir=str(hf_cache_dir()),
                                 allow_patterns=ALLOW_PATTERNS, tqdm_class=tqdm_class)
    except GatedRepoError:
        raise PullUsageError(f"{repo_id} is gated: accept its licence on huggingface.co and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise PullUsageError(f"{repo_id}: no such model on the Hugging Face Hub (or it is private: set HF_TOKEN)") \
            from None
    except RevisionNotFoundError:
        raise PullUsageError(f"{repo_id} has no revision {revision!r}") from None
    except LocalEntryNotFoundError:
        cause = "HF_HUB_OFFLINE is set" if offline else "no network"
        raise PullOffline(offline_message(repo_id, cause)) from None
    except (OSError, huggingface_hub.errors.HfHubHTTPError) as exc:
        raise PullError(f"{repo_id}: the download failed: {str(exc).splitlines()[0][:200]}") from None
    folder = Path(path)
    files = [p for p in folder.rglob("*") if p.is_file()]
    result = PullResult(repo_id, str(folder), len(files), sum(p.stat().st_size for p in files) / 2**20,
                        cached=offline or before == {p.name for p in files})
    try:
        spec = hf_directory_spec(folder, name=repo_id, source="hf-cache")
        result.family, result.task = spec.family, spec.task
    except ModelFileError as exc:
        raise PullError(f"{repo_id} was downloaded to {folder} but qbench cannot load it: {exc}") from None
    return result


def _snapshot_files(repo_id: str) -> set[str]:
    from engines.models.hub import hf_cache_dir, snapshot_dir

    snapshot = snapshot_dir(hf_cache_dir() / ("models--" + repo_id.replace("/", "--")))
    return {p.name for p in snapshot.rglob("*") if p.is_file()} if snapshot else set()


def _progress_class(on_progress: Callable[[int, int, str], None]):
    """A tqdm class that reports the bytes of the whole download to ``on_progress``."""
    from tqdm.auto import tqdm

    class Progress(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True  # no terminal bar of its own: the caller shows progress
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            super().update(n)
            if self.unit == "B" or self.total:
                on_progress(int(self.n), int(self.total or 0), str(self.desc or ""))

    return Progress


def main(argv: list[str] | None = None) -> int:
    """``python -m engines.models.pull ORG/NAME``: JSON events on stdout, one per line."""
    argv = sys.argv[1:] if argv is None else argv

    def emit(event: str, **data: Any) -> None:
        sys.stdout.write(json.dumps({"event": event, **data}) + "\n")
        sys.stdout.flush()

    if len(argv) != 1:
        emit("error", kind="usage", message="usage: python -m engines.models.pull ORG/NAME")
        return 2
    try:
        result = pull(argv[0], on_progress=lambda done, total, what: emit("progress", done=done, total=total,
                                                                          what=what))
    except PullUsageError as exc:
        emit("error", kind="usage", message=str(exc))
        return 2
    except PullOffline as exc:
        emit("error", kind="offline", message=str(exc))
        return 1
    except PullError as exc:
        emit("error", kind="failed", message=str(exc))
        return 1
    emit("done", **result.to_dict())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
