"""Rewrites of an ONNX graph that several passes share (no pass is registered here), so that the
passes built on them import this module instead of each other. onnx and numpy are imported inside
the functions.
"""

from __future__ import annotations


def gemm_to_matmul(model_proto) -> int:
    """Rewrite ``Gemm(A, W, b)`` with constant weights as ``MatMul`` + ``Add``, in place.

    Exporters emit Gemm for linear layers, but ONNX Runtime's block-wise quantizer
    (MatMulNBits) only quantizes MatMul nodes. Returns the number of nodes rewritten.
    """
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    graph = model_proto.graph
    inits = {t.name: t for t in graph.initializer}
    new_nodes, rewritten = [], 0
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if (
            node.op_type != "Gemm" or node.input[1] not in inits or attrs.get("transA", 0)
            or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0
        ):
            new_nodes.append(node)
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            weight = weight.T
        w_name = node.input[1] + "_matmul"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight), w_name))
        has_bias = len(node.input) > 2 and node.input[2]
        mm_out = node.output[0] + "_mm" if has_bias else node.output[0]
        new_nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [mm_out], name=node.name + "_mm"))
        if has_bias:
            new_nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]], name=node.name + "_add"))
        rewritten += 1
    if rewritten:
        replace_nodes(graph, new_nodes)
        onnx.checker.check_model(model_proto)
    return rewritten


def replace_nodes(graph, nodes: list) -> None:
    """Give ``graph`` these nodes, keeping only the initializers they still read."""
    used = {i for node in nodes for i in node.input}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(keep)


def graph_links(graph) -> tuple[dict, dict, dict]:
    """``graph``'s initializers by name, each tensor's producing node, and each tensor's consuming
    nodes (in graph order): what a rewrite that matches a node's neighbours reads first."""
    inits = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return inits, producer, consumers
