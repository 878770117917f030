"""The contract of an export target, a leaf: it imports nothing else from qbench.

A target is one folder under ``engines/export/targets/`` (or a plugin module) holding:

* a light ``SPEC`` (:class:`ExportTarget`): the facts the app and the CLI read (its name, title,
  file name, the runtime whose passes build it, the packages and extra it needs);
* a heavy module named by ``SPEC.module`` with the five functions of :data:`REQUIRED`:
  ``write(model, source, recipe, planned, target, work) -> Exported`` builds the file,
  ``write_metadata(path, metadata)`` / ``read_metadata(path) -> dict`` keep the ``qbench.*``
  metadata inside it, ``open_file(path, model) -> Session`` opens it as a deployment would (for
  validation), ``templates(deploy, out_dir, report, model) -> {name: {"path", "run"}}`` writes
  ``deploy/``. Heavy libraries are imported inside those functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUIRED = ("write", "write_metadata", "read_metadata", "open_file", "templates")
PREFIX = "qbench."  # every metadata key a target keeps inside its file


class ExportError(Exception):
    """The export cannot be done as asked (bad id, unknown format, missing extra, a quantization the
    format cannot express): one line that says why and what to do instead."""


@dataclass(frozen=True)
class ExportTarget:
    """A target format: where its file goes, which runtime plans its passes and validates it."""

    name: str
    title: str
    filename: str  # the model's name inside out_dir
    runtime: str  # the runtime whose passes build it (its name in results)
    packages: tuple[str, ...]  # import names needed to write it
    extra: str  # `uv sync --extra …` that brings them
    validates_with: str  # the runtime that loads the file for validation (in words)
    module: str  # the heavy module with the functions of REQUIRED
    quick_start: str = ""  # shell lines for deploy/README.md
    # A planning runtime of its own when `runtime` is not a registered (benchmarked) one; called lazily.
    planning_runtime: Callable[[], Any] | None = field(default=None, compare=False)
    recommends_device: bool = False  # the report names the measured best device (Core ML's compute units)
    order: int = 100  # position in listings


@dataclass
class Exported:
    """What a target's writer produced: the file in out_dir and what it learnt on the way."""

    path: Path
    passes: list[str]
    notes: list[str] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)
