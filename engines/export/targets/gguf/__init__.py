"""GGUF (llama.cpp): the file llama.cpp measured (or the chain rebuilt), validated by llama-cpp-python."""

from __future__ import annotations

from engines.export.targets.base import ExportTarget

SPEC = ExportTarget(
    name="gguf", title="GGUF (llama.cpp)", filename="model.gguf", runtime="llama.cpp", packages=("gguf", "llama_cpp"),
    extra="llamacpp", validates_with="llama.cpp (llama-cpp-python)", module="engines.export.targets.gguf.target",
    order=50,
    quick_start=("pip install -r deploy/python/requirements.txt   # or: uv sync --extra llamacpp\n"
                 "python deploy/python/run_gguf.py                # runs deploy/example_request.json"),
)
