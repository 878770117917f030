"""Where a Core ML result ran: the compute plan's shares turned into one verdict (light: plain dicts).

Core ML places each op of a program itself; the compute units a result was asked for
(``ane`` → CPU_AND_NE) only permit a device. The compute plan (``MLComputePlan``, macOS 14.4+)
says which device each op prefers and what share of the program's estimated cost it carries;
:func:`engines.runtimes.coreml.session.plan_shares` reduces it to shares per device. This module
is the one rule every reader applies — the worker that records a result (its flag), the results
table, the JSON, the report, ``recommend`` and the device choice:

* a Core ML result on ``ane`` whose Neural Engine share of estimated cost is below
  :data:`MIN_COST_SHARE` is flagged ``ran 12 % on the Neural Engine`` and is not an ANE result;
* where the plan could not be read the result says ``placement unknown`` (with the reason) and
  is not an ANE result either: it never passes silently.
"""

from __future__ import annotations

from typing import Any

MIN_COST_SHARE = 0.5  # below this share of the program's estimated cost, it did not run "on" the device
DEVICE_WORDS = {"ane": "the Neural Engine", "gpu": "the GPU", "cpu": "the CPU"}
CHECKED_DEVICES = ("ane",)  # the devices whose label the plan must back (Core ML's own target for `ane`)
UNKNOWN = "placement unknown"


def verdict(runtime: str, device: str, metrics: dict[str, Any] | None, reason: str | None = None) -> dict[str, Any] | None:
    """The placement verdict of a result: None for results it does not apply to (not Core ML);
    else ``{"status": "on-device" | "off-device" | "unknown", "device", "cost_share", "op_share",
    "text"}``. ``reason`` says why the plan is missing (a note of the session, a refusal)."""
    if runtime != "coreml":
        return None
    plan = (metrics or {}).get("compute_plan") or {}
    cost = plan.get("cost_share") or {}
    if not cost:
        why = reason or ("the compute plan has no estimated cost" if plan else "the compute plan was not read")
        return {"status": "unknown", "device": device, "cost_share": None, "op_share": plan.get("op_share"),
                "text": f"{UNKNOWN}: {why}"}
    share = float(cost.get(device, 0.0))
    words = DEVICE_WORDS.get(device, device)
    status = "off-device" if device in CHECKED_DEVICES and share < MIN_COST_SHARE else "on-device"
    return {"status": status, "device": device, "cost_share": dict(cost), "op_share": dict(plan.get("op_share") or {}),
            "text": f"ran {share * 100:.0f} % on {words}"}


def of_result(result: dict[str, Any]) -> dict[str, Any] | None:
    """The verdict stored with a result (``metrics["placement"]``), or computed from its metrics."""
    metrics = result.get("metrics") or {}
    if metrics.get("placement"):
        return metrics["placement"]
    return verdict(result.get("runtime", ""), result.get("device", ""), metrics)


def flag(placement: dict[str, Any] | None, device: str) -> str | None:
    """The flag an ok result carries: the share when it ran off its device, or ``placement unknown``."""
    if placement is None or device not in CHECKED_DEVICES:
        return None
    if placement["status"] == "off-device":
        return placement["text"]
    if placement["status"] == "unknown":
        return UNKNOWN
    return None


def not_on_its_device(result: dict[str, Any]) -> str | None:
    """Why this result must not be called a result of its device (``recommend``, the device choice),
    or None when it may: an ``ane`` result that ran mostly elsewhere or whose placement is unknown."""
    if result.get("device") not in CHECKED_DEVICES:
        return None
    placement = of_result(result)
    if placement is None or placement["status"] == "on-device":
        return None
    words = DEVICE_WORDS.get(result["device"], result["device"])
    return f"{placement['text']}: not a result of {words}"
