"""``ort-fuse``: ONNX Runtime's transformer optimizer as a pass (``fuse`` in a recipe).

``onnxruntime.transformers.optimizer.optimize_model`` applies ONNX Runtime's offline graph level
first, then its Python fusions (Attention, SkipLayerNormalization, EmbedLayerNormalization,
BiasGelu, …). The pass records what each fusion did: the operators it made and the nodes it
removed (it watches each fusion's ``apply``), so a result says which fusions applied; on a graph
where none applies (an MLP, a CNN) the variant says so and keeps the level-optimized graph.
Quantization passes chain after it: ``quantize_dynamic`` turns the fused Attention into QAttention.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from engines.methods.graph import FuseConfig, FuseModelType
from engines.passes import Format, PassContext, register_pass
from engines.runtimes.base import Artifact

FUSED_OPS = ("EmbedLayerNormalization", "Attention", "MultiHeadAttention", "Gelu", "FastGelu", "BiasGelu",
             "GemmFastGelu", "LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization",
             "SkipSimplifiedLayerNormalization", "RotaryEmbedding")


def transformer_shape(model: Any) -> tuple[str | None, int, int]:
    """(Hugging Face model type, attention heads, hidden size) of a loaded model: from the first
    submodule whose config says them, or from the ``config.json`` of the folder it came from (a model
    reopened from the ONNX export cache has no module); (None, 0, 0) lets the optimizer detect them
    from the graph."""
    import json

    module = getattr(model, "module", None)
    configs: list[Any] = [getattr(sub, "config", None) for sub in module.modules()] if hasattr(module, "modules") else []
    folder = (getattr(model, "details", None) or {}).get("directory")
    if folder and (Path(folder) / "config.json").is_file():
        try:
            configs.append(json.loads((Path(folder) / "config.json").read_text()))
        except (OSError, ValueError):
            pass
    for config in configs:
        get = config.get if isinstance(config, dict) else (lambda key, c=config: getattr(c, key, None))
        heads, hidden = get("num_attention_heads"), get("hidden_size")
        if isinstance(heads, int) and isinstance(hidden, int):
            return get("model_type"), heads, hidden
    return None, 0, 0


@contextlib.contextmanager
def _watch_fusions(log: list[dict[str, Any]]):
    """Record, for each fusion the optimizer applies, the operators it made and the nodes it removed."""
    base = sys.modules.get("fusion_base")  # the optimizer imports its modules by their bare names
    if base is None:
        yield
        return
    original = base.Fusion.apply

    def apply(self):
        before = len(self.model.nodes())
        original(self)
        made = {k: v for k, v in self.fused_count.items() if v} or \
            {self.fused_op_type: [n.op_type for n in self.nodes_to_add].count(self.fused_op_type)}
        made = {k: v for k, v in made.items() if v}
        if made:
            log.append({"fusion": self.description, "fused": made, "nodes_removed": before - len(self.model.nodes())})

    base.Fusion.apply = apply
    try:
        yield
    finally:
        base.Fusion.apply = original


def fuse_graph(source: Path, out: Path, config: FuseConfig, model: Any = None) -> dict[str, Any]:
    """Fuse ``source`` into ``out``; returns the record the result carries (``metrics["fusions"]``)."""
    import onnx
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    for name in ("onnxruntime.transformers", "fusion_base", "onnx_model", "fusion_utils", "onnx_model_bert"):
        logging.getLogger(name).setLevel(logging.ERROR)
    hf_type, heads, hidden = transformer_shape(model)
    model_type = config.model_type.value
    if config.model_type is FuseModelType.AUTO:
        model_type = hf_type if hf_type in optimizer.MODEL_TYPES else "bert"
    options = FusionOptions(model_type)
    options.enable_gelu_approximation = config.gelu_approximation
    nodes_before = len(onnx.load(str(source), load_external_data=False).graph.node)
    log: list[dict[str, Any]] = []
    with _watch_fusions(log):
        fused = optimizer.optimize_model(str(source), model_type=model_type, num_heads=heads, hidden_size=hidden,
                                         optimization_options=options, opt_level=config.opt_level)
    fused.save_model_to_file(str(out))
    counts = {k: v for k, v in fused.get_fused_operator_statistics().items() if v and k in FUSED_OPS}
    nodes_after = len(fused.nodes())
    by_fusions = sum(entry["nodes_removed"] for entry in log)
    return {"model_type": model_type, "opt_level": config.opt_level, "num_heads": heads, "hidden_size": hidden,
            "applied": log, "operators": counts, "nodes_before": nodes_before, "nodes_after": nodes_after,
            "nodes_removed_by_level": nodes_before - nodes_after - by_fusions}


def fusion_notes(record: dict[str, Any]) -> list[str]:
    level = f"ONNX Runtime level {record['opt_level']}" if record["opt_level"] else "no offline level"
    if not record["applied"]:
        return [(f"no transformer fusion applies to this graph ({record['model_type']} optimizer): "
                 f"{level} only, {record['nodes_before']} → {record['nodes_after']} nodes")]
    made = ", ".join(f"{e['fusion']}×{sum(e['fused'].values())} (−{e['nodes_removed']} nodes)"
                     for e in record["applied"])
    return [(f"fused ({record['model_type']} optimizer, {level}): {made}; "
             f"{record['nodes_before']} → {record['nodes_after']} nodes")]


@register_pass("ort-fuse", config=FuseConfig, input=Format.ONNX, output=Format.ONNX, runtimes=("onnxruntime",),
               unsupported={"ane": "the fused operators are ONNX Runtime contrib ops the Core ML provider "
                                   "does not take"})
def ort_fuse(ctx: PassContext, artifact: Artifact, config: FuseConfig) -> Artifact:
    """Fuse transformer subgraphs into ONNX Runtime contrib operators (onnxruntime.transformers.optimizer)."""
    from engines.passes.onnx_passes import count_ops

    out = ctx.workdir / "model.fused.onnx"
    record = fuse_graph(artifact.path, out, config, ctx.model)
    return Artifact(out, notes=fusion_notes(record), format=Format.ONNX.value,
                    facts={**artifact.facts, "ops": count_ops(out)}, metrics={**artifact.metrics, "fusions": record})
