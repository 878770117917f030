"""SmoothQuant for ONNX graphs: move the activation outliers of each weight matmul into its weight.

Xiao et al. (SmoothQuant, 2023): a transformer's activations have a few channels far larger than the
rest, so one per-tensor int8 scale rounds the rest away, while its weights are flat. Per input
channel ``k`` of a matmul ``X·W``, ``s_k = max|X_k|^α / max|W_k|^(1-α)`` and ``(X / s)·(s W)`` is the
same product with the outliers shared between both operands. The paper (and the implementation
ONNX Runtime's quantizer calls, Intel Neural Compressor 2.x ``ORTSmoothQuant``, which the version
here does not ship: 3.x dropped its ONNX adaptor) folds ``1/s`` into the preceding LayerNorm; in a
post-LayerNorm encoder (BERT, MiniLM) that LayerNorm's output also feeds the residual, so here a
``Mul`` by ``1/s`` is inserted on the branch to the matmuls only (one per smoothed tensor: an
element-wise op on a [tokens, hidden] tensor beside [hidden, hidden] matmuls) and ``s`` is folded
into the weights, which then quantize per channel as before. The channel ranges come from running
the float graph on the calibration batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _weight_matmuls(graph) -> dict[str, list[Any]]:
    """Activation tensor → the MatMul nodes that multiply it by a 2-D float initializer used once."""
    inits = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    groups: dict[str, list[Any]] = {}
    for node in graph.node:
        if node.op_type != "MatMul" or len(node.input) != 2 or node.input[0] in inits:
            continue
        weight = inits.get(node.input[1])
        if weight is None or len(weight.dims) != 2 or weight.data_type != 1 or uses[node.input[1]] != 1:
            continue
        groups.setdefault(node.input[0], []).append(node)
    return groups


def channel_ranges(path: Path, tensors: list[str], batches: list[dict]) -> dict[str, Any]:
    """Per last-axis channel max |value| of ``tensors`` over the calibration batches (float graph)."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    proto = onnx.load(str(path))
    present = {o.name for o in proto.graph.output}
    for name in tensors:
        if name not in present:
            proto.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    inputs = {i.name for i in session.get_inputs()}
    ranges: dict[str, Any] = {}
    for batch in batches:
        values = session.run(tensors, {k: v for k, v in batch.items() if k in inputs})
        for name, value in zip(tensors, values):
            amax = np.abs(value.reshape(-1, value.shape[-1])).max(axis=0)
            ranges[name] = amax if name not in ranges else np.maximum(ranges[name], amax)
    return ranges


def smooth_matmuls(source: Path, out: Path, batches: list[dict], alpha: float,
                   skip: set[str] = frozenset()) -> dict[str, Any]:
    """Write the smoothed graph to ``out``; returns the record (tensors and matmuls smoothed, α).

    ``skip``: matmul names to leave as they are (a tensor whose matmuls are all skipped is not smoothed)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    if not 0.0 <= alpha <= 1.0:
        raise ValueError("SmoothQuant alpha must be between 0 and 1")
    proto = onnx.load(str(source))
    graph = proto.graph
    groups = {t: [n for n in nodes if n.name not in skip] for t, nodes in _weight_matmuls(graph).items()}
    groups = {t: nodes for t, nodes in groups.items() if nodes}
    ranges = channel_ranges(source, sorted(groups), batches) if groups else {}
    inits = {t.name: t for t in graph.initializer}
    smoothed, new_nodes = 0, []
    for tensor, nodes in groups.items():
        x_max = ranges[tensor].astype(np.float64)
        weights = [numpy_helper.to_array(inits[n.input[1]]).astype(np.float64) for n in nodes]
        if any(w.shape[0] != len(x_max) for w in weights):
            continue
        w_max = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        scale = np.power(np.maximum(x_max, 1e-5), alpha) / np.power(np.maximum(w_max, 1e-5), 1 - alpha)
        scale = np.where((x_max > 0) & (w_max > 0), scale, 1.0)
        scale = np.clip(scale, 1e-5, None)
        for node, w in zip(nodes, weights):
            inits[node.input[1]].CopyFrom(numpy_helper.from_array((w * scale[:, None]).astype(np.float32),
                                                                  node.input[1]))
        base = tensor.strip("/").replace("/", "_") + "_smooth"
        graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), base + "_inv_scale"))
        new_nodes.append((nodes, helper.make_node("Mul", [tensor, base + "_inv_scale"], [base], name=base + "_Mul")))
        for node in nodes:
            node.input[0] = base
        smoothed += 1
    for nodes, mul in new_nodes:  # each Mul just before the first of its matmuls (a topological order)
        index = min(list(graph.node).index(n) for n in nodes)
        graph.node.insert(index, mul)
    onnx.save(proto, str(out))
    return {"alpha": alpha, "tensors": smoothed, "matmuls": sum(len(n) for n, _ in new_nodes)}
