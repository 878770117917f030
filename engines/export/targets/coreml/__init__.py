"""Core ML: coremltools conversion and compression to an ``.mlpackage``; prediction needs macOS."""

from __future__ import annotations

from engines.export.targets.base import ExportTarget

SPEC = ExportTarget(
    name="coreml", title="Core ML", filename="model.mlpackage", runtime="coreml", packages=("coremltools",),
    extra="coreml", validates_with="Core ML (macOS only)", module="engines.export.targets.coreml.target",
    recommends_device=True, order=30,
    quick_start="python deploy/python/load_coreml.py   # macOS: predicts; Linux: prints inputs, outputs, metadata",
)
