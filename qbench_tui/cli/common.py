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



def open_store(db: Path | None):
    from engines.paths import default_db_path
    from engines.store import Store

    return Store(db or default_db_path())


