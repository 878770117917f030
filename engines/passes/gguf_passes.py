"""GGUF passes for the llama.cpp runtime: qbench writes the file, llama.cpp quantizes it.

* ``export-gguf`` (a conversion): the torch weights as an F32 GGUF file (``gguf`` package).
* ``gguf-float16`` (fp16): the torch weights as an F16 GGUF file, 2-D weights in float16 and
  norms / biases in float32, as ``convert_hf_to_gguf.py --outtype f16`` writes them.
* ``gguf-q8-0`` (weight-int8): Q8_0 (blocks of 32 weights, one fp16 scale each) written with
  ``gguf.quants``, as ``convert_hf_to_gguf.py --outtype q8_0`` does, every 2-D matrix included.
* ``gguf-q4`` (int4): the usual workflow — qbench writes F16, llama.cpp's ``llama_model_quantize``
  makes the usual 4-bit type: Q4_K_M where every weight row is a multiple of 256 (its
  super-blocks), else Q4_0 (Q4_1 when asymmetric), blocks of 32.

llama.cpp picks some tensors' types itself (e.g. a higher-precision output matrix at 4 bits);
each artifact notes the types the file holds, read back with ``gguf.GGUFReader``. Heavy imports
happen inside the functions (the child process only).
"""

from __future__ import annotations

from collections import Counter

from engines.methods.floats import Fp16Config
from engines.methods.int4 import Int4Algorithm, Int4Config
from engines.methods.int8 import WeightInt8Config
from engines.passes import Format, PassContext, register_pass
from engines.runtimes.base import Artifact

_LLAMA = ("llama.cpp",)
GGUF_BLOCK = 32  # weights per scale in Q8_0, Q4_0, Q4_1
K_QUANT_ROW = 256  # K-quants' super-block: rows must be a multiple of it


def _write(ctx: PassContext, artifact: Artifact, dtype: str) -> Artifact:
    from engines.runtimes.llamacpp.gguf_write import write_gguf

    path = ctx.workdir / f"model-{dtype}.gguf"
    facts, notes = write_gguf(artifact.payload, path, dtype, name=ctx.model.name)
    return Artifact(path, notes=notes, format=Format.GGUF.value, facts=facts)


@register_pass("export-gguf", config=None, input=Format.TORCH, output=Format.GGUF, runtimes=_LLAMA)
def export_gguf(ctx: PassContext, artifact: Artifact, config: None) -> Artifact:
    """Write the torch weights as an F32 GGUF file (tiny-lm as gpt2, Hugging Face Llama as llama)."""
    return _write(ctx, artifact, "f32")


@register_pass("gguf-float16", config=Fp16Config, input=Format.TORCH, output=Format.GGUF, runtimes=_LLAMA)
def gguf_float16(ctx: PassContext, artifact: Artifact, config: Fp16Config) -> Artifact:
    """Write the torch weights as an F16 GGUF file (2-D weights float16, norms and biases float32)."""
    return _write(ctx, artifact, "f16")


def describe_types(types: dict[str, str]) -> str:
    counts = Counter(types.values())
    return "GGUF tensor types: " + ", ".join(f"{t} ×{n}" for t, n in counts.most_common())


def _quantized(ctx: PassContext, artifact: Artifact, ftype: str, notes: list[str]) -> Artifact:
    """The usual workflow: qbench writes F16 (convert_hf_to_gguf's output), llama.cpp quantizes it."""
    from engines.runtimes.llamacpp.gguf_write import quantize

    f16 = _write(ctx, artifact, "f16")
    path = ctx.workdir / f"model-{ftype.removeprefix('MOSTLY_').lower()}.gguf"
    quantize(f16.path, path, ftype, ctx.threads)
    f16.path.unlink()
    return _typed(path, {**f16.facts, "gguf_ftype": ftype},
                  [*f16.notes, f"llama.cpp's quantizer: {ftype.removeprefix('MOSTLY_')} (from the F16 file)", *notes])


def _typed(path, facts: dict, notes: list[str]) -> Artifact:
    from engines.runtimes.llamacpp.gguf_write import tensor_types

    types = tensor_types(path)
    out = Artifact(path, notes=[*notes, describe_types(types)], format=Format.GGUF.value,
                   facts={**facts, "gguf_tensor_types": types})
    out.metrics["gguf_quantized_tensors"] = sum(1 for t in types.values() if t not in ("F32", "F16", "BF16"))
    return out


def _block_note(asked: int, what: str) -> list[str]:
    if asked == GGUF_BLOCK:
        return []
    return [f"GGUF {what} uses blocks of {GGUF_BLOCK} weights; the setting of {asked} does not apply"]


@register_pass("gguf-q8-0", config=WeightInt8Config, input=Format.TORCH, output=Format.GGUF, runtimes=_LLAMA)
def gguf_q8_0(ctx: PassContext, artifact: Artifact, config: WeightInt8Config) -> Artifact:
    """Write Q8_0 with gguf's quantizer: 8-bit weights, one fp16 scale per 32 (symmetric)."""
    from engines.runtimes.llamacpp.gguf_write import write_gguf

    notes = _block_note(config.block_size, "Q8_0")
    if not config.symmetric:
        notes.append("Q8_0 is symmetric (no zero point): the asymmetric setting does not apply")
    path = ctx.workdir / "model-q8_0.gguf"
    facts, written = write_gguf(artifact.payload, path, "q8_0", name=ctx.model.name)
    return _typed(path, facts, [*written, "Q8_0 written by gguf's quantizer (every 2-D weight matrix)", *notes])


def _k_quant_rows(module) -> bool:
    """Every weight matrix's rows (its input width) are a whole number of K-quant super-blocks."""
    return all(p.shape[-1] % K_QUANT_ROW == 0 for name, p in module.named_parameters()
               if p.dim() == 2 and not name.endswith(("positions.weight", "position_embeddings.weight")))


@register_pass("gguf-q4", config=Int4Config, input=Format.TORCH, output=Format.GGUF, runtimes=_LLAMA,
               check=lambda c: None if c.algorithm == Int4Algorithm.RTN else
               "llama.cpp's 4-bit GGUF types are round-to-nearest (its imatrix is not wired in): choose rtn")
def gguf_q4(ctx: PassContext, artifact: Artifact, config: Int4Config) -> Artifact:
    """llama.cpp's quantizer to 4 bits: Q4_K_M where rows allow K-quants, else Q4_0 (Q4_1 asymmetric)."""
    if _k_quant_rows(artifact.payload):
        ftype = "MOSTLY_Q4_K_M"
        notes = ["Q4_K_M: super-blocks of 256, sub-blocks of 32 with 6-bit scales and minimums"]
    else:
        ftype = "MOSTLY_Q4_0" if config.symmetric else "MOSTLY_Q4_1"
        why = f"{ftype.removeprefix('MOSTLY_')}: some weight rows are not a multiple of {K_QUANT_ROW} (K-quants' super-block)"
        notes = [why, *_block_note(config.group_size, "4-bit")]
    if not config.quantize_embeddings:
        notes.append("llama.cpp's quantizer decides the token embedding's type itself: quantize_embeddings "
                     "does not apply")
    return _quantized(ctx, artifact, ftype, notes)
