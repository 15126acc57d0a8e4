"""Where records come from: the unit every stage passes on, and the positions that make
re-applying a redelivered record a no-op.

A raw event (one Event Hubs message) holds many records. Its position in the raw topic
(partition, offset) and a record's index in it name the record for good: ingest may split
an event's records over several signins messages, a crash may send them again under new
offsets, but the record keeps its raw position through every hop. Keyed state records the
last position it applied per source (``pipeline.core.driver``), so a record delivered again
after a crash is recognised and not applied twice.
"""

from __future__ import annotations

from typing import NamedTuple

from pipeline.core.records import Record

INDEX_BITS = 20
"""A record's index in its raw event takes the low bits of its position (a 1 MB event holds
far fewer than 2**20 records)."""


class Segment(NamedTuple):
    """Records of one raw event, in delivery order."""

    enqueued_ms: int
    """The event's enqueue time (epoch ms), for end-to-end latency."""
    records: list[Record]
    partition: int = -1
    """Of the raw topic; -1 where records have no position (``scan``)."""
    offset: int = 0
    indexes: list[int] | None = None
    """Each record's index in its raw event where the segment holds only some of them;
    None when it holds them all, in order."""

    def position(self, i: int) -> int:
        """The ``i``-th record's position: ordered like delivery within the raw partition."""
        index = i if self.indexes is None else self.indexes[i]
        return self.offset << INDEX_BITS | index
