"""File replay to the raw topic: envelopes and bad lines arrive byte for byte."""

from __future__ import annotations

import io
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaConsumer

from pipeline.core.parse import parse_event, parse_file
from pipeline.runtime.settings import Settings
from pipeline.runtime.topics import create_topics
from pipeline.sources.inputs import InputError
from pipeline.sources.replay import (
    ReplayError,
    envelopes,
    iter_messages,
    pace,
    records_in_line,
    replay,
)
from tests import loganalytics_export as la
from tools.synth import sample_envelopes, sample_records

BAD_LINE = b'{"records": [{"category": "SignInLogs", "properties": {"id": "cut-off'


def _consume(settings: Settings, expected: int) -> list[bytes]:
    """Every message on the raw topic, read without a consumer group (no rebalance wait)."""
    consumer = KafkaConsumer(
        settings.topic("raw"),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=20,
        consumer_timeout_ms=3000,
    )
    values: list[bytes] = []
    try:
        for message in consumer:
            values.append(message.value)
            if len(values) >= expected:
                break
        if len(values) == expected:  # anything extra would arrive within a short poll
            values += [m.value for batch in consumer.poll(300).values() for m in batch]
    finally:
        consumer.close()
    return values


def test_json_lines_arrive_unchanged_bad_lines_included(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    lines = [orjson.dumps(e) for e in sample_envelopes(sample_records()[:60], per_envelope=20)]
    lines.insert(1, BAD_LINE)
    lines.append(b"\xff\xfe not utf-8")
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines[:2]) + b"\n\n" + b"\n".join(lines[2:]) + b"\n")
    create_topics(kafka_settings, timeout_s=10)

    stats = replay([str(path)], kafka_settings, progress=False)

    assert (stats.messages, stats.skipped) == (5, 0)
    assert stats.records_estimate == 60 + 1 + 1  # the cut-off line names one category
    assert stats.bytes == sum(map(len, lines))
    assert Counter(_consume(kafka_settings, len(lines))) == Counter(lines)


def test_a_top_level_array_is_cut_into_envelopes(kafka_settings: Settings, tmp_path: Path) -> None:
    records = sample_records()[:120]
    path = tmp_path / "export.json"
    path.write_bytes(orjson.dumps(records, option=orjson.OPT_INDENT_2))
    create_topics(kafka_settings, timeout_s=10)

    stats = replay([str(path)], kafka_settings, rate=1e9, progress=False)

    assert (stats.messages, stats.records_estimate) == (3, 120)
    received = [orjson.loads(v) for v in _consume(kafka_settings, 3)]
    assert sorted(len(e["records"]) for e in received) == [20, 50, 50]
    got = Counter(orjson.dumps(r) for e in received for r in e["records"])
    assert got == Counter(orjson.dumps(r) for r in records)


def test_replay_refuses_a_missing_topic_instead_of_auto_creating_it(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(b"{}\n")
    with pytest.raises(ReplayError, match="does not exist"):
        replay([str(path)], kafka_settings, progress=False)
    with pytest.raises(InputError, match="no such file"):
        replay([str(tmp_path / "missing.json")], kafka_settings, progress=False)


def _messages(data: bytes, max_bytes: int = 1 << 20) -> list[tuple[bytes, int]]:
    return [(m.value, m.records) for m in iter_messages(io.BytesIO(data), "f", max_bytes)]


def test_documents_are_sent_whole_and_compact() -> None:
    envelope = {"records": [{"category": "SignInLogs", "n": i} for i in range(3)]}
    assert _messages(orjson.dumps(envelope, option=orjson.OPT_INDENT_2)) == [
        (orjson.dumps(envelope), 3)
    ]
    record = {"category": "SignInLogs", "properties": {"id": "x"}}
    assert _messages(b"\n" + orjson.dumps(record, option=orjson.OPT_INDENT_2)) == [
        (orjson.dumps(record), 1)
    ]
    crlf = b'{"records": [{"category": "A"}, {"category": "B"}]}\r\n[1, 2]\r\n'
    assert _messages(crlf) == [
        (b'{"records": [{"category": "A"}, {"category": "B"}]}', 2),
        (b"[1, 2]", 1),
    ]
    not_json = b"[\n  {oops\n"
    assert _messages(not_json) == [(b"[", 1), (b"  {oops", 1)]
    assert _messages(b"") == _messages(b"\n \n") == []


def test_envelopes_respect_count_and_size_limits() -> None:
    records = [{"category": "SignInLogs", "pad": "x" * 100} for _ in range(120)]
    counts = [n for _, n in envelopes(records, max_bytes=1 << 20)]
    assert counts == [50, 50, 20]
    small = list(envelopes(records, max_bytes=1000))
    assert all(len(value) <= 1000 for value, _ in small)
    assert sum(n for _, n in small) == 120
    assert orjson.loads(small[0][0])["records"] == records[: small[0][1]]
    huge = [{"pad": "y" * 2000}, {"pad": "z"}]
    assert [n for _, n in envelopes(huge, max_bytes=1000)] == [1, 1]
    oversized = orjson.dumps({"records": records})
    cut = _messages(oversized, max_bytes=4000)  # a one-line file is a document, as for scan
    assert len(cut) > 1 and all(len(v) <= 4000 for v, _ in cut)
    assert sum(n for _, n in cut) == 120
    assert _messages(oversized + b"\n{}\n", max_bytes=4000) == [(oversized, 120), (b"{}", 1)]
    assert _messages(b"{" + b" " * 5000 + b"}", max_bytes=4000) == [(b"{}", 1)]
    assert _messages(b"{oops" + b" " * 5000 + b"}", max_bytes=4000)[0][1] == 1


def test_rate_counts_records_and_paces_from_the_start() -> None:
    assert records_in_line(b'{"records":[{"category":"a"},{"category":"b"}]}') == 2
    assert records_in_line(b"garbage") == 1
    assert pace(0, 100.0, 0.0) == 0.0
    assert pace(50, 100.0, 0.2) == pytest.approx(0.3)
    assert pace(50, 100.0, 0.9) == 0.0  # behind schedule: send at once


def test_stdin_and_lines_too_large_to_send(
    kafka_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = kafka_settings.model_copy(update={"max_event_bytes": 1024})
    over_limit = b'{"pad": "' + b"x" * 2000 + b'"}'  # sent: the worker dead-letters it
    unsendable = b'{"pad": "' + b"y" * 100_000 + b'"}'  # beyond the producer's request size
    data = b"{}\n" + over_limit + b"\n" + unsendable + b"\n"
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    create_topics(settings, timeout_s=10)

    stats = replay(["-"], settings, progress=False)

    assert (stats.messages, stats.skipped) == (2, 1)
    assert Counter(_consume(settings, 2)) == Counter([b"{}", over_limit])


SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"


def _worker_reads(messages: list[tuple[bytes, int]]) -> list[Any]:
    """The records the worker makes of replayed messages (``parse_event``, as ingest does)."""
    records: list[Any] = []
    for value, _ in messages:
        parsed = parse_event(value)
        assert parsed.rejected == []
        records += parsed.records
    return records


def test_a_portal_csv_export_is_sent_as_rows_the_worker_reads_as_scan_does() -> None:
    data = la.portal_csv(la.rows(la.documents(SAMPLE.read_bytes())))
    messages = _messages(data)
    expected = parse_file(data).records
    assert len(expected) == 471 and parse_file(data).rejected == []
    assert len(messages) == 10  # envelopes of at most 50 rows
    assert sum(count for _, count in messages) == 471
    assert _worker_reads(messages) == expected
    crlf = data.replace(b"\n", b"\r\n")
    assert _worker_reads(_messages(crlf)) == parse_file(crlf).records


def test_a_query_api_result_too_large_for_one_event_is_cut_into_row_envelopes() -> None:
    data = la.query_api(la.rows(la.documents(SAMPLE.read_bytes())))
    messages = _messages(data, max_bytes=64 * 1024)
    assert len(messages) > 10
    assert _worker_reads(messages) == parse_file(data).records


def test_csv_replayed_to_the_broker_arrives_as_json_envelopes(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    create_topics(kafka_settings)
    path = tmp_path / "SigninLogs.csv"
    path.write_bytes(la.portal_csv(la.rows(la.documents(SAMPLE.read_bytes()))))
    stats = replay([str(path)], kafka_settings, progress=False)
    assert (stats.messages, stats.records_estimate) == (10, 471)
    values = _consume(kafka_settings, stats.messages)
    assert _worker_reads([(v, 0) for v in values]) == parse_file(path.read_bytes()).records
