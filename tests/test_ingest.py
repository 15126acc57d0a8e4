"""The pure ingest stage: batching across raw events, size limits, rejects per event."""

import orjson
from builders import dumps, signin

from pipeline.core.codec import decode_batch
from pipeline.core.ingest import ingest
from pipeline.core.segments import INDEX_BITS
from tools.synth import sample_records

RECORDS = sample_records()


def _event(records: list[dict[str, object]]) -> bytes:
    return dumps({"records": records})


def _decoded(result_batches: list) -> dict[int, list[tuple[int, list[str]]]]:
    out: dict[int, list[tuple[int, list[str]]]] = {}
    for batch in result_batches:
        for segment in decode_batch(batch.data):
            ids = [r.id for r in segment.records]
            out.setdefault(batch.partition, []).append((segment.enqueued_ms, ids))
    return out


def test_one_batch_per_partition_carries_every_event_with_its_own_time() -> None:
    events = [(_event(RECORDS[:100]), 1000), (_event(RECORDS[100:200]), 2000)]
    result = ingest(events, partitions=4, max_bytes=10**7, batch_bytes=10**7)
    assert sorted(b.partition for b in result.batches) == [0, 1, 2, 3]
    assert result.records == 200 == sum(b.records for b in result.batches)
    decoded = _decoded(result.batches)
    for segments in decoded.values():
        assert [enqueued for enqueued, _ in segments] == [1000, 2000]
    ids = {i for segments in decoded.values() for _, seg in segments for i in seg}
    assert ids == {r["properties"]["id"] for r in RECORDS[:200]}


def test_batches_stay_under_the_size_limit_and_keep_order() -> None:
    events = [(_event(RECORDS[i : i + 20]), i) for i in range(0, 400, 20)]
    small = ingest(events, partitions=2, max_bytes=10**7, batch_bytes=20_000)
    big = ingest(events, partitions=2, max_bytes=10**7, batch_bytes=10**7)
    assert len(big.batches) == 2
    assert len(small.batches) > 10
    assert max(len(b.data) for b in small.batches) <= 20_000
    for partition in (0, 1):
        flat = [
            (enqueued, record_id)
            for enqueued, ids in _decoded(small.batches)[partition]
            for record_id in ids
        ]
        expected = [
            (enqueued, record_id)
            for enqueued, ids in _decoded(big.batches)[partition]
            for record_id in ids
        ]
        assert flat == expected


def test_a_bad_event_costs_only_itself() -> None:
    good = _event([signin({"id": "good-1"})])
    result = ingest(
        [(b"{not json", 1), (good, 2), (orjson.dumps(42), 3)],
        partitions=4,
        max_bytes=10**6,
        batch_bytes=10**6,
    )
    assert [(index, r.reason) for index, r in result.rejected] == [
        (0, "invalid-json"),
        (2, "not-an-object"),
    ]
    assert result.records == 1
    assert [ids for segs in _decoded(result.batches).values() for _, ids in segs] == [["good-1"]]


def test_records_keep_their_raw_position_through_the_batches() -> None:
    """However ingest splits an event over partitions and size-capped batches, each record
    keeps the position (raw offset, index in the event) that idempotent state keys on."""
    events = [(_event(RECORDS[i : i + 40]), i) for i in range(0, 400, 40)]
    origins = [(2, 1000 + n) for n in range(len(events))]
    result = ingest(events, 3, max_bytes=10**7, batch_bytes=6_000, origins=origins)
    positions = {}
    for batch in result.batches:
        for segment in decode_batch(batch.data):
            assert segment.partition == 2
            for i, record in enumerate(segment.records):
                positions[record.id] = segment.position(i)
    expected = {
        r["properties"]["id"]: (1000 + n) << INDEX_BITS | i
        for n in range(len(events))
        for i, r in enumerate(RECORDS[n * 40 : n * 40 + 40])
    }
    assert positions == expected
