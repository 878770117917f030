"""Which ONNX Runtime execution provider ran which nodes, from ORT's own profile.

ORT assigns each node of the optimized graph to the first provider in the session's list that
claims it (CUDA, Core ML, …) and gives the rest to the CPU provider, with copies between them.
A session opened with profiling runs the graph once; each node's kernel event in the profile names
its provider (``args.provider``), so the share of nodes — and of the run's time — each provider
took is read back rather than guessed. A provider that compiles a partition into one kernel (Core
ML, TensorRT) shows it as one node; its time share says how much of the run it carried. Memory
copies between providers (``Memcpy*``) are counted apart.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

KERNEL_SUFFIX = "_kernel_time"


def placement_from_profile(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Nodes and time per provider from ORT profile events (the JSON list ``end_profiling`` writes)."""
    nodes: dict[str, set[str]] = {}
    micros: dict[str, float] = {}
    copies = 0
    for event in events:
        args = event.get("args") or {}
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or "provider" not in args or not name.endswith(KERNEL_SUFFIX):
            continue
        if str(args.get("op_name", "")).startswith("Memcpy"):
            copies += 1
            continue
        provider = args["provider"]
        nodes.setdefault(provider, set()).add(name.removesuffix(KERNEL_SUFFIX))
        micros[provider] = micros.get(provider, 0.0) + float(event.get("dur", 0))
    total_nodes = sum(len(v) for v in nodes.values())
    total_time = sum(micros.values())
    return {
        "nodes": {p: len(v) for p, v in nodes.items()},
        "node_share": {p: round(len(v) / total_nodes, 4) for p, v in nodes.items()} if total_nodes else {},
        "time_share": {p: round(t / total_time, 4) for p, t in micros.items()} if total_time else {},
        "memcpy_nodes": copies,
    }


def measure_placement(model: str | bytes, providers: list[Any], feed: dict[str, Any],
                      options: Any | None = None) -> dict[str, Any]:
    """Open ``model`` once more with profiling on (never the timed session: profiling slows every
    node), run ``feed`` once, and read each node's provider back from the profile."""
    import onnxruntime as ort

    opts = options or ort.SessionOptions()
    opts.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="qbench-ort-profile-") as folder:
        opts.enable_profiling = True
        opts.profile_file_prefix = str(Path(folder) / "placement")
        session = ort.InferenceSession(model, opts, providers=providers)
        session.run(None, feed)
        profile = session.end_profiling()
        events = json.loads(Path(profile).read_text())
    placement = placement_from_profile(events)
    placement["providers_requested"] = [p if isinstance(p, str) else p[0] for p in providers]
    return placement
