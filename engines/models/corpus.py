"""Text that ships with qbench, for models that read text (light: no torch import).

Both files in ``engines/models/data/`` were written for qbench by its authors and are released
with the project under its MIT license:

* ``sentence_pairs.tsv``: 50 pairs of paraphrases on everyday topics. The embedding benchmark
  embeds all 100 sentences; each sentence's partner is the "right answer" of a small retrieval
  task, and the neighbour lists give the retrieval-agreement figures.
* ``tiny_lm_text.txt``: about 15 KB of original English prose in short sections. ``tiny-lm``
  trains on the first part; the last sections are held out for perplexity and KL.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data"
PAIRS_FILE = DATA_DIR / "sentence_pairs.tsv"
LM_TEXT_FILE = DATA_DIR / "tiny_lm_text.txt"
HELD_OUT_FRACTION = 0.15  # the tail of the LM text, cut at a paragraph boundary


@dataclass(frozen=True)
class SentencePairs:
    sentences: tuple[str, ...]  # pair i is sentences 2i and 2i+1
    topics: tuple[str, ...]  # one per sentence

    @property
    def partner(self) -> list[int]:
        """Index of each sentence's paraphrase."""
        return [i ^ 1 for i in range(len(self.sentences))]


@lru_cache(maxsize=1)
def sentence_pairs() -> SentencePairs:
    sentences: list[str] = []
    topics: list[str] = []
    for line in PAIRS_FILE.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        topic, first, second = line.split("\t")
        sentences += [first.strip(), second.strip()]
        topics += [topic, topic]
    return SentencePairs(tuple(sentences), tuple(topics))


@lru_cache(maxsize=1)
def lm_text() -> str:
    return LM_TEXT_FILE.read_text(encoding="utf-8")


def lm_splits() -> tuple[str, str]:
    """(train, held-out): the held-out part starts at the paragraph nearest to 85 % of the text."""
    text = lm_text()
    target = int(len(text) * (1 - HELD_OUT_FRACTION))
    cut = text.find("\n\n", target)
    if cut < 0:
        cut = target
    return text[:cut], text[cut:].lstrip("\n")


def calibration_sentences() -> list[str]:
    """Sentences from the training part of the LM text: calibration data for text encoders that
    is disjoint from the sentences they are evaluated on."""
    train, _ = lm_splits()
    parts = re.split(r"(?<=[.!?])\s+", " ".join(train.split()))
    return [p for p in parts if len(p.split()) >= 4]


def lm_text_fingerprint() -> str:
    """Changes whenever the LM text changes (a cached model trained on it then retrains)."""
    return hashlib.sha256(lm_text().encode("utf-8")).hexdigest()[:16]
