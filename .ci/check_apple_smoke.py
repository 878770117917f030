#!/usr/bin/env python3
"""Checks a macOS smoke sweep's JSON (``qbench run … --json FILE``) for the truth of its Apple figures.

* every Core ML result on ``ane`` ran (status ok) and carries its compute plan with a Neural Engine
  share of estimated cost (``metrics.compute_plan.cost_share.ane``, a number);
* torch on ``mps`` and MLX (``cpu`` and ``gpu``) have positive device memory peaks, and at least one
  ok result of each ran;
* every ok result's ``energy.joules_per_inference`` is a number;
* no result failed (unsupported combinations are fine: they say why).

Exit 0 when every check holds, 1 with one line per problem otherwise. Plain Python.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _name(r: dict[str, Any]) -> str:
    return f"{r.get('label') or r.get('method')} · {r.get('runtime')} · {r.get('device')} · bs{r.get('batch_size')}"


def problems(payload: dict[str, Any] | list[dict[str, Any]]) -> list[str]:
    results = payload["results"] if isinstance(payload, dict) else payload
    out: list[str] = []
    if not results:
        return ["no results"]
    for r in results:
        metrics = r.get("metrics") or {}
        if r.get("status") == "failed":
            out.append(f"{_name(r)}: failed: {r.get('error')}")
        if r.get("runtime") == "coreml" and r.get("device") == "ane":
            share = ((metrics.get("compute_plan") or {}).get("cost_share") or {}).get("ane")
            if r.get("status") != "ok":
                out.append(f"{_name(r)}: did not run on the Mac ({r.get('status')}: {r.get('error')})")
            elif not _number(share):
                out.append(f"{_name(r)}: no compute plan with a Neural Engine share of cost")
        if r.get("status") != "ok":
            continue
        if (r.get("runtime"), r.get("device")) == ("torch", "mps") or r.get("runtime") == "mlx":
            peak = metrics.get("device_memory_mb")
            if not (_number(peak) and peak > 0):
                out.append(f"{_name(r)}: device memory peak is not positive ({peak!r})")
        energy = (r.get("energy") or {}).get("joules_per_inference")
        if not _number(energy):
            out.append(f"{_name(r)}: energy is not a number ({(r.get('energy') or {}).get('reason', 'no energy')})")
    ok = [r for r in results if r.get("status") == "ok"]
    for runtime, device in (("torch", "mps"), ("mlx", "gpu"), ("mlx", "cpu"), ("coreml", "ane")):
        if not any(r.get("runtime") == runtime and r.get("device") == device for r in ok):
            out.append(f"no ok result of {runtime} on {device}")
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: check_apple_smoke.py RESULTS.json", file=sys.stderr)
        return 2
    found = problems(json.loads(Path(argv[0]).read_text()))
    for line in found:
        print(line)
    if not found:
        print("every Apple figure checked: compute plans with ANE shares, positive MPS/MLX peaks, energy")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
