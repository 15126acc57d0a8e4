"""The machinery shared by stateful rules: windows, lateness, incidents, state expiry."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import orjson
from builders import BASE_PROPERTIES, risk_record, signin

from pipeline.core.codec import RULE_STATES
from pipeline.core.detect import Engine, alert_json
from pipeline.core.driver import Driver
from pipeline.core.ingest import receive
from pipeline.core.outcomes import Outcome, outcome
from pipeline.core.parse import normalize
from pipeline.core.policy import policy_from_data
from pipeline.core.records import SignIn
from pipeline.core.rules import REGISTRY, StatefulRule
from pipeline.core.rules.windows import admit, burst
from pipeline.core.scan import scan
from pipeline.core.state import KeyedState, user_risk
from pipeline.core.stateful import expire
from pipeline.runtime.settings import Settings
from tools.synth import sample_days

START = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


def failure(minute: float, n: int, code: int = 50126) -> SignIn:
    when = (START + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
    record = normalize(
        signin({"id": f"f-{n}", "createdDateTime": when, "status": {"errorCode": code}})
    )
    assert isinstance(record, SignIn)
    return record


def brute_force_run(minutes: list[float], policy: dict[str, object] | None = None) -> list[str]:
    rule = REGISTRY["brute-force"]
    assert isinstance(rule, StatefulRule)
    engine = Engine(policy_from_data(policy or {}), rules=[rule])
    book, states = user_risk(KeyedState(RULE_STATES)), KeyedState(RULE_STATES)
    ids = []
    for n, minute in enumerate(minutes):
        ids += [a.id for a in engine.process(failure(minute, n), book, states).alerts]
    return ids


def test_outcome_table() -> None:
    assert outcome(failure(0, 0, 50126)) == Outcome.PRIMARY_FAILURE
    assert outcome(failure(0, 0, 50076)) == Outcome.PASSWORD_PROVEN
    assert outcome(failure(0, 0, 50140)) == Outcome.INTERRUPT
    assert outcome(failure(0, 0, 500121)) == Outcome.MFA_DENIED
    assert outcome(failure(0, 0, 0)) == Outcome.SUCCESS
    assert outcome(failure(0, 0, 90095)) == Outcome.OTHER_FAILURE


def test_admit_orders_dedups_and_drops_what_is_too_late() -> None:
    entries = admit([], [100.0, "a"], 0.0, 60)
    assert entries is not None
    entries = admit(entries, [90.0, "b"], 100.0, 60)
    assert entries == [[90.0, "b"], [100.0, "a"]]
    assert admit(entries, [100.0, "a"], 100.0, 60) is None  # redelivery
    assert admit(entries, [30.0, "c"], 100.0, 60) is None  # later than window + lateness
    assert admit(entries, [200.0, "d"], 100.0, 60) == [[200.0, "d"]]  # old entries expire


def test_burst_finds_the_densest_window_around_an_entry() -> None:
    entries = [[t, f"id{t}", "u" if t < 50 else f"u{t}"] for t in (0.0, 10.0, 20.0, 60.0, 65.0)]
    assert [e[0] for e in burst(entries, 60.0, 45, key=lambda e: e[1])] == [20.0, 60.0, 65.0]
    # distinct keys, not entries: three failures of one user are one user
    assert len({e[2] for e in burst(entries, 0.0, 45, key=lambda e: e[2])}) == 1
    assert len({e[2] for e in burst(entries, 20.0, 45, key=lambda e: e[2])}) == 3


def test_a_continuing_pattern_keeps_its_id_and_a_new_one_after_suppression() -> None:
    continuing = brute_force_run([i * 0.5 for i in range(30)])
    assert len(set(continuing)) == 1
    assert len(continuing) == 2  # at 10 failures, then again when the count doubled
    resumed = brute_force_run(
        [i * 0.5 for i in range(10)] + [120 + i * 0.5 for i in range(10)],
        {"rules": {"brute-force": {"suppression_minutes": 30}}},
    )
    assert len(set(resumed)) == 2
    suppressed = brute_force_run([i * 0.5 for i in range(10)] + [40 + i * 0.5 for i in range(10)])
    assert len(set(suppressed)) == 1


def test_idle_keys_expire_and_live_ones_stay() -> None:
    store: dict[str, bytes] = {}
    states = KeyedState(RULE_STATES, store)
    states.put("old", {"brute-force": [100.0, {"burst": []}, None]})
    states.put("new", {"brute-force": [5000.0, {"burst": []}, None]})
    states.flush()
    assert set(store) == {"old", "new"}
    assert expire(states, ["old", "new"], before=1000.0) == 1
    assert set(store) == {"new"}


def test_retention_covers_the_longest_window() -> None:
    engine = Engine(policy_from_data({}))
    assert engine.retention_s == (30 * 1440 + 5 + 60) * 60  # the 30-day baselines


def scan_way(envelopes: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    """Last version of each alert as ``scan`` gives it: every record, in event time."""
    out = io.BytesIO()
    scan([("days", b"\n".join(map(orjson.dumps, envelopes)))], policy_from_data({}), out)
    return {a["id"]: without_detected_at(a) for a in map(orjson.loads, out.getvalue().splitlines())}


def worker_way(envelopes: list[dict[str, object]], take: int) -> dict[str, dict[str, object]]:
    """Last version of each alert as a lone worker gives it: takes of ``take`` raw events in
    delivery order, state stored as bytes between takes."""
    engine = Engine(policy_from_data({}))
    detector = Driver(
        engine, KeyedState(RULE_STATES), KeyedState(RULE_STATES), Settings().partitions
    )
    found: dict[str, dict[str, object]] = {}
    events = [(orjson.dumps(e), 0) for e in envelopes]
    for i in range(0, len(events), take):
        result = detector.segments(receive(events[i : i + take], 10**8).segments)
        by_ip = [segment for segments in result.by_ip.values() for segment in segments]
        found_now = result.alerts + detector.by_ip(by_ip)
        detector.flush()  # between takes, as the worker does once their output is acknowledged
        for _, alerts in found_now:
            for alert in alerts:
                found[alert.id] = without_detected_at(orjson.loads(alert_json(alert)))
    return found


def without_detected_at(alert: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in alert.items() if k != "detected_at"}


def test_two_sample_days_give_the_same_alerts_in_scan_and_in_the_worker() -> None:
    envelopes = sample_days(2)
    expected = scan_way(envelopes)
    assert sum(a["rule"] == "risk-detection" for a in expected.values()) >= 4
    for take in (1, 7):
        got = worker_way(envelopes, take)
        assert set(got) == set(expected)
        assert [got[k] for k in expected if got[k] != expected[k]] == []


def detection_versions(raws: list[dict[str, object]]) -> list[dict[str, object]]:
    """Every risk-detection alert version, records in the order given, state stored as bytes
    between records as the worker keeps it."""
    engine = Engine(policy_from_data({}), rules=[REGISTRY["risk-detection"]])
    book, states = user_risk(KeyedState(RULE_STATES)), KeyedState(RULE_STATES)
    out = []
    for raw in raws:
        alerts = engine.process(normalize(raw), book, states).alerts
        out += [without_detected_at(orjson.loads(alert_json(a))) for a in alerts]
        states.flush()
    return out


# Entra stamps a sign-in to the tenth of a microsecond, a realtime detection of it to the
# millisecond: the detection's time is a fraction of a millisecond before its sign-in's.
REALTIME = risk_record({"detectionTimingType": "realtime"}, "2026-01-15T10:00:00.123Z")
RISKY = {
    "riskLevelDuringSignIn": "high",
    "riskState": "atRisk",
    "riskEventTypes_v2": ["unfamiliarFeatures"],
}
"""What a sign-in with a realtime detection carries itself, so that which of the two comes
first does not change its effective risk, only the join."""


def test_a_detection_delivered_before_its_signin_is_joined_when_the_signin_comes() -> None:
    assert BASE_PROPERTIES["createdDateTime"] == "2026-01-15T10:00:00.1234567Z"
    first = detection_versions([signin(RISKY), REALTIME])
    assert [a["evidence"]["joined_signin"] for a in first] == [True]
    # an unjoined version, then the joined one under the same id; the sign-in delivered
    # again sends nothing more
    later = detection_versions([REALTIME, signin(RISKY), signin(RISKY)])
    assert [a["evidence"]["joined_signin"] for a in later] == [False, True]
    assert later[-1] == first[-1]


def test_a_signin_later_than_lateness_leaves_the_detection_unjoined() -> None:
    other = signin({**RISKY, "id": "other", "createdDateTime": "2026-01-15T10:06:00Z"})
    versions = detection_versions([REALTIME, other, signin(RISKY)])
    assert [a["evidence"]["joined_signin"] for a in versions] == [False]


def test_the_signin_named_by_request_id_betters_a_correlation_id_join() -> None:
    session = signin({**RISKY, "id": "same-session", "createdDateTime": "2026-01-15T09:59:00Z"})
    offline = risk_record(
        {"correlationId": BASE_PROPERTIES["correlationId"]}, "2026-01-15T10:01:00.000Z"
    )
    first = detection_versions([session, signin(RISKY), offline])
    assert [a["signin_ids"] for a in first] == [[BASE_PROPERTIES["id"]]]
    later = detection_versions([session, offline, signin(RISKY)])
    assert [a["signin_ids"] for a in later] == [["same-session"], [BASE_PROPERTIES["id"]]]
    assert later[-1] == first[-1]


def test_scan_puts_a_detection_after_the_signin_it_names() -> None:
    """As the worker sees them: the sign-in does not take on the risk of its own detection
    (no risky-signin from the user's state), and the detection joins it at once."""
    plain = signin()
    in_file = [{"records": [REALTIME]}, {"records": [plain]}]
    expected = worker_way([{"records": [plain]}, {"records": [REALTIME]}], take=1)
    assert sorted(a["rule"] for a in expected.values()) == ["risk-detection"]
    assert scan_way(in_file) == expected
