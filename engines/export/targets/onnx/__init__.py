"""ONNX: the file ONNX Runtime measured (or the chain rebuilt), validated in ONNX Runtime."""

from __future__ import annotations

from engines.export.targets.base import ExportTarget

SPEC = ExportTarget(
    name="onnx", title="ONNX", filename="model.onnx", runtime="onnxruntime", packages=("onnx", "onnxruntime"),
    extra="", validates_with="ONNX Runtime", module="engines.export.targets.onnx.target", order=10,
    quick_start=("pip install -r deploy/fastapi/requirements.txt   # or: uv sync --extra serve\n"
                 "cd deploy/fastapi && uvicorn app:app --port 8000\n"
                 "curl -s localhost:8000/healthz\n"
                 "curl -s -XPOST localhost:8000/predict -H 'content-type: application/json' "
                 "-d @../example_request.json\n"
                 "curl -s localhost:8000/metrics"),
)
