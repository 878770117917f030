"""Opening the store file: connecting (read-write, or read-only where the file cannot be written),
and naming the real cause when SQLite refuses (read-only, no space, permission, locked by a
process, corrupt) with the fix, so a healthy file is never called corrupt.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

BUSY_TIMEOUT_S = 30.0  # how long a second process waits for the one creating or migrating the store


def import_sqlite_utils() -> Any:
    """sqlite-utils (the writes and migrations go through it), imported without pandas where pandas
    is not loaded yet: sqlite-utils imports pandas, when installed, only to map ``pandas.Timestamp``
    to TEXT, which the store never writes, and pandas costs each process that writes a result a
    second (three on a loaded machine). A later ``import pandas`` works as usual."""
    if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
        import sqlite_utils

        return sqlite_utils
    sys.modules["pandas"] = None  # type: ignore[assignment]  # an import of pandas stops here
    try:
        import sqlite_utils
    finally:
        if "pandas" in sys.modules and sys.modules["pandas"] is None:
            del sys.modules["pandas"]
    return sqlite_utils


def writable(path: Path) -> bool:
    """Whether this process could write ``path`` (and its journal beside it)."""
    parent = path.parent if path.parent.exists() else path.parent.parent
    if path.exists() and not os.access(path, os.W_OK):
        return False
    return os.access(parent, os.W_OK)


def connect(path: Path) -> tuple[sqlite3.Connection, bool]:
    """(connection, read_only). A file this process cannot write is opened read-only: ``mode=ro``,
    then ``immutable=1`` where even the WAL index beside it cannot be created (a read-only
    directory or mount)."""
    if not path.exists() or writable(path):
        return sqlite3.connect(path, check_same_thread=False, timeout=BUSY_TIMEOUT_S), False
    uri = "file:" + quote(str(path.resolve()))
    for params in ("mode=ro", "mode=ro&immutable=1"):
        conn = sqlite3.connect(f"{uri}?{params}", uri=True, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn, True
        except sqlite3.OperationalError:
            conn.close()
    raise sqlite3.OperationalError("unable to open database file")


def _free_mb(path: Path) -> float | None:
    for candidate in (path.parent, path.parent.parent, Path(path.anchor or "/")):
        try:
            return shutil.disk_usage(candidate).free / 1e6
        except OSError:
            continue
    return None


def _holders(path: Path) -> list[int]:
    """Process ids that have the store file open (other than this one)."""
    try:
        import psutil
    except ImportError:
        return []
    target = str(path.resolve())
    pids = []
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == os.getpid():
            continue
        try:
            if any(f.path in (target, target + "-wal") for f in proc.open_files()):
                pids.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return pids


def _read_only_mount(path: Path) -> bool:
    for candidate in (path.parent, path.parent.parent):
        try:
            return bool(os.statvfs(candidate).f_flag & os.ST_RDONLY)
        except OSError:
            continue
    return False


def _file_size_limit() -> int | None:
    """This process's file size limit in bytes (``ulimit -f``), where one is set."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


def no_space_message(path: Path) -> str:
    free = _free_mb(path)
    where = f" ({free:.1f} MB free)" if free is not None else ""
    limit = _file_size_limit()
    if limit is not None:
        where += f" (or this process's file size limit, ulimit -f, of {limit / 1e6:.2f} MB was reached)"
    return (f"no space left on the disk holding {path}{where}: free some space (or choose another file with "
            "--db); the store itself is intact")


def describe(path: Path, exc: BaseException) -> str:
    """One line naming why ``path`` could not be opened or written, and what to do."""
    text = str(exc)
    low = text.lower()
    code = getattr(exc, "errno", None)
    if "disk is full" in low or code in (errno.ENOSPC, errno.EFBIG) or (
            "disk i/o error" in low and ((_free_mb(path) or 1e9) < 1.0 or _file_size_limit())):
        return no_space_message(path)
    if "database is locked" in low or "database is busy" in low:
        pids = _holders(path)
        who = f"process {', '.join(map(str, pids))}" if pids else "another process"
        return (f"{path} is locked by {who} (still busy after {BUSY_TIMEOUT_S:.0f} s): wait for it to finish, "
                "or stop it; the store itself is intact")
    if code == errno.EROFS or "read-only file system" in low or (
            ("readonly" in low or "unable to open" in low) and _read_only_mount(path)):
        return (f"{path.parent} is on a read-only file system: qbench can read its results but not store new "
                "ones; remount it writable or choose another file with --db")
    if "readonly" in low or "read-only" in low or code in (errno.EACCES, errno.EPERM) or (
            "unable to open" in low and not writable(path)):
        owner = ""
        try:
            import pwd

            owner = f" (owned by {pwd.getpwuid((path if path.exists() else path.parent).stat().st_uid).pw_name})"
        except (KeyError, OSError, ImportError):
            pass
        return (f"no permission to write {path if path.exists() else path.parent}{owner}: fix its permissions "
                "(chmod/chown) or choose another file with --db; the store itself is intact")
    if "unable to open" in low:
        return f"cannot open {path} ({text}): check that its folder exists and is reachable, or choose --db"
    if "disk i/o error" in low:
        return (f"reading or writing {path} failed at the disk (disk I/O error): check the disk (dmesg) and retry; "
                "qbench left the file untouched")
    return (f"{path} is corrupt or not a database ({text}); qbench left it untouched. "
            "Move it away or choose another file with --db.")


def write_error(path: Path, exc: BaseException) -> str | None:
    """The one-line cause of a failed write (no space, read-only, locked), or None for another error."""
    if not isinstance(exc, sqlite3.Error) and not (
            isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EROFS)):
        return None
    message = describe(path, exc)
    return None if "is corrupt or not a database" in message else message
