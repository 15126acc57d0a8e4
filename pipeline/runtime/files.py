"""Files that hold personal data (alerts, rejected records, checkpoints) are created private.

``open(path, "wb")`` leaves a new file to the umask, which is usually 022: world-readable
alerts with user names and addresses. Here a file gets ``mode`` (``SIGNIN_RISK_FILE_MODE``,
0600 by default) whatever the umask, and a file that already exists is brought to it, so a
file written by an older version or another tool does not stay readable.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

from pipeline.runtime.settings import Settings

DEFAULT_MODE = int(Settings.model_fields["file_mode"].default, 8)
"""``SIGNIN_RISK_FILE_MODE``'s default, for callers built without settings."""
SQLITE_SIDECARS = ("-journal", "-wal", "-shm")
"""Files SQLite keeps beside a database; it creates them with the database file's mode."""


def open_private(path: str | Path, mode: int, *, append: bool = False) -> BinaryIO:
    """``path`` opened for binary writing (truncated, or appended to), with ``mode``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        # os.open's mode passes through the umask and is ignored for an existing file.
        os.fchmod(fd, mode)
        return os.fdopen(fd, "ab" if append else "wb")
    except BaseException:
        os.close(fd)
        raise


def make_private(path: str | Path, mode: int, sidecars: tuple[str, ...] = ()) -> None:
    """Create ``path`` empty if missing and set ``mode`` on it and on any of its
    ``sidecars`` (suffixes, e.g. ``SQLITE_SIDECARS``) that exist, before another library
    (SQLite) opens it: that library then keeps the mode for the files it adds."""
    open_private(path, mode, append=True).close()
    for suffix in sidecars:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(f"{path}{suffix}", mode)
