"""The one driver, in process: what scan and the worker both run, in either topology."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from builders import scenario_records, signin

from pipeline.core.codec import RULE_STATES
from pipeline.core.detect import Engine, alert_json
from pipeline.core.driver import Driver, in_event_time
from pipeline.core.enrich import Observation
from pipeline.core.ingest import receive
from pipeline.core.parse import normalize
from pipeline.core.policy import Policy
from pipeline.core.records import Category
from pipeline.core.segments import Segment
from pipeline.core.state import KeyedState

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"


def driver(partitions: int = 4) -> Driver:
    return Driver(Engine(Policy()), KeyedState(RULE_STATES), KeyedState(RULE_STATES), partitions)


def last_versions(found: list[tuple[int, list[object]]]) -> dict[str, dict[str, object]]:
    out = {}
    for _, alerts in found:
        for alert in alerts:
            doc = orjson.loads(alert_json(alert))  # type: ignore[arg-type]
            out[doc["id"]] = {k: v for k, v in doc.items() if k != "detected_at"}
    return out


def attack() -> list[dict[str, object]]:
    """A spray from one address interleaved with a brute force on one user."""
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
    return scenario_records(sorted(brute + spray, key=lambda e: e[0]), tag="drv")


def test_inline_and_rekeyed_ip_rules_give_the_same_alerts() -> None:
    events = [(orjson.dumps({"records": [r]}), 0) for r in attack()]
    segments = receive(events, 10**6).segments

    inline = driver().segments(segments, direct=True)
    assert inline.by_ip == {}

    hops = driver()
    rekeyed = hops.segments(segments)
    assert rekeyed.by_ip, "the spray's failures are handed out by address"
    later = hops.by_ip([s for part in rekeyed.by_ip.values() for s in part])

    got = last_versions(inline.alerts)
    assert got == last_versions(rekeyed.alerts + later)
    assert sorted(a["rule"] for a in got.values()) == ["brute-force", "password-spray"]


def test_every_sample_event_in_one_call_or_one_each_gives_the_same_alerts() -> None:
    lines = [line for line in SAMPLE.read_bytes().split(b"\n") if line.strip()]
    segments = receive([(line, 0) for line in lines], 10**8).segments
    whole = driver().segments(segments, direct=True)
    one_by_one = driver()
    pieces = [a for s in segments for a in one_by_one.segments([s], direct=True).alerts]
    assert last_versions(whole.alerts) == last_versions(pieces)
    assert len(last_versions(whole.alerts)) >= 20


def test_risk_records_are_reported_for_counting_and_sign_ins_as_enriched() -> None:
    records = scenario_records([(0, {}), (1, {"category": "UserRiskEvents"})], tag="risk")
    segments = receive([(orjson.dumps({"records": records}), 0)], 10**6).segments
    result = driver().segments(segments, direct=True)
    assert result.risk_records == [Category.USER_RISK_EVENTS]
    assert [e.signin.id for e in result.enriched] == [records[0]["properties"]["id"]]  # type: ignore[index]
    assert result.newest > 0


def _positioned(lines: list[bytes]) -> list[Segment]:
    """The sample as a worker receives it: each line one raw event of partition 0 or 1."""
    origins = [(n % 2, n // 2) for n in range(len(lines))]
    return receive([(line, 0) for line in lines], 10**8, origins).segments


def _run(d: Driver, segments: list[Segment], direct: bool) -> list[tuple[int, list[object]]]:
    result = d.segments(segments, direct=direct)
    found: list[tuple[int, list[object]]] = list(result.alerts)
    found += d.by_ip([s for part in result.by_ip.values() for s in part])
    d.flush()
    return found


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "hops"])
def test_records_delivered_again_after_a_crash_leave_alerts_and_state_as_one_delivery(
    direct: bool,
) -> None:
    """The worker's crash: state is written for takes whose offsets were never committed, and
    the restarted worker gets those takes again, judged against state that already holds
    them and what followed. Every key skips what it holds, so the last version of each
    alert and the final state are one pass's, in either topology."""
    lines = [line for line in SAMPLE.read_bytes().split(b"\n") if line.strip()]
    takes = [_positioned(lines)[i : i + 7] for i in range(0, len(lines), 7)]
    once_users, once_addresses = KeyedState(RULE_STATES), KeyedState(RULE_STATES)
    once = Driver(Engine(Policy()), once_users, once_addresses, 4)
    expected = last_versions([a for take in takes for a in _run(once, take, direct)])

    users, addresses = KeyedState(RULE_STATES), KeyedState(RULE_STATES)
    crashing = Driver(Engine(Policy()), users, addresses, 4)
    found = []
    committed = 0
    for n, take in enumerate(takes):
        found += _run(crashing, take, direct)
        if n % 5 == 4:  # a crash: everything since the last commit is delivered again
            for again in takes[committed : n + 1]:
                found += _run(crashing, again, direct)
            committed = n + 1
    assert last_versions(found) == expected
    assert len(expected) >= 20
    assert users._store == once_users._store
    assert addresses._store == once_addresses._store


def test_without_positions_a_redelivered_take_counts_twice() -> None:
    """The control: what the positions prevent (the test above would fail without them)."""
    lines = [line for line in SAMPLE.read_bytes().split(b"\n") if line.strip()]
    plain = receive([(line, 0) for line in lines], 10**8).segments
    once = driver()
    expected = last_versions(_run(once, plain, True))
    twice = driver()
    found = _run(twice, plain[: len(plain) // 2], True)
    found += _run(twice, plain, True)
    assert last_versions(found) != expected


def test_a_sign_in_delivered_again_is_not_judged_against_its_users_later_risk() -> None:
    """The crash run's extra ``risky-signin`` (``from_user_state``): a clean sign-in, then the
    user's risk raised to high, both delivered again after a crash. Judged again, the
    sign-in would take on the later risk; its user's state holds its position, so it is not."""
    raws = scenario_records(
        [(0, {}), (1, {"category": "RiskyUsers", "riskLevel": "high", "riskState": "atRisk"})],
        tag="replay",
    )
    events = [(orjson.dumps({"records": [raw]}), 0) for raw in raws]
    segments = receive(events, 10**6, [(0, 10), (0, 11)]).segments
    d = driver()
    first = _run(d, segments, True)
    again = _run(d, segments, True)
    assert "risky-signin" not in [a.rule for _, alerts in first for a in alerts]  # type: ignore[attr-defined]
    assert again == []
    plain = driver()
    unpositioned = [s._replace(partition=-1) for s in segments]
    _run(plain, unpositioned, True)
    rules = [a.rule for _, alerts in _run(plain, unpositioned, True) for a in alerts]  # type: ignore[attr-defined]
    assert "risky-signin" in rules, "the control: judged again, the sign-in is risky"


def test_by_ip_messages_of_a_take_are_applied_in_event_time_each_in_its_own_order() -> None:
    """Two detect takes' messages, each spanning its take: merged by time so an address's
    windows see its failures as scan does, but never reordered within a source (the
    positions applied per source must rise): source 0/0's 6.0 stays before its 1.5, and
    so after 0/1's 4.0 and 3.0."""
    obs = Observation.of(Engine(Policy()).enrich(normalize(signin({})), None))  # type: ignore[arg-type]
    at = [obs._replace(id=f"s{i}", time=t) for i, t in enumerate([1.0, 6.0, 3.0, 2.0, 4.0, 1.5])]
    first = [(10, [(at[0], "0/0", 1), (at[3], "0/1", 4)]), (11, [(at[1], "0/0", 2)])]
    second = [(12, [(at[4], "0/1", 5), (at[5], "0/0", 3), (at[2], "0/1", 6)])]
    merged = in_event_time([first, second])
    assert [(t, [o.id for o, _, _ in located]) for t, located in merged] == [
        (10, ["s0", "s3"]),
        (12, ["s4", "s2"]),
        (11, ["s1"]),
        (12, ["s5"]),
    ]
