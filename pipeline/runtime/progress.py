"""Progress bars of the commands that read or send large inputs (``scan``, ``inventory``,
``report``, ``replay``): on stderr, and only when stderr is a terminal, so a log file, a
pipe or CI output never holds a bar's escape codes."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from pipeline.sources.inputs import STDIN, size


def bar(desc: str, total: int | None, shown: bool = True) -> tqdm[Any]:
    """A bar of bytes (``total`` None when unknown, as for stdin); ``shown`` False for a
    ``--quiet`` command."""
    return tqdm(
        desc=desc,
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=not shown or not sys.stderr.isatty(),
        leave=False,
        dynamic_ncols=True,
    )


def input_bytes(paths: Sequence[str]) -> int | None:
    """What a bar over reading ``paths`` counts up to: bytes on disk (compressed for gzip),
    unknown when one is stdin."""
    if STDIN in paths:
        return None
    return sum(size(path) or 0 for path in paths)
