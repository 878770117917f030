"""llama.cpp (through llama-cpp-python): GGUF files that qbench writes from the torch weights.

The runtime Mac users already run LLMs with. qbench writes the model as a GGUF file with the
``gguf`` package (engines.runtimes.llamacpp.gguf_write: tiny-lm as llama.cpp's ``gpt2``
architecture, Hugging Face Llama folders as ``llama``), then lets llama.cpp's own quantizer
(``llama_model_quantize``) make the F16, Q8_0 and 4-bit files, and times them as llama-bench
does: prompt processing (pp) and text generation (tg) tokens/s, mean ± sd over repetitions.

Devices: ``cpu`` everywhere; ``gpu`` is Metal (macOS on Apple Silicon, where the llama-cpp-python
wheel builds with Metal by default): all layers are offloaded. The session imports llama_cpp in
the child only.
"""

from __future__ import annotations

import sys

from engines.core.formats import Format
from engines.runtimes import RuntimeSpec

NAME = "llama.cpp"


def _refusal(device: str) -> str | None:
    if device == "gpu" and sys.platform != "darwin":
        return "llama.cpp on the GPU means Metal here (macOS on Apple Silicon); this machine runs it on the CPU"
    return None


SPEC = RuntimeSpec(
    name=NAME, title="llama.cpp", formats=(Format.GGUF,), devices=("cpu", "gpu"), package="llama_cpp",
    session="engines.runtimes.llamacpp.session", extra="llamacpp",
    order=35, refusal=_refusal,
    tasks=("causal-lm",),
)
