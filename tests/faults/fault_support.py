"""Helpers of the fault suite."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path


def integrity(db: Path) -> str:
    """``PRAGMA integrity_check`` of a store, read-only (immutable where its folder is read-only)."""
    params = "mode=ro" if os.access(db.parent, os.W_OK) else "mode=ro&immutable=1"
    with contextlib.closing(sqlite3.connect(f"file:{db}?{params}", uri=True, timeout=10)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def fill(where: Path) -> None:
    """Fill the file system holding ``where`` (a small tmpfs) to the last byte."""
    fd = os.open(where / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 65536):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
