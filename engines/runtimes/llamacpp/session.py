"""llama.cpp sessions (llama-cpp-python): logits for every position, a KV-cache decoder, and
llama-bench's figures.

``run`` evaluates each row of token ids from an empty cache and returns every position's
logits (what perplexity and KL need). The decoder and the llama-bench figures evaluate with
logits for the last position only, as llama.cpp applications and llama-bench do: ``pp`` times
a prompt of ``prompt_tokens`` in one batch, ``tg`` generates ``new_tokens`` one at a time from
an empty cache; each is repeated and reported as tokens/s mean ± sd (llama-bench's ``avg_ts``
and ``stddev_ts``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from engines.models.base import LoadedModel
from engines.runtimes.base import Artifact, Session, UnsupportedVariant

BENCH_REPEATS = 5  # llama-bench's default (-r 5)


class LlamaCppSession(Session):
    def __init__(self, llm: Any, facts: dict[str, Any]):
        import llama_cpp

        self._lib = llama_cpp
        self.llm = llm
        self._vocab = llm.n_vocab()
        self._facts = facts

    # --- every position's logits -------------------------------------------------------------

    def _row_logits(self, ids: np.ndarray) -> np.ndarray:
        llm = self.llm
        llm.reset()
        llm._logits_all = True
        llm.eval([int(i) for i in ids])
        return np.array(llm.scores[: len(ids)], dtype=np.float32)

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        ids = np.asarray(inputs["input_ids"])
        return np.stack([self._row_logits(row) for row in ids])

    def bind(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        rows = [[int(i) for i in row] for row in np.asarray(inputs["input_ids"])]
        llm = self.llm

        def call():
            for row in rows:
                llm.reset()
                llm._logits_all = True
                llm.eval(row)
            return llm.scores

        return call

    # --- last-position decoding --------------------------------------------------------------

    def eval_last(self, ids: list[int]) -> np.ndarray:
        """Evaluate ``ids`` after the cached positions; the last position's logits (vocab,)."""
        llm = self.llm
        llm._logits_all = False
        llm.eval(ids)
        ptr = self._lib.llama_get_logits_ith(llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self._vocab,)).copy()

    def kv_decoder(self) -> tuple[Any, str | None]:
        return LlamaCppDecoder(self), None

    def generation_figures(self, prompt_tokens: int, new_tokens: int) -> dict[str, Any]:
        """llama-bench's pp and tg tests: tokens/s mean and sd over :data:`BENCH_REPEATS` runs
        (after one warm-up), one sequence, on token ids spread over the vocabulary."""
        ids = [int(i) for i in np.random.default_rng(0).integers(0, self._vocab, size=max(prompt_tokens, new_tokens))]
        clock = time.perf_counter

        def pp() -> float:
            self.llm.reset()
            t0 = clock()
            self.eval_last(ids[:prompt_tokens])
            return prompt_tokens / (clock() - t0)

        def tg() -> float:
            self.llm.reset()
            t0 = clock()
            for token in ids[:new_tokens]:
                self.eval_last([token])
            return new_tokens / (clock() - t0)

        out: dict[str, Any] = {"pp_tokens": prompt_tokens, "tg_tokens": new_tokens, "bench_repeats": BENCH_REPEATS}
        for name, test in (("pp", pp), ("tg", tg)):
            test()  # warm-up
            rates = np.array([test() for _ in range(BENCH_REPEATS)])
            out[f"{name}_tokens_per_s"] = float(rates.mean())
            out[f"{name}_tokens_per_s_sd"] = float(rates.std(ddof=1))
        return out


class LlamaCppDecoder:
    """Greedy generation with llama.cpp's KV cache, one sequence (batch 1)."""

    def __init__(self, session: LlamaCppSession):
        self._s = session

    def start(self, prompt: np.ndarray) -> np.ndarray:
        if prompt.shape[0] != 1:
            raise UnsupportedVariant("qbench drives llama.cpp's cache for one sequence at a time (batch 1)")
        self._s.llm.reset()
        return self._s.eval_last([int(i) for i in prompt[0]])[None]

    def step(self, ids: np.ndarray) -> np.ndarray:
        return self._s.eval_last([int(ids[0, 0])])[None]

    def cache_bytes(self) -> int:
        """The cached positions' keys and values (llama.cpp's default F16 cache)."""
        f = self._s._facts
        return int(self._s.llm.n_tokens * f.get("kv_bytes_per_token", 0))


def open_session(artifact: Artifact, model: LoadedModel, device: str, threads: int, config: Any = None) -> Session:
    import llama_cpp

    if model.task != "causal-lm":
        raise UnsupportedVariant("llama.cpp runs causal language models")
    gpu_layers = 0
    if device == "gpu":
        if not llama_cpp.llama_supports_gpu_offload():
            raise UnsupportedVariant("this llama-cpp-python build has no GPU backend (Metal is built in on macOS)")
        gpu_layers = -1
    elif device != "cpu":
        raise UnsupportedVariant(f"llama.cpp runs on cpu or gpu (Metal), not {device}")
    facts = artifact.facts
    context = int(facts.get("context_length") or 512)
    seq = int(model.eval_inputs["input_ids"].shape[1])
    llm = llama_cpp.Llama(model_path=str(artifact.path), n_ctx=max(context, seq), n_batch=max(512, seq),
                          n_threads=threads, n_threads_batch=threads, n_gpu_layers=gpu_layers, logits_all=True,
                          verbose=False)
    return LlamaCppSession(llm, facts)


def runtime_info() -> dict[str, Any]:
    import llama_cpp

    return {"llama_cpp_python": llama_cpp.__version__, "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload()),
            "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip()[:300]}
