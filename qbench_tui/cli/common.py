"""What every CLI command shares: exit codes, the usage error, parsing helpers, the store."""

from __future__ import annotations

import argparse
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad arguments: printed as one line, exit code 2."""


def csv_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in csv_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None



def since_time(text: str) -> str:
    """``--since``: an ISO date or time (local unless it names its zone) or an age such as
    ``30m``, ``12h``, ``7d``, ``4w``; returned as the store's UTC ISO text, which compares as text."""
    from datetime import UTC, datetime, timedelta

    text = text.strip()
    units = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
    if text[-1:] in units and text[:-1].isdigit():
        when = datetime.now(UTC) - timedelta(**{units[text[-1]]: int(text[:-1])})
    else:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a date/time (2026-11-01, 2026-11-01T09:00) or an age (30m, 12h, 7d, 4w), got {text!r}"
            ) from None
        when = (when if when.tzinfo else when.astimezone()).astimezone(UTC)
    return when.isoformat(timespec="seconds")


def open_store(db: Path | None):
    from engines.paths import default_db_path
    from engines.store import Store

    return Store(db or default_db_path())


