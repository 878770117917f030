"""Core ML export: the package the result measured (or the chain rebuilt), metadata in
``user_defined_metadata``, a Core ML session on the file (macOS only: elsewhere it refuses with
the reason and the validation reports size and op counts), the Swift and Python templates."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from engines.export.build import apply_planned, copy_tree, measured_file
from engines.export.targets.base import PREFIX, Exported
from engines.export.templates import copy_template, prod
from engines.runtimes.base import Session, UnsupportedVariant

SWIFT_UNITS = {"cpu": ".cpuOnly", "gpu": ".cpuAndGPU", "ane": ".cpuAndNeuralEngine"}


def write(model, source: dict[str, Any], recipe, planned, target: Path, work: Path) -> Exported:
    """coremltools conversion and ``coremltools.optimize`` compression: an ``.mlpackage``."""
    from engines.runtimes.coreml.convert import compressed_ops, load, op_counts

    measured = measured_file(source, recipe, "coreml", folder=True)
    if measured is not None:
        package, passes, notes = measured, list(source.get("passes") or []), [f"the package result {source['id']} "
                                                                               f"measured ({measured.name})"]
    else:
        artifact, passes = apply_planned(model, planned, work, "coreml")
        package, notes = artifact.path, list(artifact.notes)
        # each Core ML pass notes its compressed ops; the last count is the package's
        counts_noted = [n for n in notes if n.endswith("ops compressed")]
        notes = [n for n in notes if n not in counts_noted[:-1]]
    copy_tree(package, target)
    mlmodel = load(target)
    counts = op_counts(mlmodel)
    description = mlmodel.get_spec().description
    io = {"inputs": [i.name for i in description.input], "outputs": [o.name for o in description.output]}
    compressed = compressed_ops(counts)
    what = (f"compressed weights in {compressed} of {sum(counts.values())} ops "
            f"({', '.join(sorted(k for k in counts if k.startswith(('constexpr', 'quantize', 'dequantize'))))})"
            if compressed else "float weights")
    return Exported(target, passes, notes, {"coreml_ops": counts, "coreml_op_total": sum(counts.values()),
                                            "coreml_compressed_ops": compressed, "quantization": what, "io": io})


def write_metadata(path: Path, metadata: dict[str, str]) -> None:
    """``user_defined_metadata``, plus the package's description and author."""
    from engines.runtimes.coreml.convert import load

    mlmodel = load(path)
    for key, value in metadata.items():
        mlmodel.user_defined_metadata[key] = value
    mlmodel.short_description = (f"{metadata[PREFIX + 'source_model']} · {metadata[PREFIX + 'label']} "
                                 "(exported by qbench)")
    mlmodel.author = "qbench"
    staging = path.with_name(".staging-" + path.name)  # coremltools wants the .mlpackage suffix
    mlmodel.save(str(staging))
    shutil.rmtree(path)
    staging.rename(path)


def read_metadata(path: Path) -> dict[str, str]:
    from engines.runtimes.coreml.convert import load

    return {k: v for k, v in load(path).user_defined_metadata.items() if k.startswith(PREFIX)}


def open_file(path: Path, model) -> Session:
    """Core ML on the CPU compute unit; refuses with the reason where prediction cannot run (Linux)."""
    from engines.runtimes.coreml.session import CoremlSession, prediction_refusal

    reason = prediction_refusal()
    if reason:
        raise UnsupportedVariant(reason.split(":")[0] if reason.startswith("Core ML prediction needs macOS")
                                 else reason)
    import coremltools as ct

    session = CoremlSession(ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY), model)
    session.info = {"coremltools": ct.__version__, "compute_units": "CPU_ONLY"}
    return session


def templates(deploy: Path, out_dir: Path, report: dict[str, Any], model) -> dict[str, dict[str, Any]]:
    loader = copy_template("load_coreml.py", deploy / "python" / "load_coreml.py")
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
    count = prod(shape)
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
