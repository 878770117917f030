"""Task metrics and agreement with the fp32 reference, per task."""

from __future__ import annotations

from typing import Any

import numpy as np

from engines.measure import agreement
from engines.models.base import LoadedModel


def evaluate(model: LoadedModel, outputs: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """``accuracy`` (task metric where labels exist), ``agreement`` and task-specific ``metrics``."""
    report: dict[str, Any] = {"accuracy": None, "agreement": agreement(reference, outputs), "metrics": {}}
    if model.task == "classification" and model.eval_labels is not None:
        report["accuracy"] = float(np.mean(outputs.argmax(axis=-1) == model.eval_labels))
        report["metrics"]["reference_accuracy"] = float(np.mean(reference.argmax(axis=-1) == model.eval_labels))
    return report
