"""ONNX Runtime static int8's convolution bias correction, on a small real depthwise conv graph."""

import numpy as np

from engines.passes.onnx_bias_correction import correct_conv_biases
from engines.passes.onnx_passes import _CalibrationReader
from tests.helpers import lazy_module

# ONNX and ONNX Runtime are imported on first use, not at collection (every xdist worker collects).
onnx, ort, ortq = lazy_module("onnx"), lazy_module("onnxruntime"), lazy_module("onnxruntime.quantization")
helper, numpy_helper = lazy_module("onnx.helper"), lazy_module("onnx.numpy_helper")


def _depthwise(path, seed=0):
    """A 3x3 depthwise conv (stride 2, padded) whose filters have one or two large taps, as after
    BN folding: int8 rounding shifts each filter's sum, hence its answer to flat inputs."""
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.05, (16, 1, 3, 3)).astype(np.float32)
    w[:, 0, 1, 1] = rng.uniform(5, 15, 16)
    w[:, 0, 0, 1] = -w[:, 0, 1, 1] + rng.normal(0, 0.05, 16)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="dw", group=16, pads=[1, 1, 1, 1], strides=[2, 2])],
        "dw", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 16, 12, 12])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(16, np.float32), "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def _mean_error(float_path, quant_path, x):
    run = lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    return np.abs((run(quant_path) - run(float_path)).mean(axis=(0, 2, 3))).mean()


def test_bias_correction_removes_the_mean_error_of_int8_weights(tmp_path):
    _depthwise(tmp_path / "dw.onnx")
    rng = np.random.default_rng(1)
    # positive, mostly flat activations (after ReLU6) with some texture
    calib = [{"x": (3 + rng.normal(0, 0.3, (8, 16, 12, 12))).astype(np.float32)} for _ in range(2)]
    held_out = (3 + rng.normal(0, 0.3, (8, 16, 12, 12))).astype(np.float32)
    assert correct_conv_biases(tmp_path / "dw.onnx", tmp_path / "dw.bc.onnx", calib, per_channel=True) == 1
    corrected = numpy_helper.to_array(onnx.load(str(tmp_path / "dw.bc.onnx")).graph.initializer[1])
    assert np.abs(corrected).max() > 0  # the biases moved
    for src, out in (("dw.onnx", "plain.onnx"), ("dw.bc.onnx", "corrected.onnx")):
        ortq.quantize_static(str(tmp_path / src), str(tmp_path / out), _CalibrationReader(calib),
                             per_channel=True, weight_type=ortq.QuantType.QInt8)
    before = _mean_error(tmp_path / "dw.onnx", tmp_path / "plain.onnx", held_out)
    after = _mean_error(tmp_path / "dw.onnx", tmp_path / "corrected.onnx", held_out)
    assert after < before / 3, (before, after)


def test_graphs_without_convolutions_are_left_alone(tmp_path):
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.ones((4, 2), np.float32), "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "mm.onnx"))
    calib = [{"x": np.ones((2, 4), np.float32)}]
    assert correct_conv_biases(tmp_path / "mm.onnx", tmp_path / "out.onnx", calib, per_channel=True) == 0
    assert not (tmp_path / "out.onnx").exists()
