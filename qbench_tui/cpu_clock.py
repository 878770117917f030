"""The start of the app's first CPU reading: psutil's counters, primed when the process starts.

A CPU reading compares the cores' counters with earlier ones. The entry point reads them before it
imports Textual, so the first reading the meters show is a true one, over the start-up itself,
and is due as soon as the first frame is drawn (primed when the app was built, it came 0.2 s
after the first frame). Light: psutil only.
"""

from __future__ import annotations

import time
from typing import Any

primed_at: float | None = None  # time.monotonic() of the priming call (None: not primed)
cpu_times: list[Any] | None = None  # psutil.cpu_times(percpu=True) then: the first reading compares with them


def prime() -> None:
    """Start the interval the first CPU reading covers."""
    global primed_at, cpu_times
    import psutil

    cpu_times = psutil.cpu_times(percpu=True)
    primed_at = time.monotonic()
