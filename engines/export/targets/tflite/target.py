"""TFLite export: litert-torch conversion, metadata as a ``qbench`` metadata entry (a JSON buffer),
the deploy runner as the validation session, and the Python and Android (Kotlin) templates."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engines.export.build import apply_planned
from engines.export.targets.base import Exported
from engines.export.templates import copy_template, template_module
from engines.runtimes.base import Session

METADATA_NAME = "qbench"


def write(model, source: dict[str, Any], recipe, planned, target: Path, work: Path) -> Exported:
    """litert-torch conversion (and its PT2E or ai-edge-quantizer int8 / int4) of the torch module."""
    artifact, passes = apply_planned(model, planned, work, "litert")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifact.path, target)
    notes = list(artifact.notes)
    if source["runtime"] != "litert":
        notes.append(f"rebuilt with LiteRT's passes ({' → '.join(passes)}); the source variant ran on "
                     f"{source['runtime']}")
    ops, io = facts(target)
    return Exported(target, passes, notes, {"ops": ops, "io": io, "batch": 1,
                                            "quantization": artifact.facts.get("quantization", "")})


def facts(path: Path) -> tuple[dict[str, int], dict[str, Any]]:
    """Operator histogram and input / output tensor types and quantization of a .tflite file."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    ops: dict[str, int] = {}
    for subgraph in model.subgraphs:
        for op in subgraph.operators:
            name = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) or str(op.opcodeIndex)
            ops[name] = ops.get(name, 0) + 1
    runner = Interpreter(model_path=str(path)).get_signature_runner()

    def describe(details: dict) -> dict[str, Any]:
        return {name: {"dtype": str(d["dtype"].__name__ if hasattr(d["dtype"], "__name__") else d["dtype"]),
                       "shape": [int(x) for x in d["shape"]],
                       "scale": float((d.get("quantization") or (0.0, 0))[0]),
                       "zero_point": int((d.get("quantization") or (0.0, 0))[1])} for name, d in details.items()}

    return dict(sorted(ops.items())), {"inputs": describe(runner.get_input_details()),
                                       "outputs": describe(runner.get_output_details())}


def write_metadata(path: Path, metadata: dict[str, str]) -> None:
    """A metadata entry named ``qbench`` whose buffer is the JSON of the dict."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(path.read_bytes()))
    entries = [m for m in (model.metadata or []) if (m.name.decode() if isinstance(m.name, bytes) else m.name)
               != METADATA_NAME]
    buffer = schema.BufferT()
    buffer.data = list(json.dumps(metadata, sort_keys=True).encode())
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [*entries, entry]
    path.write_bytes(bytes(flatbuffer_utils.convert_object_to_bytearray(model)))


def read_metadata(path: Path) -> dict[str, str]:
    """Through the deploy runner's own reader (what a user's copy reads)."""
    return template_module("run_tflite").read_metadata(path)


class TfliteSession(Session):
    """The deploy template's own runner (validating the file also checks the runner a user gets)."""

    def __init__(self, path: Path):
        import ai_edge_litert

        self.runner = template_module("run_tflite").TfliteRunner(path, threads=1)
        self.info = {"ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"), "threads": 1}

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return self.runner.run(inputs)

    def bind(self, inputs: dict[str, np.ndarray]) -> Callable[[], Any]:
        return lambda: self.runner.run(inputs)


def open_file(path: Path, model) -> Session:
    return TfliteSession(path)


def templates(deploy: Path, out_dir: Path, report: dict[str, Any], model) -> dict[str, dict[str, Any]]:
    from engines.export.targets.tflite.kotlin import kotlin_runner

    runner = copy_template("run_tflite.py", deploy / "python" / "run_tflite.py")
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
