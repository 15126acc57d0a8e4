"""Alert sinks: where ``signin-risk forward`` delivers the alerts topic.

A sink buffers with ``add`` and delivers with ``flush``; the forwarder commits its offsets
only after a flush succeeded, so every alert arrives at least once and its id lets the
receiver drop repeats.
"""

from __future__ import annotations

from typing import Protocol


class Sink(Protocol):
    name: str
    max_batch: int
    """Alerts per flush at most."""

    def add(self, alert: bytes) -> None: ...

    async def flush(self) -> None:
        """Deliver everything added since the last successful flush, or raise (and keep it)."""

    async def close(self) -> None: ...
