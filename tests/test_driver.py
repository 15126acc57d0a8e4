"""The one driver, in process: what scan and the worker both run, in either topology."""

from __future__ import annotations

from pathlib import Path

import orjson
from builders import scenario_records

from pipeline.core.codec import RULE_STATES, USER_RISK
from pipeline.core.detect import Engine, alert_json
from pipeline.core.driver import Driver
from pipeline.core.ingest import receive
from pipeline.core.policy import Policy
from pipeline.core.records import Category
from pipeline.core.state import KeyedState

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"


def driver(partitions: int = 4) -> Driver:
    return Driver(
        Engine(Policy()),
        KeyedState(USER_RISK),
        KeyedState(RULE_STATES),
        KeyedState(RULE_STATES),
        partitions,
    )


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
