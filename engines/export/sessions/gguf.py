"""GGUF files through llama-cpp-python on the CPU, the runtime's own session (one thread)."""

from __future__ import annotations

from pathlib import Path

from engines.runtimes.base import Artifact, Session


def open_file(path: Path, model) -> Session:
    import gguf
    import llama_cpp

    from engines.runtimes.llamacpp.session import open_session

    reader = gguf.GGUFReader(str(path))
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    field = reader.get_field(f"{arch}.context_length")
    facts = {"context_length": int(field.contents()) if field else 512}
    del reader
    session = open_session(Artifact(path, facts=facts), model, "cpu", 1)
    session.info = {"llama_cpp_python": llama_cpp.__version__, "arch": arch}
    return session
