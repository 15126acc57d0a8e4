"""The ingest stage as a pure function: many raw events in, one batch per partition out.

Batching across raw events is what makes the worker fast: the number of sends per second,
not the number of records, is what a Faust agent pays for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from pipeline.parse import Rejected, parse_event
from pipeline.records import Record
from pipeline.wire import encode_segment, join_segments, partition_for, record_key


@dataclass(frozen=True, slots=True)
class Batch:
    partition: int
    """Of the signins topic."""
    data: bytes
    records: int


@dataclass(frozen=True, slots=True)
class Ingested:
    batches: list[Batch]
    """One per signins partition, more where a partition's share exceeds the size limit."""
    rejected: list[tuple[int, Rejected]]
    """(index of the raw event, what was rejected from it)."""
    records: int


def ingest(
    events: Sequence[tuple[bytes, int]], partitions: int, max_bytes: int, batch_bytes: int
) -> Ingested:
    """``events`` are (raw bytes, enqueue time in epoch ms), in delivery order.

    A batch stays under ``batch_bytes`` unless a single record is larger (brokers cap
    request sizes: Event Hubs' Kafka endpoint at 1 MB).
    """
    groups: dict[int, list[tuple[int, list[Record]]]] = {}
    """Partition -> (enqueue time, records) for each raw event that has records there."""
    rejected: list[tuple[int, Rejected]] = []
    total = 0
    for index, (data, enqueued_ms) in enumerate(events):
        try:
            parsed = parse_event(data, max_bytes)
        except Exception as exc:  # a bug must cost one event, never the batch or the worker
            rejected.append((index, processing_error(exc, data)))
            continue
        rejected += [(index, r) for r in parsed.rejected]
        total += len(parsed.records)
        mine: dict[int, list[Record]] = {}
        for record in parsed.records:
            mine.setdefault(partition_for(record_key(record), partitions), []).append(record)
        for partition, records in mine.items():
            groups.setdefault(partition, []).append((enqueued_ms, records))
    batches = [
        Batch(partition, data, count)
        for partition, segments in groups.items()
        for data, count in _pack(segments, batch_bytes)
    ]
    return Ingested(batches, rejected, total)


def _pack(segments: list[tuple[int, list[Record]]], limit: int) -> list[tuple[bytes, int]]:
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


def _encoded(segments: list[tuple[int, list[Record]]], limit: int) -> Iterator[tuple[bytes, int]]:
    """Each segment encoded once; one over the limit is halved until it fits (rare: a
    normalized record is about a fifth of its raw size)."""
    for enqueued_ms, records in segments:
        part = encode_segment(enqueued_ms, records)
        if len(part) + 2 > limit and len(records) > 1:
            half = len(records) // 2
            yield from _encoded(
                [(enqueued_ms, records[:half]), (enqueued_ms, records[half:])], limit
            )
        else:
            yield part, len(records)


def processing_error(exc: Exception, raw: bytes) -> Rejected:
    """A bug met while handling ``raw``: dead-lettered with the exception, never re-raised."""
    return Rejected("processing-error", type(exc).__name__, str(exc)[:500], raw)
