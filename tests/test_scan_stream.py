"""``scan`` reads as it judges: its inputs are parsed a piece at a time and put back in
event time within the lateness window, and what comes out is what sorting every record
first gave (the reference below is that older way, kept here to compare against)."""

from __future__ import annotations

import gzip
import io
import random
from collections.abc import Iterator
from datetime import timedelta
from operator import attrgetter
from pathlib import Path

import orjson
import pytest

from pipeline.core import scan as scan_module
from pipeline.core.codec import RULE_STATES
from pipeline.core.detect import Engine, alert_json
from pipeline.core.driver import Driver
from pipeline.core.parse import Parsed, parse_file, parse_stream
from pipeline.core.policy import Policy
from pipeline.core.records import Alert, Record, RiskEvent, SignIn
from pipeline.core.scan import EventTimeOrder, ScanStats, detect, scan
from pipeline.core.segments import Segment
from pipeline.core.state import KeyedState
from pipeline.sources.inputs import open_input
from tests import loganalytics_export as la
from tools.synth import sample_days

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "public"
CORPUS_FILES = sorted(p for p in CORPUS.glob("*") if p.suffix in (".log", ".ndjson"))
DAYS = b"".join(orjson.dumps(e) + b"\n" for e in sample_days(12))
WINDOW = timedelta(minutes=5)


def sorted_reference(records: list[Record]) -> list[Record]:
    """Every record sorted by time (stable), then each detection moved just after the first
    sign-in it names when that sign-in sorted later: ``scan`` before it streamed."""
    records = sorted(records, key=attrgetter("time"))
    first: dict[str, int] = {}
    for i, r in enumerate(records):
        if isinstance(r, SignIn):
            first.setdefault(r.id, i)
    after: dict[int, list[Record]] = {}
    moved: set[int] = set()
    for i, r in enumerate(records):
        if isinstance(r, RiskEvent) and r.request_id and first.get(r.request_id, -1) > i:
            after.setdefault(first[r.request_id], []).append(r)
            moved.add(i)
    out: list[Record] = []
    for i, r in enumerate(records):
        if i not in moved:
            out.append(r)
        out += after.get(i, ())
    return out


def reference_alerts(data: bytes) -> list[bytes]:
    """Last version of each alert, in first-raised order, from the sorted records."""
    records = sorted_reference(parse_file(data).records)
    driver = Driver(Engine(Policy()), KeyedState(RULE_STATES), KeyedState(RULE_STATES), 1)
    found: dict[str, Alert] = {}
    for start in range(0, len(records), 4096):
        result = driver.segments([Segment(0, records[start : start + 4096])], direct=True)
        driver.flush()
        for _, alerts in result.alerts:
            found.update((a.id, a) for a in alerts)
    return [_comparable(alert_json(a)) for a in found.values()]


def _comparable(line: bytes) -> bytes:
    alert = orjson.loads(line)
    alert.pop("detected_at")
    return orjson.dumps(alert)


def streamed_alerts(data: bytes) -> tuple[list[bytes], ScanStats]:
    out = io.BytesIO()
    stats = scan([("input", io.BytesIO(data))], Policy(), out)
    return [_comparable(line) for line in out.getvalue().splitlines()], stats


def _parts(data: bytes) -> Parsed:
    joined = Parsed()
    for part in parse_stream(io.BytesIO(data), 1 << 20):
        joined.records += part.records
        joined.rejected += part.rejected
    return joined


def _same_parse(data: bytes) -> None:
    whole, streamed = parse_file(data, 1 << 20), _parts(data)
    assert streamed.records == whole.records
    assert [(r.reason, r.field, r.line) for r in streamed.rejected] == [
        (r.reason, r.field, r.line) for r in whole.rejected
    ]


@pytest.mark.parametrize("path", CORPUS_FILES, ids=attrgetter("name"))
def test_every_corpus_file_streams_into_what_the_whole_file_parses_to(path: Path) -> None:
    _same_parse(path.read_bytes())


@pytest.mark.parametrize("form", sorted(la.FORMS))
def test_every_log_analytics_form_streams_into_what_the_whole_file_parses_to(form: str) -> None:
    data = la.FORMS[form](la.rows(la.documents(SAMPLE.read_bytes())))
    _same_parse(data)
    _same_parse(data.replace(b"\n", b"\r\n"))


def test_documents_lines_and_broken_input_stream_as_the_whole_file_parses() -> None:
    envelope = orjson.loads(SAMPLE.read_bytes().splitlines()[0])
    pretty = orjson.dumps(envelope, option=orjson.OPT_INDENT_2)
    for data in (
        pretty,  # one document over many lines
        orjson.dumps(envelope["records"], option=orjson.OPT_INDENT_2),
        b"\n\n" + orjson.dumps(envelope) + b"\n\n",  # one line: a whole document
        SAMPLE.read_bytes() + b"not json\n{\n[1,\n" + b"\xff\xfe\n",
        b'{"records": [\n' + SAMPLE.read_bytes(),  # starts as a document, is none
        b"a,b\n1,2\n",  # CSV without a Log Analytics header
        b"\xef\xbb\xbf" + SAMPLE.read_bytes(),
        b"",
    ):
        _same_parse(data)


def test_json_lines_are_parsed_before_the_input_is_read_to_its_end() -> None:
    stream = io.BytesIO(DAYS)
    parts = parse_stream(stream, 1 << 20)
    assert next(parts).records
    assert 0 < stream.tell() < len(DAYS) / 2


def test_a_gzip_export_is_read_as_a_stream_counting_compressed_bytes(tmp_path: Path) -> None:
    compressed = gzip.compress(DAYS)
    (tmp_path / "days.json.gz").write_bytes(compressed)
    steps: list[int] = []
    with open_input(str(tmp_path / "days.json.gz"), steps.append) as stream:
        assert _parts(stream.read()).records == parse_file(DAYS).records
    assert sum(steps) == len(compressed)


def test_scan_gives_the_sorted_alerts_on_the_sample_the_corpus_and_twelve_days() -> None:
    corpus = b"".join(p.read_bytes().rstrip(b"\n") + b"\n" for p in CORPUS_FILES)
    for data in (SAMPLE.read_bytes(), corpus, DAYS):
        alerts, stats = streamed_alerts(data)
        assert alerts == reference_alerts(data)
        assert stats.late == 0
    assert len(reference_alerts(DAYS)) > 300


def shuffled_within(data: bytes, window: timedelta, seed: int) -> bytes:
    """The records of ``data`` delivered out of order, none later than ``window`` behind
    the newest delivered before it: each is sent at its time plus up to 99% of the window."""
    rng = random.Random(seed)
    docs = [d for line in data.splitlines() for d in orjson.loads(line)["records"]]
    records = parse_file(data).records
    assert len(docs) == len(records)
    slack = window.total_seconds() * 0.99
    delays = [r.time.timestamp() + rng.uniform(0, slack) for r in records]
    order = sorted(range(len(docs)), key=delays.__getitem__)
    shuffled = [docs[i] for i in order]
    return b"".join(
        orjson.dumps({"records": shuffled[i : i + 40]}) + b"\n" for i in range(0, len(shuffled), 40)
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_records_shuffled_within_the_lateness_give_the_sorted_alerts(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(scan_module, "KEEP", 0)  # hold only what the window needs
    data = shuffled_within(DAYS, WINDOW, seed)
    assert data != DAYS
    alerts, stats = streamed_alerts(data)
    assert alerts == reference_alerts(data) == reference_alerts(DAYS)
    assert stats.late == 0


def test_a_small_input_is_sorted_whole_whatever_its_order() -> None:
    backwards = b"\n".join(reversed(SAMPLE.read_bytes().splitlines()))
    alerts, stats = streamed_alerts(backwards)
    assert alerts == reference_alerts(backwards)
    assert stats.late == 0


def test_a_record_later_than_the_window_is_judged_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scan_module, "KEEP", 0)
    lines = DAYS.splitlines()
    late = lines.pop(3)  # delivered hours after its time
    data = b"\n".join([*lines[:200], late, *lines[200:]])
    stats, before = ScanStats(), ScanStats()
    judged = {
        e.signin.id for result in detect([("x", data)], Policy(), stats) for e in result.enriched
    }
    for _ in detect([("x", DAYS)], Policy(), before):
        pass
    late_records = parse_file(late).records
    assert before.late == 24  # the sample's two sign-ins 6 and 7 minutes late, each day
    assert stats.late == before.late + len(late_records)
    assert {r.id for r in late_records if isinstance(r, SignIn)} <= judged
    assert stats.records == len(parse_file(DAYS).records)
    assert f"reorder window (judged as they came): {stats.late}" in stats.summary()


def _records(n: int, step_s: float) -> Iterator[Record]:
    (first,) = [r for r in parse_file(SAMPLE.read_bytes()).records[:1]]
    assert isinstance(first, SignIn)
    for i in range(n):
        yield _moved(first, i, step_s)


def _moved(signin: SignIn, i: int, step_s: float) -> SignIn:
    return signin._replace(id=f"id-{i % 1000}", time=signin.time + timedelta(seconds=i * step_s))


def test_the_order_holds_the_window_not_the_input_and_forgets_old_ids() -> None:
    order = EventTimeOrder(300.0, keep=0)
    released = 0
    for _ in order.ordered(_records(5000, 1.0)):
        released += 1
        assert len(order._held) <= 302  # a record a second, a 5-minute window
        assert len(order._seen) <= 302
    assert released == 5000
    assert order.duplicates == 0  # each id comes back 1,000 s later: forgotten by then
    assert order.late == 0


def test_a_redelivered_record_within_the_window_is_a_duplicate() -> None:
    records = list(_records(10, 1.0))
    order = EventTimeOrder(300.0, keep=0)
    out = list(order.ordered([*records, records[4]]))
    assert len(out) == 11 and order.duplicates == 1 and order.late == 0


def test_a_detection_follows_its_sign_in_that_it_precedes_by_time() -> None:
    records = parse_file(SAMPLE.read_bytes()).records
    joined = {r.request_id for r in records if isinstance(r, RiskEvent) and r.request_id}
    signins = [r for r in records if isinstance(r, SignIn) and r.id in joined]
    assert signins
    in_time = sorted(records, key=attrgetter("time"))
    assert in_time != sorted_reference(records)  # a detection sorts before its sign-in
    assert list(EventTimeOrder(300.0, 10_000).ordered(records)) == sorted_reference(records)
    # two of the sample's sign-ins are later than the window: given in time, none is
    assert list(EventTimeOrder(300.0, 0).ordered(in_time)) == sorted_reference(records)


def test_detect_yields_before_it_has_read_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scan_module, "KEEP", 0)
    stream = io.BytesIO(DAYS)
    results = detect([("days", stream)], Policy(), ScanStats())
    next(results)  # the first 4,096 records judged
    assert stream.tell() < len(DAYS)
