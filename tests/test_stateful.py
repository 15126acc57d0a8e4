"""The machinery shared by stateful rules: windows, lateness, incidents, state expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from builders import signin

from pipeline.detect import Engine
from pipeline.outcomes import Outcome, outcome
from pipeline.parse import normalize
from pipeline.policy import policy_from_data
from pipeline.records import SignIn
from pipeline.risk import RiskBook
from pipeline.rules import REGISTRY, StatefulRule
from pipeline.rules.windows import admit, burst
from pipeline.stateful import StateBook

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
    book, states = RiskBook(), StateBook()
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
    store: dict[str, object] = {}
    states = StateBook(store)
    states.get("old")["brute-force"] = [100.0, {"burst": []}, None]
    states.touched("old")
    states.get("new")["brute-force"] = [5000.0, {"burst": []}, None]
    states.touched("new")
    states.flush()
    assert set(store) == {"old", "new"}
    assert states.expire(["old", "new"], before=1000.0) == 1
    assert set(store) == {"new"}


def test_retention_covers_the_longest_window() -> None:
    engine = Engine(policy_from_data({}))
    assert engine.retention_s == (24 * 60 + 5 + 60) * 60  # impossible travel, risk-detection
