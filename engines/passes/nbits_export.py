"""Learnt integer weights (QAT) written into an ONNX graph as ``MatMulNBits`` nodes.

The QDQ form of the same weights (``onnx_passes.write_qdq_weights``: DequantizeLinear → MatMul)
is what ONNX Runtime's CPU provider runs as a dequantize on every call; ``MatMulNBits`` is the op
``int4`` and ``weight-int8`` use, with the same kernels (bench/qat_export.py compares the two).
"""

from __future__ import annotations

from pathlib import Path

from engines.passes.onnx_graph import gemm_to_matmul, replace_nodes

NBITS_BLOCKS = (256, 128, 64, 32, 16)  # MatMulNBits' block sizes: powers of two from 16


def _nbits_block(group: int, k: int) -> int | None:
    """The MatMulNBits block holding ``group``-sized scale groups exactly: the group itself where it
    is one of the op's sizes; for one scale per channel (group == K) any block repeating that scale."""
    if group in NBITS_BLOCKS:
        return group
    if group == k:
        return next((b for b in NBITS_BLOCKS if b <= k), None)
    return None


def write_matmul_nbits_weights(fp32: Path, out: Path, learnt: dict, accuracy_level: int = 4) -> list[str]:
    """Replace each learnt layer's MatMul by ``MatMulNBits`` holding the learnt integers and scales.

    ``learnt``: module name → {"q": int8 [out, in], "scale": [out, in/group], "group", "bits"}. The
    signed integers are stored with the op's implicit zero point (2^(bits-1)), so ``(u - zp) * scale``
    is exactly ``q * scale``, the weight the QAT model computed with; 2- and 3-bit weights are stored
    as 4-bit. Unlike a QDQ graph (DequantizeLinear → MatMul, which ONNX Runtime's CPU provider runs as
    a dequantize on every call) this is the op ``int4`` uses, with the same kernels."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    proto = onnx.load(str(fp32))
    gemm_to_matmul(proto)
    graph = proto.graph
    inits = {t.name: t for t in graph.initializer}
    nodes, done, skipped = [], set(), []
    for node in graph.node:
        layer = ".".join(node.name.strip("/").split("/")[:-1])
        entry = learnt.get(layer)
        if (node.op_type != "MatMul" or node.input[1] not in inits or entry is None or layer in done
                or tuple(inits[node.input[1]].dims) != entry["q"].T.shape):
            nodes.append(node)
            continue
        q, scale = entry["q"].astype(np.int32), entry["scale"].astype(np.float32)  # [N, K], [N, K/group]
        n, k = q.shape
        block = _nbits_block(int(entry["group"]), k)
        if block is None:
            skipped.append(layer)
            nodes.append(node)
            continue
        bits = 4 if entry["bits"] <= 4 else 8
        blocks = -(-k // block)
        scale = np.repeat(scale, entry["group"], axis=1)[:, ::block] if block != entry["group"] else scale
        unsigned = np.full((n, blocks * block), 2 ** (bits - 1), dtype=np.uint8)  # padding dequantizes to 0
        unsigned[:, :k] = (q + 2 ** (bits - 1)).astype(np.uint8)
        if bits == 4:
            unsigned = unsigned[:, 0::2] | (unsigned[:, 1::2] << 4)
        base = node.input[1] + "_nbits"
        graph.initializer.extend([
            numpy_helper.from_array(np.ascontiguousarray(unsigned.reshape(n, blocks, -1)), base + "_q"),
            numpy_helper.from_array(np.ascontiguousarray(scale.reshape(-1)), base + "_scale")])
        nodes.append(helper.make_node("MatMulNBits", [node.input[0], base + "_q", base + "_scale"], list(node.output),
                                      name=node.name + "_NBits", domain="com.microsoft", K=k, N=n, bits=bits,
                                      block_size=block, accuracy_level=accuracy_level))
        done.add(layer)
    if not any(o.domain == "com.microsoft" for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    replace_nodes(graph, nodes)
    onnx.save(proto, str(out))
    bits = sorted({v["bits"] for v in learnt.values()})
    notes = [f"MatMulNBits export: {len(done)} MatMul nodes hold the learnt {'/'.join(map(str, bits))}-bit integers "
             f"and scales (accuracy level {accuracy_level})"]
    missing = sorted(set(learnt) - done)
    if missing:
        notes.append(f"{len(missing)} learnt layers stay float (not in the graph, or a group MatMulNBits cannot "
                     f"hold): {', '.join(missing[:4])}")
    return notes
