"""The ingest stage as a pure function: one raw event in, one batch per partition out."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.parse import Rejected, parse_event
from pipeline.records import Record
from pipeline.wire import encode_batch, partition_for, record_key


@dataclass(frozen=True, slots=True)
class Ingested:
    batches: dict[int, bytes]
    """Partition of the signins topic -> encoded batch of that partition's records."""
    counts: dict[int, int]
    """Partition -> how many records its batch carries."""
    rejected: list[Rejected]
    records: int


def ingest(data: bytes, enqueued_ms: int, partitions: int, max_bytes: int) -> Ingested:
    parsed = parse_event(data, max_bytes)
    groups: dict[int, list[Record]] = {}
    for record in parsed.records:
        groups.setdefault(partition_for(record_key(record), partitions), []).append(record)
    batches = {p: encode_batch(records, enqueued_ms) for p, records in groups.items()}
    counts = {p: len(records) for p, records in groups.items()}
    return Ingested(batches, counts, parsed.rejected, len(parsed.records))
