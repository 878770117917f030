"""ONNX Runtime sessions: open an ONNX artifact on the CPU (or CUDA) execution provider."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engines.models.base import LoadedModel
from engines.runtimes.base import Artifact, Session, UnsupportedVariant
from engines.runtimes.ort import ExecutionMode, GraphLevel, NBitsCompute, OrtRuntimeConfig

_NP_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(bool)": np.bool_,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
}
_ACCURACY_LEVEL = {NBitsCompute.INT8: 4, NBitsCompute.FP32: 1}


_GRAPH_LEVELS = {GraphLevel.ALL: "ORT_ENABLE_ALL", GraphLevel.EXTENDED: "ORT_ENABLE_EXTENDED",
                 GraphLevel.BASIC: "ORT_ENABLE_BASIC", GraphLevel.DISABLED: "ORT_DISABLE_ALL"}


def session_options(ort: Any, threads: int, config: OrtRuntimeConfig | None = None) -> Any:
    """The SessionOptions of ``config``'s session settings (spinning, execution mode, graph level)."""
    config = config or OrtRuntimeConfig()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not config.spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if config.execution_mode is ExecutionMode.PARALLEL:
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        options.inter_op_num_threads = threads
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _GRAPH_LEVELS[config.graph_level])
    return options


class OnnxSession(Session):
    def __init__(self, source: Path | bytes, device: str, threads: int, cache_dir: Path | None = None,
                 config: OrtRuntimeConfig | None = None):
        import onnxruntime as ort

        from engines.runtimes.ort.providers import (
            COREML_UNITS,
            execution_providers,
            graph_inputs,
            onnxruntime_builds,
            provider_missing,
            providers_taken,
        )

        options = session_options(ort, threads, config)
        # ONNX Runtime's pool keeps spinning (its default): turning it off cost 1.6x at digits-mlp's
        # 0.1 ms on an idle machine (bench/harness_fidelity.py), while a busy neighbour slowed the
        # spinning pool by only ~5 % (bench/thread_pools.py); such runs are flagged under-load.
        if missing := provider_missing(device, ort.get_available_providers(), onnxruntime_builds()):
            raise UnsupportedVariant(missing)
        if device == "cuda" and hasattr(ort, "preload_dlls"):
            # The GPU build finds CUDA and cuDNN in the nvidia-* wheels torch brought (onnxruntime >= 1.21);
            # a chain from the fp32 ONNX cache never imported torch, which would have loaded them.
            ort.preload_dlls()
        providers = execution_providers(device, cache_dir, **(graph_inputs(source) if device in COREML_UNITS else {}))
        model = source if isinstance(source, bytes) else str(source)
        self._session = ort.InferenceSession(model, options, providers=providers)
        if fell_back := providers_taken(device, self._session.get_providers()):
            raise UnsupportedVariant(fell_back)
        self._device, self._threads = device, threads
        self._inputs = {i.name: _NP_TYPES.get(i.type, np.float32) for i in self._session.get_inputs()}
        self._output = self._session.get_outputs()[0].name
        self._model, self._providers, self._threads, self._cache_dir = model, providers, threads, cache_dir
        self._config = config

    def placement(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        """The share of nodes (and time) each execution provider took on ``inputs`` (one profiled run
        of a second session; engines.runtimes.ort.placement)."""
        import onnxruntime as ort

        from engines.runtimes.ort.placement import measure_placement

        options = session_options(ort, self._threads, self._config)
        return measure_placement(self._model, self._providers, self._feed(inputs), options)

    def _feed(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(inputs[name], dtype=dtype) for name, dtype in self._inputs.items()}

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        out = self._session.run([self._output], self._feed(inputs))[0]
        return np.asarray(out, dtype=np.float32)

    def bind(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        feed, names, run = self._feed(inputs), [self._output], self._session.run
        return lambda: run(names, feed)

    kv_graph: Path | None = None  # the decode-step graph with past keys / values, same passes
    kv_reason: str | None = "the variant has no decode-step graph"
    kv_layout: dict[str, int] | None = None
    _kv_session: OnnxSession | None = None
    _config: OrtRuntimeConfig | None = None

    def kv_decoder(self) -> tuple[Any, str | None]:
        if self.kv_graph is None or not self.kv_layout:
            return None, self.kv_reason
        if self._kv_session is None:
            self._kv_session = OnnxSession(self.kv_graph, self._device, self._threads, self._cache_dir, self._config)
        return OrtKvDecoder(self._kv_session._session, self.kv_layout), None


class OrtKvDecoder:
    """Greedy generation through the decode-step graph: the cache goes out as ``present_*`` and
    back in as ``past_*`` (empty, zero positions, for the prompt)."""

    def __init__(self, session, layout: dict[str, int]):
        self._session = session
        self._types = {i.name: _NP_TYPES.get(i.type, np.float32) for i in session.get_inputs()}
        self._past_names = [n for n in self._types if n.startswith("past_")]
        self._outputs = [o.name for o in session.get_outputs()]
        self._layout = layout
        self._past: list[np.ndarray] = []

    def _call(self, ids: np.ndarray) -> np.ndarray:
        feed = {"input_ids": np.ascontiguousarray(ids, dtype=self._types["input_ids"])}
        feed.update(zip(self._past_names, self._past))
        logits, *self._past = self._session.run(self._outputs, feed)
        return np.asarray(logits[:, -1], dtype=np.float32)

    def start(self, prompt: np.ndarray) -> np.ndarray:
        shape = (prompt.shape[0], self._layout["heads"], 0, self._layout["head_dim"])
        self._past = [np.zeros(shape, dtype=self._types[n]) for n in self._past_names]
        return self._call(prompt)

    def step(self, ids: np.ndarray) -> np.ndarray:
        return self._call(ids)

    def cache_bytes(self) -> int:
        return int(sum(t.nbytes for t in self._past))


def open_session(artifact: Artifact, model: LoadedModel, device: str, threads: int,
                 config: OrtRuntimeConfig | None = None) -> Session:
    config = config or OrtRuntimeConfig()
    graph = None
    if artifact.facts.get("ops", {}).get("MatMulNBits"):
        graph = _with_accuracy_level(artifact.path, _ACCURACY_LEVEL[config.nbits_compute])
    # The Core ML EP compiles its partitions when a session opens; the variant's work dir keeps them
    # for the placement session and any rerun (a graph passed as bytes has no path to key a cache on).
    cache_dir = artifact.path.parent / "coreml-cache" if device in ("gpu", "ane") and graph is None else None
    if cache_dir is not None:
        cache_dir.mkdir(exist_ok=True)
    session = OnnxSession(graph or artifact.path, device, threads, cache_dir, config)
    if changed := config.changed_fields():
        artifact.notes.append("session settings: " + ", ".join(f"{k}={v}" for k, v in changed.items()))
    if model.task == "causal-lm":
        kv_graph = artifact.facts.get("kv_graph")
        if kv_graph and artifact.facts.get("ops", {}).get("MatMulNBits"):
            kv_graph = _with_accuracy_level(Path(kv_graph), _ACCURACY_LEVEL[config.nbits_compute]) or kv_graph
        session.kv_graph = Path(kv_graph) if isinstance(kv_graph, str) else kv_graph
        session.kv_reason = artifact.facts.get("kv_reason") or session.kv_reason
        session.kv_layout = model.details.get("kv_cache")
    if device != "cpu":  # where providers share the graph, record who took what (the CPU takes all)

        placement = session.placement(model.example_inputs(1))
        artifact.facts.setdefault("metrics", {})["ort_placement"] = placement
        artifact.notes.extend(placement_notes(placement, artifact.facts.get("ops") or {}))
    return session


def placement_notes(placement: dict[str, Any], ops: dict[str, int]) -> list[str]:
    """The notes a result gets from its provider placement (and the graph's op counts)."""
    from engines.runtimes.ort.providers import COREML

    if COREML not in placement.get("providers_requested", []):
        shares = ", ".join(f"{p.removesuffix('ExecutionProvider')} {s:.0%}" for p, s in placement["node_share"].items())
        return [f"execution providers: {shares} of {sum(placement['nodes'].values())} nodes"]
    # Core ML compiles each partition it claims into one fused node: a node count would read as
    # "1 of 5", so the note says how many partitions it took and what share of the run's time they carried.
    nodes, time_share = placement["nodes"], placement.get("time_share", {})
    parts = [f"Core ML {nodes.get(COREML, 0)} compiled partition(s), {time_share.get(COREML, 0):.0%} of the run's time"]
    parts += [f"{p.removesuffix('ExecutionProvider')} {n} node(s), {time_share.get(p, 0):.0%}"
              for p, n in nodes.items() if p != COREML]
    notes = ["execution providers: " + "; ".join(parts)]
    if ops.get("QuantizeLinear") or ops.get("DequantizeLinear"):
        notes.append("QDQ int8 graphs mostly fall back to the CPU under the Core ML EP "
                     "(it takes few quantized operators): compare with the Core ML runtime's own int8")
    return notes


def _with_accuracy_level(path: Path, level: int) -> bytes | None:
    """The graph with every MatMulNBits at ``level``, or None when it already is (no copy)."""
    import onnx

    proto = onnx.load(str(path))
    changed = False
    for node in proto.graph.node:
        for attr in node.attribute if node.op_type == "MatMulNBits" else ():
            if attr.name == "accuracy_level" and attr.i != level:
                attr.i, changed = level, True
    return proto.SerializeToString() if changed else None


def runtime_info() -> dict[str, Any]:
    import onnxruntime as ort

    return {"onnxruntime": ort.__version__, "providers": ort.get_available_providers(),
            "intra_op_spinning": True}
