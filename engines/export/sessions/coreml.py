"""Core ML packages: prediction needs macOS (Core ML's framework); elsewhere the session refuses
with the reason, and the validation reports size and op counts only."""

from __future__ import annotations

from pathlib import Path

from engines.runtimes.base import Session, UnsupportedVariant


def open_file(path: Path, model) -> Session:
    from engines.runtimes.coreml.session import CoremlSession, prediction_refusal

    reason = prediction_refusal()
    if reason:
        raise UnsupportedVariant(reason.split(":")[0] if reason.startswith("Core ML prediction needs macOS")
                                 else reason)
    import coremltools as ct

    session = CoremlSession(ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY), model)
    session.info = {"coremltools": ct.__version__, "compute_units": "CPU_ONLY"}
    return session
