"""ONNX files through ONNX Runtime (CPU execution provider, one thread)."""

from __future__ import annotations

from pathlib import Path

from engines.runtimes.base import Session


def open_file(path: Path, model) -> Session:
    from engines.runtimes.ort.session import OnnxSession, runtime_info

    session = OnnxSession(path, "cpu", threads=1)
    session.info = runtime_info()
    return session
