from builders import dumps, signin

from pipeline.core.codec import decode_batch, encode_batch
from pipeline.core.parse import normalize, parse_event
from pipeline.core.segments import Segment
from pipeline.core.state import partition_for, record_key
from tools.synth import sample_records


def test_every_record_of_the_sample_round_trips_exactly() -> None:
    records = parse_event(dumps({"records": sample_records()}), max_bytes=10**8).records
    assert len(records) == 471
    sent = [Segment(1234, records[:100], 3, 17), Segment(5678, records[100:], 0, 2, [5, 9])]
    segments = decode_batch(encode_batch(sent))
    assert [s._replace(records=[]) for s in segments] == [s._replace(records=[]) for s in sent]
    decoded = segments[0].records + segments[1].records
    assert decoded == records
    assert [type(r) for r in decoded] == [type(r) for r in records]


def test_partition_is_stable_and_follows_the_user() -> None:
    first = normalize(signin({"id": "a"}))
    second = normalize(signin({"id": "b"}))
    assert record_key(first) == record_key(second) != ""
    assert partition_for(record_key(first), 4) == partition_for(record_key(second), 4)
    assert partition_for("0b9a2f60-1d4e-4b9c-8f0e-2a6c1d3e4f50", 4) == 1  # fixed across runs
    assert {partition_for(f"user-{i}", 4) for i in range(50)} == {0, 1, 2, 3}
