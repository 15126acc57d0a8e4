"""The ingest stage as a pure function: many raw events in, one batch per partition out.

Batching across raw events is what makes the worker fast: the number of sends per second,
not the number of records, is what a Faust agent pays for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pipeline.core.codec import encode_segment, join_segments
from pipeline.core.parse import parse_event
from pipeline.core.rejects import Rejected, processing_error
from pipeline.core.segments import Segment
from pipeline.core.state import partition_for, record_key


@dataclass(frozen=True, slots=True)
class Batch:
    partition: int
    """Of the signins topic."""
    data: bytes
    records: int


@dataclass(frozen=True, slots=True)
class Received:
    segments: list[Segment]
    """Each raw event that had records, in delivery order."""
    sources: list[int]
    """Index of the raw event of each segment."""
    rejected: list[tuple[int, Rejected]]
    """(index of the raw event, what was rejected from it)."""
    records: int


@dataclass(frozen=True, slots=True)
class Ingested:
    batches: list[Batch]
    """One per signins partition, more where a partition's share exceeds the size limit."""
    rejected: list[tuple[int, Rejected]]
    records: int


def receive(
    events: Sequence[tuple[bytes, int]],
    max_bytes: int,
    origins: Sequence[tuple[int, int]] | None = None,
) -> Received:
    """``events`` are (raw bytes, enqueue time in epoch ms), in delivery order; ``origins``
    their (partition, offset) in the raw topic, where they have one."""
    segments: list[Segment] = []
    sources: list[int] = []
    rejected: list[tuple[int, Rejected]] = []
    total = 0
    for index, (data, enqueued_ms) in enumerate(events):
        try:
            parsed = parse_event(data, max_bytes)
        except Exception as exc:  # a bug must cost one event, never the batch or the worker
            rejected.append((index, processing_error(exc, data)))
            continue
        rejected += [(index, r) for r in parsed.rejected]
        if parsed.records:
            total += len(parsed.records)
            partition, offset = origins[index] if origins is not None else (-1, 0)
            segments.append(Segment(enqueued_ms, parsed.records, partition, offset))
            sources.append(index)
    return Received(segments, sources, rejected, total)


def ingest(
    events: Sequence[tuple[bytes, int]],
    partitions: int,
    max_bytes: int,
    batch_bytes: int,
    origins: Sequence[tuple[int, int]] | None = None,
) -> Ingested:
    """Received events re-keyed to the signins partitions of their users.

    A batch stays under ``batch_bytes`` unless a single record is larger (brokers cap
    request sizes: Event Hubs' Kafka endpoint at 1 MB).
    """
    received = receive(events, max_bytes, origins)
    groups: dict[int, list[Segment]] = {}
    """Partition -> the part of each raw event that has records there."""
    for segment in received.segments:
        records = segment.records
        mine: dict[int, list[int]] = {}
        for i, record in enumerate(records):
            mine.setdefault(partition_for(record_key(record), partitions), []).append(i)
        whole = len(mine) == 1
        for partition, chosen in mine.items():
            part = [records[i] for i in chosen]
            groups.setdefault(partition, []).append(
                segment._replace(records=part, indexes=None if whole else chosen)
            )
    batches = [
        Batch(partition, data, count)
        for partition, segments in groups.items()
        for data, count in _pack(segments, batch_bytes)
    ]
    return Ingested(batches, received.rejected, received.records)


def _pack(segments: list[Segment], limit: int) -> list[tuple[bytes, int]]:
    """Consecutive segments joined into batches of at most ``limit`` bytes, in order."""
    out: list[tuple[bytes, int]] = []
    parts: list[bytes] = []
    size = count = 0
    for part, records in _encoded(segments, limit):
        if parts and size + len(part) + 1 > limit:
            out.append((join_segments(parts), count))
            parts, size, count = [], 0, 0
        parts.append(part)
        size += len(part) + 1
        count += records
    if parts:
        out.append((join_segments(parts), count))
    return out


def _encoded(segments: list[Segment], limit: int) -> Iterator[tuple[bytes, int]]:
    """Each segment encoded once; one over the limit is halved until it fits (rare: a
    normalized record is about a fifth of its raw size)."""
    for segment in segments:
        part = encode_segment(segment)
        records = segment.records
        if len(part) + 2 > limit and len(records) > 1:
            half = len(records) // 2
            indexes = segment.indexes or list(range(len(records)))
            yield from _encoded(
                [
                    segment._replace(records=records[:half], indexes=indexes[:half]),
                    segment._replace(records=records[half:], indexes=indexes[half:]),
                ],
                limit,
            )
        else:
            yield part, len(records)
