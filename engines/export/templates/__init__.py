"""Deployment templates written into ``out_dir/deploy/`` per format, each runnable or checkable.

* ONNX: ``fastapi/app.py`` (a standalone service: ``/predict``, ``/healthz``, Prometheus
  ``/metrics``) and ``triton/model_repository/<name>/`` (``config.pbtxt`` with the file's real
  input / output names, types and shapes, and ``1/model.onnx``).
* TFLite: ``python/run_tflite.py`` (``ai-edge-litert``, int8 input / output scales handled) and
  ``android/ModelRunner.kt`` (``Interpreter``).
* Core ML: ``swift/Predict.swift`` (``MLModel`` with ``computeUnits`` set to the device qbench
  recommends) and ``python/load_coreml.py`` (coremltools).
* MLX: ``python/run_mlx.py`` (rebuilds the network from ``model.json`` and loads the safetensors).

The Python templates are plain files in ``files/`` copied as they are (they read the model's own
metadata at run time); what depends on the model (Triton's config, Kotlin's shapes, Swift's compute
units) is generated here. ``deploy/README.md`` says how to run each, with the validated figures.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

FILES = Path(__file__).resolve().parent / "files"

TRITON_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 4: "TYPE_UINT16", 5: "TYPE_INT16",
                6: "TYPE_INT32", 7: "TYPE_INT64", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64",
                12: "TYPE_UINT32", 13: "TYPE_UINT64", 16: "TYPE_BF16"}
MAX_BATCH = 64


def write_templates(fmt: str, out_dir: Path, report: dict[str, Any], model) -> dict[str, Any]:
    """Write ``deploy/`` for ``fmt``; returns {template: {"path", "run"}} (also in the README)."""
    deploy = out_dir / "deploy"
    deploy.mkdir(parents=True, exist_ok=True)
    written = globals()[f"_{fmt}"](deploy, out_dir, report, model)
    # One held-out row as a request body: what the README's curl line and the runners feed.
    first = {name: array[:1].tolist() for name, array in model.eval_inputs.items()}
    (deploy / "example_request.json").write_text(json.dumps({"inputs": first}) + "\n")
    (deploy / "README.md").write_text(_readme(fmt, report, written))
    return {name: {k: str(v) for k, v in entry.items()} for name, entry in written.items()}


def _copy(name: str, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FILES / name, target)
    return target


def model_slug(name: str) -> str:
    """A Triton / file-system friendly model name."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_").lower() or "model"


# --- ONNX ----------------------------------------------------------------------------------------


def _onnx(deploy: Path, out_dir: Path, report: dict[str, Any], model) -> dict[str, dict[str, Any]]:
    app = _copy("fastapi_app.py", deploy / "fastapi" / "app.py")
    (deploy / "fastapi" / "requirements.txt").write_text(
        "onnxruntime>=1.22\nnumpy>=1.26\nfastapi>=0.115\nuvicorn>=0.30\nprometheus-client>=0.20\n")
    name = model_slug(f"{report['model']}-{report['label']}")
    repo = deploy / "triton" / "model_repository"
    version_dir = repo / name / "1"  # only this model's own files are replaced; nothing else there is removed
    version_dir.mkdir(parents=True, exist_ok=True)
    (version_dir / "model.onnx").unlink(missing_ok=True)
    source = out_dir / report["file"]
    try:  # a hard link: no second copy of the weights
        (version_dir / "model.onnx").hardlink_to(source)
    except OSError:
        shutil.copyfile(source, version_dir / "model.onnx")
    config = triton_config(source, name)
    (repo / name / "config.pbtxt").write_text(config)
    return {
        "fastapi": {"path": app.relative_to(out_dir),
                    "run": "cd deploy/fastapi && uvicorn app:app --port 8000  (or MODEL_PATH=… uvicorn app:app)"},
        "triton": {"path": (repo / name / "config.pbtxt").relative_to(out_dir),
                   "run": "docker run --rm -p8000:8000 -v $PWD/deploy/triton/model_repository:/models "
                          "nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models"},
    }


def triton_config(onnx_path: Path, name: str) -> str:
    """``config.pbtxt`` from the ONNX file's own graph inputs and outputs. A leading symbolic axis is
    the batch (``max_batch_size`` > 0, dims without it); other symbolic axes are -1."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]

    def dims(value) -> list[Any]:
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                for d in value.type.tensor_type.shape.dim]

    batched = all(dims(v) and isinstance(dims(v)[0], str) for v in [*inputs, *graph.output])
    lines = [f'name: "{name}"', 'platform: "onnxruntime_onnx"', f"max_batch_size: {MAX_BATCH if batched else 0}"]

    def block(kind: str, values) -> None:
        lines.append(f"{kind} [")
        entries = []
        for value in values:
            shape = dims(value)[1:] if batched else dims(value)
            shown = ", ".join(str(d) if isinstance(d, int) and d > 0 else "-1" for d in shape)
            elem = value.type.tensor_type.elem_type
            if elem not in TRITON_TYPES:
                raise ValueError(f"{kind[:-1]} {value.name!r} has an element type Triton does not take ({elem})")
            entries.append(f'  {{\n    name: "{value.name}"\n    data_type: {TRITON_TYPES[elem]}\n'
                           f"    dims: [ {shown or '1'} ]\n  }}")
        lines.append(",\n".join(entries))
        lines.append("]")

    block("input", inputs)
    block("output", graph.output)
    lines.append("instance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]")
    if batched:
        lines.append("dynamic_batching {\n  max_queue_delay_microseconds: 100\n}")
    return "\n".join(lines) + "\n"


# --- TFLite --------------------------------------------------------------------------------------


def _tflite(deploy: Path, out_dir: Path, report: dict[str, Any], model) -> dict[str, dict[str, Any]]:
    runner = _copy("run_tflite.py", deploy / "python" / "run_tflite.py")
    (deploy / "python" / "requirements.txt").write_text("ai-edge-litert>=2.3\nnumpy>=1.26\n")
    io = (report.get("facts") or {}).get("io") or {}
    kotlin = deploy / "android" / "ModelRunner.kt"
    kotlin.parent.mkdir(parents=True, exist_ok=True)
    kotlin.write_text(kotlin_runner(io, report))
    return {
        "python": {"path": runner.relative_to(out_dir),
                   "run": "pip install -r deploy/python/requirements.txt && python deploy/python/run_tflite.py"},
        "android": {"path": kotlin.relative_to(out_dir),
                    "run": "copy model.tflite to app/src/main/assets/ and ModelRunner.kt into your app; add "
                           "implementation(\"com.google.ai.edge.litert:litert:1.+\") to build.gradle.kts"},
    }


_KOTLIN_TYPES = {"float32": ("FloatArray", "Float", 4), "int8": ("ByteArray", "Byte", 1),
                 "int32": ("IntArray", "Int", 4), "int64": ("LongArray", "Long", 8)}


def kotlin_runner(io: dict[str, Any], report: dict[str, Any]) -> str:
    """A Kotlin ``Interpreter`` snippet with the file's own input / output shapes, types and int8 scales."""
    inputs = sorted((io.get("inputs") or {}).items())
    outputs = sorted((io.get("outputs") or {}).items())
    lines = [
        "// Generated by qbench export: runs model.tflite with LiteRT's Interpreter on Android.",
        f"// {report['model']} · {report['label']} — {(report.get('facts') or {}).get('quantization', '')}",
        "// Gradle: implementation(\"com.google.ai.edge.litert:litert:1.+\")",
        "package ai.qbench.deploy",
        "",
        "import android.content.Context",
        "import java.io.FileInputStream",
        "import java.nio.ByteBuffer",
        "import java.nio.ByteOrder",
        "import java.nio.MappedByteBuffer",
        "import java.nio.channels.FileChannel",
        "import org.tensorflow.lite.Interpreter",
        "",
        "class ModelRunner(context: Context, threads: Int = 4) {",
        "    private val interpreter: Interpreter",
        "",
        "    init {",
        "        val fd = context.assets.openFd(\"model.tflite\")",
        "        val model: MappedByteBuffer = FileInputStream(fd.fileDescriptor).channel",
        "            .map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)",
        "        interpreter = Interpreter(model, Interpreter.Options().setNumThreads(threads))",
        "    }",
        "",
    ]
    for name, d in inputs:
        lines.append(f"    // input {name}: {d['dtype']} {d['shape']}" +
                     (f", scale {d['scale']:.8g}, zero point {d['zero_point']}" if d["scale"] else ""))
    for name, d in outputs:
        lines.append(f"    // output {name}: {d['dtype']} {d['shape']}" +
                     (f", scale {d['scale']:.8g}, zero point {d['zero_point']}" if d["scale"] else ""))
    params = ", ".join(f"{_camel(n)}: FloatArray" if d["scale"] or d["dtype"] == "float32" else
                       f"{_camel(n)}: {_KOTLIN_TYPES.get(d['dtype'], ('FloatArray',))[0]}" for n, d in inputs)
    lines += ["", "    /** One row in, the first output out (float: int8 tensors are (de)quantized here). */",
              f"    fun run({params}): FloatArray {{"]
    for name, d in inputs:
        size = _prod(d["shape"])
        width = _KOTLIN_TYPES.get(d["dtype"], ("", "", 4))[2]
        var = _camel(name)
        lines.append(f"        val {var}Buf = ByteBuffer.allocateDirect({size * width}).order(ByteOrder.nativeOrder())")
        if d["scale"]:
            lo, hi = (-128, 127) if d["dtype"] == "int8" else (0, 255)
            lines.append(f"        for (v in {var}) {var}Buf.put(Math.round(v / {d['scale']:.8g}f + {d['zero_point']})"
                         f".coerceIn({lo}, {hi}).toByte())")
        elif d["dtype"] == "float32":
            lines.append(f"        for (v in {var}) {var}Buf.putFloat(v)")
        elif d["dtype"] == "int64":
            lines.append(f"        for (v in {var}) {var}Buf.putLong(v)")
        elif d["dtype"] == "int32":
            lines.append(f"        for (v in {var}) {var}Buf.putInt(v)")
        else:
            lines.append(f"        for (v in {var}) {var}Buf.put(v)")
        lines.append(f"        {var}Buf.rewind()")
    out_name, out = outputs[0] if outputs else ("output_0", {"dtype": "float32", "shape": [1], "scale": 0.0,
                                                            "zero_point": 0})
    count = _prod(out["shape"])
    width = _KOTLIN_TYPES.get(out["dtype"], ("", "", 4))[2]
    lines += [f"        val out = ByteBuffer.allocateDirect({count * width}).order(ByteOrder.nativeOrder())",
              f"        interpreter.runForMultipleInputsOutputs(arrayOf<Any>({', '.join(_camel(n) + 'Buf' for n, _ in inputs)}),"
              " mapOf<Int, Any>(0 to out))",
              "        out.rewind()"]
    if out["scale"]:
        lines.append(f"        return FloatArray({count}) {{ (out.get().toInt() - {out['zero_point']}) * {out['scale']:.8g}f }}")
    else:
        lines.append(f"        return FloatArray({count}) {{ out.getFloat() }}")
    lines += ["    }", "", "    fun close() = interpreter.close()", "}", ""]
    return "\n".join(lines)


def _camel(name: str) -> str:
    head, *rest = re.split(r"[^A-Za-z0-9]+", name)
    return head + "".join(p.title() for p in rest)


def _prod(shape: list[int]) -> int:
    total = 1
    for d in shape:
        total *= max(int(d), 1)
    return total


# --- MLX -----------------------------------------------------------------------------------------


def _mlx(deploy: Path, out_dir: Path, report: dict[str, Any], model) -> dict[str, dict[str, Any]]:
    runner = _copy("run_mlx.py", deploy / "python" / "run_mlx.py")
    (deploy / "python" / "requirements.txt").write_text(
        "mlx>=0.29; sys_platform == 'darwin'\nmlx[cpu]>=0.29; sys_platform == 'linux'\nnumpy>=1.26\n")
    return {"python": {"path": runner.relative_to(out_dir),
                       "run": "pip install -r deploy/python/requirements.txt && python deploy/python/run_mlx.py"}}


# --- GGUF (llama.cpp) ----------------------------------------------------------------------------


def _gguf(deploy: Path, out_dir: Path, report: dict[str, Any], model) -> dict[str, dict[str, Any]]:
    runner = _copy("run_gguf.py", deploy / "python" / "run_gguf.py")
    (deploy / "python" / "requirements.txt").write_text("llama-cpp-python>=0.3.16\nnumpy>=1.26\n")
    return {"python": {"path": runner.relative_to(out_dir),
                       "run": "pip install -r deploy/python/requirements.txt && python deploy/python/run_gguf.py"},
            "llama.cpp": {"path": report["file"],
                          "run": f"llama-bench -m {report['file']}   # llama.cpp's own tools read the same file"}}


# --- Core ML --------------------------------------------------------------------------------------

SWIFT_UNITS = {"cpu": ".cpuOnly", "gpu": ".cpuAndGPU", "ane": ".cpuAndNeuralEngine"}


def _coreml(deploy: Path, out_dir: Path, report: dict[str, Any], model) -> dict[str, dict[str, Any]]:
    loader = _copy("load_coreml.py", deploy / "python" / "load_coreml.py")
    (deploy / "python" / "requirements.txt").write_text("coremltools>=9.0\nnumpy>=1.26\n")
    swift = deploy / "swift" / "Predict.swift"
    swift.parent.mkdir(parents=True, exist_ok=True)
    swift.write_text(swift_snippet(report, model))
    return {
        "swift": {"path": swift.relative_to(out_dir),
                  "run": "add model.mlpackage to your Xcode target (or compile it: xcrun coremlcompiler compile "
                         "model.mlpackage .) and call Predict.run(...)"},
        "python": {"path": loader.relative_to(out_dir),
                   "run": "python deploy/python/load_coreml.py   # predicts on macOS; elsewhere prints the spec"},
    }


def swift_snippet(report: dict[str, Any], model) -> str:
    """``MLModel`` with ``computeUnits`` set to the device qbench recommends for this model."""
    rec = report.get("recommended_device") or {}
    units = SWIFT_UNITS.get(rec.get("device") or "", ".all")
    why = rec.get("reason") or "no Core ML device measured for this model yet: .all lets Core ML choose"
    first = model.inputs[0]
    output = (((report.get("facts") or {}).get("io") or {}).get("outputs") or [model.output_name])[0]
    shape = [1 if isinstance(d, str) else int(d) for d in first.shape]
    count = _prod(shape)
    kind = ".int32" if first.dtype.startswith("int") else ".float32"
    cast = "Int32" if kind == ".int32" else "Float"
    return "\n".join([
        "// Generated by qbench export: runs model.mlpackage with Core ML.",
        f"// {report['model']} · {report['label']} — {(report.get('facts') or {}).get('quantization', '')}",
        f"// computeUnits: {units} — {why}",
        "import CoreML",
        "import Foundation",
        "",
        "enum Predict {",
        "    static func load(packageURL: URL) throws -> MLModel {",
        "        let config = MLModelConfiguration()",
        f"        config.computeUnits = {units}",
        "        let compiled = try MLModel.compileModel(at: packageURL)   // once; cache the result in an app",
        "        return try MLModel(contentsOf: compiled, configuration: config)",
        "    }",
        "",
        f"    /// One row of `{first.name}` ({count} values, shape {shape}); returns the first output.",
        f"    static func run(_ model: MLModel, _ values: [{cast}]) throws -> MLMultiArray {{",
        f"        let input = try MLMultiArray(shape: {shape}, dataType: {kind})",
        "        for (i, v) in values.enumerated() { input[i] = NSNumber(value: v) }",
        f"        let features = try MLDictionaryFeatureProvider(dictionary: [\"{first.name}\": input])",
        "        let out = try model.prediction(from: features)",
        f"        return out.featureValue(for: \"{output}\")!.multiArrayValue!",
        "    }",
        "}",
        "",
    ])


# --- README ----------------------------------------------------------------------------------------


def _figures(report: dict[str, Any]) -> list[str]:
    v = report.get("validation") or {}
    lines = [f"- Validation: {v.get('status', 'not run')}"]
    if v.get("agreement_fp32"):
        a = v["agreement_fp32"]
        lines.append(f"- Agreement with fp32: top-1 {_num(a.get('top1'))}, cosine {_num(a.get('cosine'))}, "
                     f"SQNR {_num(a.get('sqnr_db'))} dB")
    if v.get("agreement_source"):
        a = v["agreement_source"]
        lines.append(f"- Agreement with the measured variant: top-1 {_num(a.get('top1'))}, cosine {_num(a.get('cosine'))}")
    if v.get("accuracy") is not None:
        lines.append(f"- Accuracy on the held-out set: {_num(v['accuracy'])}")
    if v.get("latency_ms"):
        lines.append(f"- Latency (batch 1, one thread, a short sanity loop): p50 {_num(v['latency_ms'].get('p50'))} ms")
    lines.append(f"- Size: {report['size_mb']:.3f} MB")
    return lines


def _num(value: Any) -> str:
    return "n/a" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


RUN_NOTES = {
    "gguf": ("pip install -r deploy/python/requirements.txt   # or: uv sync --extra llamacpp\n"
             "python deploy/python/run_gguf.py                # runs deploy/example_request.json"),
    "mlx": ("pip install -r deploy/python/requirements.txt   # or: uv sync --extra mlx\n"
            "python deploy/python/run_mlx.py                 # runs deploy/example_request.json"),
    "coreml": ("python deploy/python/load_coreml.py   # macOS: predicts; Linux: prints inputs, outputs, metadata"),
    "tflite": ("pip install -r deploy/python/requirements.txt   # or: uv sync --extra tflite\n"
               "python deploy/python/run_tflite.py              # runs deploy/example_request.json"),
    "onnx": ("pip install -r deploy/fastapi/requirements.txt   # or: uv sync --extra serve\n"
             "cd deploy/fastapi && uvicorn app:app --port 8000\n"
             "curl -s localhost:8000/healthz\n"
             "curl -s -XPOST localhost:8000/predict -H 'content-type: application/json' "
             "-d @../example_request.json\n"
             "curl -s localhost:8000/metrics"),
}


def _readme(fmt: str, report: dict[str, Any], written: dict[str, dict[str, Any]]) -> str:
    meta = report.get("metadata") or {}
    lines = [
        f"# Deploying {report['model']} · {report['label']} ({report['title']})",
        "",
        f"Exported by qbench {meta.get('qbench.qbench_version', '')} from result {report['source_result_id']} "
        f"(run {report['source_run_id']}); the model file is `{report['file']}` one folder up, with its "
        "metadata inside it and in `qbench.json`.",
        "",
        *_figures(report),
        "",
        "## Templates",
        "",
    ]
    for name, entry in written.items():
        lines += [f"### {name}", "", f"`{entry['path']}`", "", "```sh", str(entry["run"]), "```", ""]
    if fmt in RUN_NOTES:
        lines += ["## Quick start", "", "```sh", RUN_NOTES[fmt], "```", ""]
    lines += ["Inputs:", "", "```json", json.dumps(json.loads(meta.get("qbench.inputs", "[]")), indent=2), "```", ""]
    return "\n".join(lines)
