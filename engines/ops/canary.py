"""The canary: post the stored evaluation set to a served model and compare what comes back with
what qbench measured for that result.

A server sees no labels, so drift in its answers is invisible to ``/metrics``; the canary brings
the labels. It posts the model's held-out rows (the same ones the benchmark scored) to
``/predict`` and computes the served accuracy and the top-1 agreement with the fp32 reference,
then compares each with the stored result's own figure: lower by more than ``tolerance`` is an
alert. Classification models only (the others have no top-1 to compare); the others are skipped
with the reason.

Loads the model (numpy, and torch for the fp32 reference): CLI or a child process, never the app
(the app runs ``python -m engines.ops.canary``, which prints the report as JSON).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from engines.ops.monitor import MonitorError, base_url, http_post_json

BATCH_ROWS = 64  # rows per request: well under the service's MAX_ROWS, a realistic request size


class CanaryError(Exception):
    """The canary could not run; the message says why."""


def evaluation_set(model_name: str, rows: int) -> tuple[list[list[Any]] | dict[str, list], list[int], list[int] | None]:
    """(inputs as JSON lists, labels, fp32 reference top-1 or None) of the model's held-out rows."""
    from engines.models import load_model, resolve_model

    try:
        model = load_model(resolve_model(model_name))
    except Exception as exc:  # a model that moved or cannot load: the canary says so
        raise CanaryError(f"cannot load {model_name} for its evaluation set: {exc}") from None
    if model.task != "classification" or model.eval_labels is None:
        raise CanaryError(f"{model_name} is a {model.task} model without labels: the canary needs a classifier")
    count = min(rows, len(model.eval_labels))
    data = {k: v[:count] for k, v in model.eval_inputs.items()}
    labels = [int(x) for x in model.eval_labels[:count]]
    reference = None
    if model.module is not None:
        import torch

        with torch.inference_mode():
            out = model.module(*[torch.from_numpy(data[n]) for n in model.input_names])
        reference = [int(x) for x in out.argmax(dim=-1).tolist()]
    inputs: Any = next(iter(data.values())).tolist() if len(data) == 1 else {k: v.tolist() for k, v in data.items()}
    return inputs, labels, reference


def _take(inputs: Any, start: int, stop: int) -> Any:
    if isinstance(inputs, dict):
        return {k: v[start:stop] for k, v in inputs.items()}
    return inputs[start:stop]


def post_rows(url: str, inputs: Any, count: int) -> list[int]:
    """Top-1 of every row, posted in batches of ``BATCH_ROWS``."""
    top1: list[int] = []
    for start in range(0, count, BATCH_ROWS):
        try:
            body = http_post_json(base_url(url) + "/predict", {"inputs": _take(inputs, start, start + BATCH_ROWS)})
        except MonitorError as exc:
            raise CanaryError(str(exc)) from None
        if "top1" in body:
            top1.extend(int(x) for x in body["top1"])
        else:
            outputs = next(iter(body.get("outputs", {}).values()), None)
            if outputs is None:
                raise CanaryError(f"{url}/predict answered without outputs: {str(body)[:120]}")
            top1.extend(max(range(len(row)), key=row.__getitem__) for row in outputs)
    return top1


def run_canary(url: str, result: dict[str, Any], rows: int = 256, tolerance: float = 0.02) -> dict[str, Any]:
    """Post ``rows`` held-out rows; ``alert`` when the served accuracy or agreement is below the
    stored result's by more than ``tolerance``."""
    inputs, labels, reference = evaluation_set(result["model"], rows)
    served = post_rows(url, inputs, len(labels))
    accuracy = sum(int(a == b) for a, b in zip(served, labels, strict=True)) / len(labels)
    agreement = (sum(int(a == b) for a, b in zip(served, reference, strict=True)) / len(labels)
                 if reference is not None else None)
    stored_acc = result.get("accuracy")
    stored_agr = (result.get("agreement") or {}).get("top1")
    checks = []
    if stored_acc is not None:
        checks.append(("accuracy", accuracy, stored_acc))
    if agreement is not None and stored_agr is not None:
        checks.append(("top-1 agreement", agreement, stored_agr))
    failing = [(n, v, s) for n, v, s in checks if v < s - tolerance]
    text = "canary: " + ", ".join(f"{n} {v:.3f} (stored {s:.3f})" for n, v, s in checks) + f" on {len(labels)} rows"
    if failing:
        text += " — ALERT: " + "; ".join(f"{n} below the stored figure by {s - v:.3f}" for n, v, s in failing)
    else:
        text += f" — within {tolerance:g} of the stored result"
    return {"rows": len(labels), "accuracy": accuracy, "agreement_top1": agreement, "stored_accuracy": stored_acc,
            "stored_agreement_top1": stored_agr, "tolerance": tolerance, "alert": bool(failing), "text": text}


def main(argv: list[str] | None = None) -> int:
    """``python -m engines.ops.canary URL RESULT_ID DB [ROWS] [TOLERANCE]``: the report as JSON."""
    from engines.store import Store
    from engines.store.ops_tables import get_result

    args = sys.argv[1:] if argv is None else argv
    url, result_id, db = args[0], int(args[1]), args[2]
    rows = int(args[3]) if len(args) > 3 else 256
    tolerance = float(args[4]) if len(args) > 4 else 0.02
    store = Store(db)
    try:
        result = get_result(store, result_id)
        if result is None:
            raise CanaryError(f"no result {result_id} in {db}")
        report = run_canary(url, result, rows, tolerance)
    except CanaryError as exc:
        report = {"error": str(exc), "alert": True, "text": f"canary failed: {exc}"}
    finally:
        store.close()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
