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

Where the smoothed tensor is read by its matmuls only and comes from a weight matmul through ops
that keep its channels (bias ``Add``, ``Reshape``, ``Transpose`` keeping the last axis, the
``probs @ V`` of attention), ``1/s`` goes into that matmul's weight columns and bias instead of a
``Mul`` (:func:`_column_source`): in a BERT layer the attention output projection's input is the
value projection's output, so 6 of MiniLM's 18 ``Mul`` nodes go; the value weights quantize per
output channel, so the column scale costs no precision. The folded graph is checked against the
source on a calibration batch and written with the ``Mul`` nodes instead if it differs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engines.passes.onnx_graph import graph_links


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


def _column_source(tensor: str, readers: list[Any], producer: dict, consumers: dict, inits: dict,
                   channels: int) -> tuple[Any, list[str]] | None:
    """The weight matmul whose output columns ``tensor``'s channels are, and the bias initializers on
    the way, when ``tensor`` is read by ``readers`` only and each tensor between them has one reader."""
    if {id(n) for n in consumers.get(tensor, [])} != {id(n) for n in readers}:
        return None
    biases, current = [], tensor
    for _ in range(16):
        node = producer.get(current)
        if node is None:
            return None
        if current != tensor and len(consumers.get(current, [])) != 1:
            return None
        op = node.op_type
        if op == "Reshape" or (op == "Transpose" and _keeps_last_axis(node)):
            current = node.input[0]
        elif op == "Add" and len(node.input) == 2 and sum(i in inits for i in node.input) == 1:
            bias = next(i for i in node.input if i in inits)
            if list(inits[bias].dims) != [channels] or inits[bias].data_type != 1:
                return None
            biases.append(bias)
            current = next(i for i in node.input if i not in inits)
        elif op == "MatMul" and node.input[0] not in inits and node.input[1] not in inits:
            current = node.input[1]  # probs @ V: V's channels are the output's
        elif op == "MatMul" and node.input[1] in inits:
            weight = inits[node.input[1]]
            used_once = len(consumers.get(node.input[1], [])) == 1
            if len(weight.dims) != 2 or weight.dims[1] != channels or weight.data_type != 1 or not used_once:
                return None
            return node, biases
        else:
            return None
    return None


def _keeps_last_axis(node) -> bool:
    perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [])
    return bool(perm) and perm[-1] == len(perm) - 1


def _same_outputs(a: Path, b: Path, batch: dict) -> bool:
    """Whether graphs ``a`` and ``b`` give the same outputs (float rounding aside) on ``batch``."""
    import numpy as np
    import onnxruntime as ort

    outs = []
    for path in (a, b):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        outs.append(session.run(None, {k: v for k, v in batch.items() if k in names}))
    return all(np.allclose(x, y, rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(x).max())))
               for x, y in zip(*outs))


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
                   skip: set[str] = frozenset(), fold: bool = True) -> dict[str, Any]:
    """Write the smoothed graph to ``out``; returns the record (tensors and matmuls smoothed, α, and
    how many ``1/s`` went into a preceding matmul's weights rather than a ``Mul``: ``folded``).

    ``skip``: matmul names to leave as they are (a tensor whose matmuls are all skipped is not smoothed).
    ``fold``: try :func:`_column_source`'s fold (the graph written is checked; a ``Mul`` where it differs)."""
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
    inits, producer, consumers = graph_links(graph)
    smoothed, matmuls, new_nodes, columns = 0, 0, [], []
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
        smoothed, matmuls = smoothed + 1, matmuls + len(nodes)
        source_matmul = _column_source(tensor, nodes, producer, consumers, inits, len(scale)) if fold else None
        if source_matmul is not None:
            columns.append((source_matmul, 1.0 / scale))
            continue
        base = tensor.strip("/").replace("/", "_") + "_smooth"
        graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), base + "_inv_scale"))
        new_nodes.append((nodes, helper.make_node("Mul", [tensor, base + "_inv_scale"], [base], name=base + "_Mul")))
        for node in nodes:
            node.input[0] = base
    for (matmul, biases), inv in columns:  # after every row scale: a weight may take both
        for name in [matmul.input[1], *biases]:
            value = numpy_helper.to_array(inits[name]).astype(np.float64) * inv
            inits[name].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
    for nodes, mul in new_nodes:  # each Mul just before the first of its matmuls (a topological order)
        index = min(list(graph.node).index(n) for n in nodes)
        graph.node.insert(index, mul)
    onnx.save(proto, str(out))
    if columns and batches and not _same_outputs(source, out, batches[0]):
        return smooth_matmuls(source, out, batches, alpha, skip, fold=False)
    return {"alpha": alpha, "tensors": smoothed, "matmuls": matmuls, "folded": len(columns)}
