"""The worker on the real embedded broker: same alerts as scan, dead letters, restarts.

No mocks: a real Tansu broker, a real worker process (``signin-risk worker``), kafka-python
producers and consumers around it.
"""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import dumps, scenario_records, signin
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from pipeline.core.codec import RULE_STATES
from pipeline.core.detect import Engine
from pipeline.core.driver import Driver
from pipeline.core.ingest import receive
from pipeline.core.ledger import Ledger
from pipeline.core.policy import load_policy
from pipeline.core.rules import REGISTRY, Rule
from pipeline.core.state import KeyedState, partition_for
from pipeline.runtime.broker import free_port
from pipeline.runtime.procs import spawn_worker, terminate
from pipeline.runtime.settings import Settings
from pipeline.runtime.topics import TABLES, create_topics
from pipeline.sources.replay import replay
from tools.synth import sample_days

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"
Worker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def streaming(kafka_settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, Worker]]:
    """Topics created, and a function that starts a worker process (stopped afterwards)."""
    settings = kafka_settings.model_copy(update={"metrics_port": free_port()})
    create_topics(settings)
    started: list[subprocess.Popen[bytes]] = []

    def start(**update: object) -> subprocess.Popen[bytes]:
        with (tmp_path / f"worker-{len(started)}.log").open("wb") as log:
            proc = spawn_worker(settings.model_copy(update=update), log)
        started.append(proc)
        return proc

    yield settings, start
    for proc in started:
        terminate(proc, 30, "worker")
    # A processing error dead-letters its batch and the worker goes on; in these tests it is
    # always a bug, and one that a later alert can hide.
    for log in sorted(tmp_path.glob("worker-*.log")):
        assert "Traceback" not in log.read_text(errors="replace"), log.read_text()[-4000:]


def stop(proc: subprocess.Popen[bytes]) -> int:
    return terminate(proc, 30, "worker")


def reader(settings: Settings, topic: str, idle_ms: int = 500) -> KafkaConsumer:
    """A consumer of ``topic`` from its start, outside any group, that stops iterating
    after ``idle_ms`` without a message."""
    return KafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=idle_ms,
    )


def consume(
    settings: Settings, topic: str, until: Callable[[list[bytes]], bool], timeout_s: float = 60.0
) -> list[bytes]:
    consumer = reader(settings, topic)
    values: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not until(values) and time.monotonic() < deadline:
            values += [m.value for m in consumer]
    finally:
        consumer.close()
    return values


def scan_alerts(path: Path, policy: Path | None = None) -> dict[str, dict[str, object]]:
    options = ["--policy", str(policy)] if policy else []
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "scan", *options, str(path)],
        capture_output=True,
        check=True,
    ).stdout
    return {a["id"]: a for a in map(orjson.loads, out.splitlines())}


def metric_sum(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def series(port: int, name: str, **labels: str) -> float | None:
    """One series of a worker's ``/metrics``; None while it is absent or the port is down."""
    selector = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "} "
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    except OSError:
        return None
    line = next((x for x in text.decode().splitlines() if x.startswith(selector)), None)
    return None if line is None else float(line.rsplit(" ", 1)[1])


def wait_for(
    what: str, probe: Callable[[], Any], done: Callable[[Any], bool], timeout_s: float
) -> Any:
    """Poll ``probe`` until ``done`` holds for its answer; fail with the last one seen."""
    deadline = time.monotonic() + timeout_s
    while not done(seen := probe()):
        assert time.monotonic() < deadline, f"no {what} in {timeout_s} s: last saw {seen}"
        time.sleep(0.5)
    return seen


def read_topic(settings: Settings, name: str, timeout_s: float = 30.0) -> list[ConsumerRecord]:
    """Every record of the topic ``name`` (the full name), read outside any group up to each
    partition's high watermark as a fetch reports it: Tansu's ListOffsets under-reports log
    ends (see pipeline/runtime/transport.py)."""
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    records: list[ConsumerRecord] = []
    try:
        partitions = consumer.partitions_for_topic(name)
        assert partitions, f"no topic {name}"
        tps = [TopicPartition(name, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s

        def at_end(tp: TopicPartition) -> bool:
            end = consumer.highwater(tp)
            return end is not None and consumer.position(tp) >= end

        while not all(at_end(tp) for tp in tps):
            assert time.monotonic() < deadline, f"{name} not read to its end in {timeout_s} s"
            for batch in consumer.poll(timeout_ms=200).values():
                records += batch
    finally:
        consumer.close()
    return records


def misfiled(settings: Settings, tables: tuple[str, ...]) -> tuple[int, list[str]]:
    """How many changelog records of ``tables`` there are, and those not in their key's
    partition (the partition ingest routes the key's records to). Faust's table keys are
    JSON."""
    records = [r for table in tables for r in read_topic(settings, settings.changelog(table))]
    wrong = [
        f"{r.topic}[{r.partition}] {r.key!r}"
        for r in records
        if r.partition != partition_for(orjson.loads(r.key), settings.partitions)
    ]
    return len(records), wrong


def comparable(alert: dict[str, object]) -> dict[str, object]:
    """The alert without its detection time, and without its incident id, which plain
    ``scan`` does not give (the incident tests below compare incident ids)."""
    return {k: v for k, v in alert.items() if k not in ("detected_at", "incident_id")}


def last_versions(values: list[bytes]) -> dict[str, dict[str, Any]]:
    """Alert id -> the last version on the topic (an incident's alert is updated in place)."""
    return {a["id"]: a for a in map(orjson.loads, values)}


def differences(got: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> list[str]:
    """How the worker's alerts differ from scan's. Single-record alerts must be identical.
    A stateful incident is matched by rule, severity and shared sign-ins, not by id: its id
    names the sign-in that opened it, and the worker sees records in delivery order (across
    partitions, for the by-IP rules) where scan sees event-time order."""

    def single(alerts: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {k: a for k, a in alerts.items() if isinstance(REGISTRY[a["rule"]], Rule)}

    out = []
    have, want = single(got), single(expected)
    if set(have) != set(want):
        out.append(f"ids: missing {set(want) - set(have)}, extra {set(have) - set(want)}")
    for key in set(have) & set(want):
        if comparable(have[key]) != comparable(want[key]):
            out.append(f"{key}: {have[key]} != {want[key]}")
    unmatched = [a for k, a in got.items() if k not in have]
    for key, alert in expected.items():
        if key in want:
            continue
        match = next((a for a in unmatched if same_incident(a, alert)), None)
        if match is None:
            out.append(f"no incident like {alert}")
        else:
            unmatched.remove(match)
    out += [f"extra incident {a}" for a in unmatched]
    return out


def detections_differ(
    got: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]
) -> list[str]:
    """risk-detection alerts that are not exactly scan's. Unlike other incidents, a
    detection's id names the detection, whatever order the records came in; ``same_incident``
    would not see a detection joined to its sign-in in one and not in the other."""
    return [
        f"{key}: {got.get(key)} != {alert}"
        for key, alert in expected.items()
        if alert["rule"] == "risk-detection" and comparable(got.get(key, {})) != comparable(alert)
    ]


def mismatches(got: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> list[str]:
    return differences(got, expected) + detections_differ(got, expected)


def same_incident(a: dict[str, Any], b: dict[str, Any]) -> bool:
    shared = set(a["signin_ids"]) & set(b["signin_ids"])
    return (a["rule"], a["severity"], a["user"], a["ip"]) == (
        b["rule"],
        b["severity"],
        b["user"],
        b["ip"],
    ) and (bool(shared) or not (a["signin_ids"] or b["signin_ids"]))


@pytest.mark.parametrize(
    ("split", "store"),
    [(False, "memory://"), (True, "memory://"), (False, "rocksdb://")],
    ids=["one-process", "stage-per-process", "rocksdb-store"],
)
def test_sample_through_the_worker_gives_the_alerts_of_scan(
    streaming: tuple[Settings, Worker], split: bool, store: str, tmp_path: Path
) -> None:
    settings, start = streaming
    expected = scan_alerts(SAMPLE)
    assert len(expected) >= 20
    data_dir = tmp_path / "tables"
    if split:
        worker = start(stage="detect")
        ingest = start(stage="ingest", metrics_port=free_port())
    else:
        worker = start(store=store, data_dir=str(data_dir))
    replay([str(SAMPLE)], settings, progress=False)
    values = consume(settings, "alerts", lambda v: not mismatches(last_versions(v), expected))
    assert mismatches(last_versions(values), expected) == []
    assert metric_sum(settings.metrics_port, "signin_risk_alerts_total") == len(values)
    assert metric_sum(settings.metrics_port, "signin_risk_signins_total") == 466
    assert metric_sum(settings.metrics_port, "signin_risk_risk_records_total") == 5
    if not split:  # every send was acknowledged, so nothing is left in flight
        assert metric_sum(settings.metrics_port, "signin_risk_records_in_flight") == 0
    lone = not split
    if lone:  # the worker knows it owns every partition, so it skips the hops
        signins = settings.topic("signins")
        wait_for(
            "every signins partition on the gauge",
            lambda: series(settings.metrics_port, "signin_risk_partitions_assigned", topic=signins),
            lambda n: n == settings.partitions,
            timeout_s=15,
        )
    assert stop(worker) == 0  # SIGTERM is a clean shutdown
    if split:
        assert stop(ingest) == 0
    if store == "rocksdb://":  # the table really lived in RocksDB files
        assert list(data_dir.rglob("*.sst")) or list(data_dir.rglob("CURRENT"))
    # A lone worker judges raw events where it parsed them; ingest and detect in processes
    # of their own re-key every sign-in through the signins topic (and failures through by-ip).
    hops = {name: len(read_topic(settings, settings.topic(name))) for name in ("signins", "by-ip")}
    if lone:
        assert hops == {"signins": 0, "by-ip": 0}
    else:
        assert hops["signins"] > 0 and hops["by-ip"] > 0, hops
    # Either way each key's state sits in its own partition, where a worker that takes the
    # partition over recovers it from.
    checked, wrong = misfiled(settings, TABLES)
    assert checked > 0 and wrong == []
    if lone:
        assert changelogged_state(settings) == state_of_raw_topic(settings)[0]


def changelogged_state(settings: Settings) -> dict[str, dict[str, bytes]]:
    """What a worker recovering from the changelogs restores: each table's last value per
    key, deleted keys left out."""
    tables: dict[str, dict[str, bytes]] = {}
    for table in TABLES:
        last: dict[str, bytes | None] = {}
        for r in read_topic(settings, settings.changelog(table)):
            last[orjson.loads(r.key)] = r.value
        tables[table] = {k: v for k, v in last.items() if v is not None}
    return tables


class CountedStore(dict[str, bytes]):
    """A table that counts its writes: the changelog records a worker would send."""

    writes = 0

    def __setitem__(self, key: str, value: bytes) -> None:
        self.writes += 1
        super().__setitem__(key, value)


def state_of_raw_topic(
    settings: Settings, flush_each_event: bool = False
) -> tuple[dict[str, dict[str, bytes]], int]:
    """The state the pure driver and ledger leave after the raw topic's events, each with its raw
    position, in one pass: what the changelogs must hold however the worker's takes,
    flushes and commits fell. And how many values that wrote, flushed once per partition
    or, ``flush_each_event``, after each event (as a worker writing per take of one)."""
    stores = {"user_state": CountedStore(), "ip_state": CountedStore()}
    users, addresses = (KeyedState(RULE_STATES, store) for store in stores.values())
    policy = load_policy(settings.policy_file)
    driver = Driver(Engine(policy), users, addresses, settings.partitions)
    ledger = Ledger(policy, users, addresses)  # incidents and inventory, as the worker keeps
    events = sorted(read_topic(settings, settings.topic("raw")), key=lambda r: r.offset)
    for partition in sorted({r.partition for r in events}):
        mine = [r for r in events if r.partition == partition]
        for take in [[r] for r in mine] if flush_each_event else [mine]:
            received = receive(
                [(r.value, 0) for r in take],
                settings.max_event_bytes,
                [(r.partition, r.offset) for r in take],
            )
            result = driver.segments(received.segments, direct=True)
            ledger.observe(result.enriched)
            for _, alerts in result.alerts:
                for alert in alerts:
                    ledger.track(alert)
            driver.flush()
    writes = sum(store.writes for store in stores.values())
    return {name: dict(store) for name, store in stores.items()}, writes


def test_twelve_sample_days_through_the_worker_give_the_alerts_of_scan(
    streaming: tuple[Settings, Worker], tmp_path: Path
) -> None:
    """Days of one tenant, so state outlives a day: risk-detection keeps 24 h of sign-ins,
    and each day a realtime detection is stamped a fraction of a millisecond before the
    sign-in it names."""
    settings, start = streaming
    path = tmp_path / "days.ndjson"
    envelopes = sample_days(12)
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in envelopes))
    expected = scan_alerts(path)
    assert sum(a["rule"] == "risk-detection" for a in expected.values()) >= 3 * 12
    # A take per raw event, and a commit interval longer than the replay's takes last.
    worker = start(batch_events=1, commit_interval_s=4.0)
    started = time.monotonic()
    replay([str(path)], settings, progress=False)
    values = consume(settings, "alerts", lambda v: not mismatches(last_versions(v), expected))
    assert mismatches(last_versions(values), expected) == []
    risk = ("UserRiskEvents", "RiskyUsers")
    signins = sum(r["category"] not in risk for e in envelopes for r in e["records"])
    assert metric_sum(settings.metrics_port, "signin_risk_signins_total") == signins
    assert stop(worker) == 0
    # State is written once per commit interval: a key changed by many takes in one
    # interval is one changelog record, where writing per take gives one per take.
    intervals = (time.monotonic() - started) / 4.0 + 2
    state, per_take = state_of_raw_topic(settings, flush_each_event=True)
    records = [r for t in TABLES for r in read_topic(settings, settings.changelog(t))]
    assert len(records) <= intervals * sum(map(len, state.values())) < per_take, (
        len(records),
        per_take,
    )


def test_bad_input_is_dead_lettered_and_good_records_still_alert(
    streaming: tuple[Settings, Worker],
) -> None:
    settings, start = streaming
    settings_max = settings.max_event_bytes
    good = signin({"id": "good-1", "clientAppUsed": "IMAP4"})
    no_id = signin({"id": None})
    bad_time = signin({"id": "bad-time", "createdDateTime": 1700000000})
    events = {
        "invalid-json": b"{not json",
        "not-an-object": b"42",
        "bad-type": dumps({"records": {"not": "a list"}}),
        "missing-field": dumps({"records": [no_id, good]}),
        "bad-type-time": dumps({"records": [bad_time]}),
        "too-large": dumps({"records": [signin({"id": "big", "userAgent": "x" * settings_max})]}),
        "invalid-utf8": b'{"records": [\xff]}',
    }
    worker = start()
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, max_request_size=4 * settings_max
    )
    for value in events.values():
        producer.send(settings.topic("raw"), value)
    producer.flush()

    dead = [orjson.loads(v) for v in consume(settings, "deadletter", lambda v: len(v) >= 7)]
    assert sorted(d["reason"] for d in dead) == sorted(
        [
            "invalid-json",
            "not-an-object",
            "bad-type",
            "missing-field",
            "bad-type",
            "too-large",
            "invalid-utf8",
        ]
    )
    for letter in dead:
        assert letter["topic"] == settings.topic("raw")
        assert isinstance(letter["partition"], int) and isinstance(letter["offset"], int)
        assert letter["time"].endswith("Z") and letter["record"]
    by_reason = {d["reason"]: d for d in dead}
    assert by_reason["missing-field"]["field"] == "properties.id"
    assert by_reason["invalid-utf8"]["encoding"] == "base64"
    assert {d["field"] for d in dead if d["reason"] == "bad-type"} == {
        "records",
        "properties.createdDateTime",
    }

    alerts = [orjson.loads(v) for v in consume(settings, "alerts", lambda v: len(v) >= 1)]
    assert [(a["rule"], a["signin_ids"]) for a in alerts] == [("legacy-auth", ["good-1"])]
    assert worker.poll() is None, "the worker must survive bad input"

    producer.send(settings.topic("raw"), dumps(signin({"id": "after", "clientAppUsed": "POP3"})))
    producer.flush()
    producer.close()
    later = consume(settings, "alerts", lambda v: len(v) >= 2)
    assert {orjson.loads(v)["signin_ids"][0] for v in later} == {"good-1", "after"}
    assert metric_sum(settings.metrics_port, "signin_risk_rejected_total") == 7


def test_a_restarted_worker_loses_no_alert(streaming: tuple[Settings, Worker]) -> None:
    settings, start = streaming
    expected = scan_alerts(SAMPLE)
    first = start()
    # Paced so the stop lands mid-stream: the sample takes about 4 s at 100 sign-ins/s.
    feeder = threading.Thread(
        target=replay, args=([str(SAMPLE)], settings), kwargs={"rate": 100, "progress": False}
    )
    feeder.start()
    consume(settings, "alerts", lambda v: len(v) >= 3)
    assert stop(first) == 0
    start()
    feeder.join()
    values = consume(
        settings, "alerts", lambda v: {orjson.loads(x)["id"] for x in v} >= set(expected)
    )
    got = {orjson.loads(v)["id"] for v in values}
    assert got == set(expected)  # every id, redeliveries included, and nothing else


def produce_envelopes(settings: Settings, records: list[dict[str, object]], per: int) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for i in range(0, len(records), per):
        producer.send(settings.topic("raw"), dumps({"records": records[i : i + per]}))
    producer.flush()
    producer.close()


def scan_records(records: list[dict[str, object]], tmp_path: Path) -> dict[str, dict[str, Any]]:
    path = tmp_path / "scenario.ndjson"
    path.write_bytes(dumps({"records": records}) + b"\n")
    return scan_alerts(path)


def attack_records() -> list[dict[str, object]]:
    """Brute force on one user and a spray from one address, interleaved, in event order."""
    brute = [(i * 0.5, {"status": {"errorCode": 50126}}) for i in range(12)]
    spray = [
        (
            0.2 + i * 0.9,
            {
                "userId": f"00000000-0000-4000-8000-{i:012d}",
                "userPrincipalName": f"user{i}@contoso.com",
                "ipAddress": "203.0.113.66",
                "status": {"errorCode": 50126},
            },
        )
        for i in range(12)
    ]
    return scenario_records(sorted(brute + spray, key=lambda e: e[0]), tag="atk")


def test_stateful_incidents_through_the_worker_match_scan_out_of_order(
    streaming: tuple[Settings, Worker], tmp_path: Path
) -> None:
    settings, start = streaming
    records = attack_records()
    expected = scan_records(records, tmp_path)
    assert sorted(a["rule"] for a in expected.values()) == ["brute-force", "password-spray"]
    shuffled = records[:]
    random.Random(5).shuffle(shuffled)  # all within 11 minutes: inside the 5-minute lateness
    start()
    produce_envelopes(settings, shuffled, per=3)
    values = consume(settings, "alerts", lambda v: not differences(last_versions(v), expected))
    assert differences(last_versions(values), expected) == []


def test_a_worker_restarted_mid_pattern_still_raises_it_under_the_same_id(
    streaming: tuple[Settings, Worker], tmp_path: Path
) -> None:
    settings, start = streaming
    records = attack_records()
    expected = scan_records(records, tmp_path)
    # Below both thresholds, and one envelope: each partition's state is written as one
    # changelog batch of several keys, the case Tansu's ListOffsets under-reports.
    produce_envelopes(settings, records[:10], per=10)
    first = start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if metric_sum(settings.metrics_port, "signin_risk_signins_total") >= 10:
                break
        time.sleep(0.2)
    assert stop(first) == 0
    start()  # recovers user_state and ip_state from their changelogs
    produce_envelopes(settings, records[10:], per=2)
    values = consume(settings, "alerts", lambda v: not differences(last_versions(v), expected))
    assert differences(last_versions(values), expected) == []
    # one user's records share a partition and arrive in order: the very id scan gives
    brute = next(k for k, a in expected.items() if a["rule"] == "brute-force")
    assert brute in last_versions(values)


def test_two_workers_share_the_group_through_the_hops_and_give_the_alerts_of_scan(
    streaming: tuple[Settings, Worker],
) -> None:
    settings, start = streaming
    expected = scan_alerts(SAMPLE)
    ports = (settings.metrics_port, free_port())
    workers = [start(), start(metrics_port=ports[1])]
    signins = settings.topic("signins")

    def owned() -> list[float | None]:
        return [series(p, "signin_risk_partitions_assigned", topic=signins) for p in ports]

    def shared(counts: list[float | None]) -> bool:
        mine = [n or 0 for n in counts]
        return all(n < settings.partitions for n in mine) and sum(mine) == settings.partitions

    wait_for("group of both workers", owned, shared, timeout_s=30)
    replay([str(SAMPLE)], settings, progress=False)
    values = consume(settings, "alerts", lambda v: not mismatches(last_versions(v), expected))
    assert mismatches(last_versions(values), expected) == []
    judged = [metric_sum(p, "signin_risk_signins_total") for p in ports]
    assert sum(judged) == 466 and all(judged), judged  # both worked, nothing twice
    assert [stop(w) for w in workers] == [0, 0]
    assert read_topic(settings, signins)  # neither owned every partition: the hop was used
    checked, wrong = misfiled(settings, TABLES)
    assert checked > 0 and wrong == []


def test_a_repeated_sign_in_id_gives_the_alerts_of_scan(
    streaming: tuple[Settings, Worker], tmp_path: Path
) -> None:
    """Two records of one id, other users, in events that may land on other partitions: scan
    and the worker both judge each (neither can know which is the "real" one) and agree."""
    settings, start = streaming
    rid = "dddddddd-0000-4000-8000-000000000001"
    first = signin({"id": rid, "clientAppUsed": "IMAP4"})
    second = signin(
        {
            "id": rid,
            "userId": "00000000-0000-4000-8000-0000000000b2",
            "userPrincipalName": "other@contoso.com",
            "riskLevelDuringSignIn": "high",
            "riskState": "atRisk",
        }
    )
    expected = scan_records([first, second], tmp_path)
    assert sorted(a["rule"] for a in expected.values()) == ["legacy-auth", "risky-signin"]
    start()
    produce_envelopes(settings, [first, second], per=1)
    values = consume(settings, "alerts", lambda v: not mismatches(last_versions(v), expected))
    assert mismatches(last_versions(values), expected) == []
