"""GGUF export: qbench writes F32 / F16 with gguf, llama.cpp's quantizer makes Q8_0 and the 4-bit
types; metadata as string keys in the file's key-value section; llama-cpp-python on the CPU."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from engines.export.build import source_file
from engines.export.targets.base import PREFIX, Exported
from engines.export.templates import copy_template
from engines.runtimes.base import Artifact, Session


def write(model, source: dict[str, Any], recipe, planned, target: Path, work: Path) -> Exported:
    """The GGUF file the result measured where it still exists, else the chain rebuilt."""
    from engines.passes.gguf_passes import describe_types
    from engines.runtimes.llamacpp.gguf_write import tensor_types

    path, passes, notes = source_file(source, recipe, model, planned, work, "llama.cpp", "llama.cpp")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    types = tensor_types(target)
    return Exported(target, passes, notes, {"gguf_tensor_types": types, "quantization": describe_types(types)})


def write_metadata(path: Path, metadata: dict[str, str]) -> None:
    from engines.runtimes.llamacpp.gguf_write import set_metadata

    set_metadata(path, metadata)


def read_metadata(path: Path) -> dict[str, str]:
    from engines.runtimes.llamacpp.gguf_write import read_metadata as read

    return read(path, PREFIX)


def open_file(path: Path, model) -> Session:
    """llama-cpp-python on the CPU, the runtime's own session (one thread)."""
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


def templates(deploy: Path, out_dir: Path, report: dict[str, Any], model) -> dict[str, dict[str, Any]]:
    runner = copy_template("run_gguf.py", deploy / "python" / "run_gguf.py")
    (deploy / "python" / "requirements.txt").write_text("llama-cpp-python>=0.3.16\nnumpy>=1.26\n")
    return {"python": {"path": runner.relative_to(out_dir),
                       "run": "pip install -r deploy/python/requirements.txt && python deploy/python/run_gguf.py"},
            "llama.cpp": {"path": report["file"],
                          "run": f"llama-bench -m {report['file']}   # llama.cpp's own tools read the same file"}}
