"""How a fleet host reads in a table (the CLI's ``qbench hosts`` and the app's Hosts view): plain Python."""

from __future__ import annotations

from typing import Any

HOST_COLUMNS = ("host", "state", "chip", "memory", "os", "qbench", "now", "queue", "seen")


def host_devices(facts: dict[str, Any]) -> str:
    devices = facts.get("devices") or {}
    return ", ".join(name for name, d in devices.items() if (d or {}).get("present")) or "?"


def host_row(h: dict[str, Any]) -> tuple[str, ...]:
    """One host as the cells of :data:`HOST_COLUMNS`."""
    facts = h.get("facts") or {}
    memory = facts.get("memory_gib")
    queue = h.get("queue") or []
    return (
        str(h.get("name", "?")),
        str(h.get("state") or "?"),
        f"{facts.get('cpu') or facts.get('machine') or '?'} · {host_devices(facts)}",
        f"{memory:g} GiB" if isinstance(memory, (int, float)) else "?",
        str(facts.get("os") or "?"),
        str(facts.get("qbench") or "?"),
        str(h.get("activity") or "—"),
        f"{len(queue)}: {', '.join(queue[:3])}{' …' if len(queue) > 3 else ''}" if queue else "—",
        str(h.get("seen_at") or "")[11:19],
    )
