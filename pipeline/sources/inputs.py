"""The inputs ``scan``, ``replay`` and ``demo`` are given: files, directories (every file
below, recursively, in sorted order), ``-`` for stdin, and gzip, known by its magic bytes
whatever the name (exports arrive as ``.json.gz``, ``.csv.gz`` or renamed blobs).
"""

from __future__ import annotations

import gzip
import io
import sys
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, cast

GZIP_MAGIC = b"\x1f\x8b"
STDIN = "-"
STDIN_HINT = (
    "signin-risk: reading records from the terminal; paste them and end with Ctrl-D, "
    "or give files: signin-risk {command} FILE|DIR..."
)


class InputError(OSError):
    """An input that cannot be read: ``filename`` names it, ``strerror`` says what is wrong
    (an ``OSError``, so callers that report those report it alike)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(0, problem, name)

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def expand(paths: Sequence[str]) -> list[str]:
    """Every file ``paths`` name, directories replaced by the files below them (sorted, hidden
    ones skipped); raises ``InputError`` for a path that is missing or holds no file."""
    found: list[str] = []
    for name in paths:
        if name == STDIN:
            found.append(name)
            continue
        path = Path(name)
        if path.is_dir():
            files = sorted(
                str(f)
                for f in path.rglob("*")
                if f.is_file() and not any(p.startswith(".") for p in f.relative_to(path).parts)
            )
            if not files:
                raise InputError(name, "directory holds no files")
            found += files
        elif path.is_file():
            found.append(name)
        elif path.exists():
            raise InputError(name, "not a file or directory")
        else:
            raise InputError(name, "no such file or directory")
    return found


def display_name(path: str) -> str:
    return "<stdin>" if path == STDIN else path


def size(path: str) -> int | None:
    """Bytes on disk (compressed for gzip), None for stdin: what a progress bar counts."""
    return None if path == STDIN else Path(path).stat().st_size


BUFFER = 1 << 20
"""Bytes read from a file at a time."""


class _Reader(io.RawIOBase):
    """Reads ``source``, telling ``counted`` how many bytes each read brought (a progress
    bar's step), and turning a failure into an ``InputError`` that names the input: reading
    goes on while records are judged, far from where the input was opened."""

    def __init__(self, source: Any, name: str, counted: Callable[[int], object] | None) -> None:
        self._source, self._name, self._counted = source, name, counted

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            n: int = self._source.readinto(buffer)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise InputError(self._name, f"not a readable gzip file ({exc})") from None
        except InputError:
            raise
        except OSError as exc:
            raise InputError(self._name, exc.strerror or str(exc)) from None
        if self._counted is not None and n:
            self._counted(n)
        return n


@contextmanager
def open_input(path: str, counted: Callable[[int], object] | None = None) -> Iterator[BinaryIO]:
    """``path`` (or stdin, left open) for reading, decompressed when it is gzip; ``counted``
    is told the bytes read from it (compressed), ``InputError`` raised when it fails."""
    name = display_name(path)
    try:
        raw: Any = sys.stdin.buffer if path == STDIN else open(path, "rb", buffering=0)  # noqa: SIM115
    except OSError as exc:
        raise InputError(name, exc.strerror or str(exc)) from None
    try:
        stream = io.BufferedReader(_Reader(raw, name, counted), BUFFER)
        if stream.peek(2)[:2] == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=stream, mode="rb") as unzipped:
                yield cast(BinaryIO, io.BufferedReader(_Reader(unzipped, name, None), BUFFER))
        else:
            yield cast(BinaryIO, stream)
    finally:
        if path != STDIN:
            raw.close()


def read_input(path: str) -> bytes:
    """The whole content of ``path``, decompressed; ``InputError`` when it cannot be read."""
    with open_input(path) as stream:
        return stream.read()


def read_inputs(paths: Sequence[str]) -> Iterator[tuple[str, bytes]]:
    """(name, content) of every input, one at a time."""
    for path in paths:
        yield display_name(path), read_input(path)


def open_inputs(
    paths: Sequence[str], counted: Callable[[int], object] | None = None
) -> Iterator[tuple[str, BinaryIO]]:
    """(name, stream) of every input, one open at a time: each is closed when the next is
    asked for; ``counted`` as for ``open_input``."""
    for path in paths:
        with open_input(path, counted) as stream:
            yield display_name(path), stream
