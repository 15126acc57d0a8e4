"""Catalog-wide checks: every rule's metadata is sound and its own cases hold.

A new rule module is covered here the moment it exists.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from builders import scenario_records, signin

from pipeline.core.codec import RULE_STATES, USER_RISK
from pipeline.core.detect import Engine
from pipeline.core.parse import normalize
from pipeline.core.policy import policy_from_data
from pipeline.core.records import SEVERITIES, Alert, RiskEvent, SignIn
from pipeline.core.risk import update
from pipeline.core.rules import REGISTRY, AnyRule, Case, Rule, StatefulRule
from pipeline.core.rules.windows import Scenario
from pipeline.core.state import KeyedState

CASES = [
    pytest.param(rule, case, id=f"{rule.id}: {case.name}")
    for rule in REGISTRY.values()
    if isinstance(rule, Rule)
    for case in rule.cases
]
SCENARIOS = [
    pytest.param(rule, scenario, id=f"{rule.id}: {scenario.name}")
    for rule in REGISTRY.values()
    if isinstance(rule, StatefulRule)
    for scenario in rule.scenarios
]


def run_scenario(rule: StatefulRule, scenario: Scenario, stored: bool = False) -> list[Alert]:
    """Every alert version, in order, with the rule alone enabled. ``stored`` keeps the
    state as the worker does: encoded to bytes and read back for every record."""
    engine = Engine(policy_from_data(dict(scenario.policy)), rules=[rule])
    book = KeyedState(USER_RISK)
    users, addresses = KeyedState(RULE_STATES), KeyedState(RULE_STATES)
    out: list[Alert] = []
    for raw in scenario_records(scenario.events):
        judged = engine.process(normalize(raw), book, users)
        out += judged.alerts
        if judged.by_ip is not None:
            out += engine.process_by_ip(judged.by_ip, addresses)
        if stored:
            book.flush()
            users.flush()
            addresses.flush()
    return out


def run_case(rule: Rule, case: Case) -> list[Alert]:
    engine = Engine(policy_from_data(dict(case.policy)), rules=[rule])
    book = KeyedState(USER_RISK)
    for raw in case.prior:
        record = normalize(raw)
        if isinstance(record, RiskEvent):
            update(book, record)
    target = normalize(signin(case.properties, case.envelope))
    assert isinstance(target, SignIn)
    return engine.evaluate(target, book.get(target.user_id))[1]


def test_rules_are_registered_under_their_fixed_ids() -> None:
    assert set(REGISTRY) == {
        "risky-signin",
        "unapproved-mobile-client",
        "legacy-auth",
        "outdated-outlook-mobile",
        "password-spray",
        "brute-force",
        "mfa-fatigue",
        "impossible-travel",
        "risk-detection",
    }


@pytest.mark.parametrize("rule", REGISTRY.values(), ids=list(REGISTRY))
def test_rule_metadata(rule: AnyRule) -> None:
    assert re.fullmatch(r"[a-z]+(-[a-z]+)*", rule.id)
    assert rule.title and rule.description
    assert rule.severity in SEVERITIES
    assert rule.mitre and all(re.fullmatch(r"T\d{4}(\.\d{3})?", t) for t in rule.mitre)
    if isinstance(rule, Rule):
        matches = [c.match for c in rule.cases]
        names = [c.name for c in rule.cases]
    else:
        matches = [s.alerts > 0 for s in rule.scenarios]
        names = [s.name for s in rule.scenarios]
    assert any(matches), "needs a matching case"
    assert not all(matches), "needs a non-matching case"
    assert len(set(names)) == len(names), "case names must be unique"


@pytest.mark.parametrize(("rule", "scenario"), SCENARIOS)
def test_stateful_scenario(rule: StatefulRule, scenario: Scenario) -> None:
    versions = run_scenario(rule, scenario)
    last = {a.id: a for a in versions}
    assert len(last) == scenario.alerts, [a.summary for a in versions]
    for alert in last.values():
        assert alert.rule == rule.id and alert.mitre == rule.mitre
        assert alert.evidence["signin_count"] >= len(alert.signin_ids)
        if rule.keyed_by == "ip":
            assert alert.user == "" and alert.ip
    if scenario.severity is not None:
        assert versions[-1].severity == scenario.severity


@pytest.mark.parametrize(("rule", "scenario"), SCENARIOS)
def test_stateful_scenario_with_state_stored_as_the_worker_stores_it(
    rule: StatefulRule, scenario: Scenario
) -> None:
    """JSON turns tuples into lists; a rule or incident that relied on them broke only in
    the worker, on the second batch of a continuing pattern."""

    def timeless(alerts: list[Alert]) -> list[Alert]:
        return [replace(a, detected_at="") for a in alerts]

    assert timeless(run_scenario(rule, scenario, stored=True)) == timeless(
        run_scenario(rule, scenario)
    )


@pytest.mark.parametrize(("rule", "scenario"), [p for p in SCENARIOS if p.values[1].alerts])
def test_stateful_scenario_redelivered_gives_the_same_ids(
    rule: StatefulRule, scenario: Scenario
) -> None:
    twice = Scenario(scenario.name, scenario.alerts, scenario.events * 2, policy=scenario.policy)
    assert {a.id for a in run_scenario(rule, twice)} == {a.id for a in run_scenario(rule, scenario)}


@pytest.mark.parametrize(("rule", "case"), CASES)
def test_rule_case(rule: Rule, case: Case) -> None:
    alerts = run_case(rule, case)
    assert len(alerts) == (1 if case.match else 0)
    for alert in alerts:
        assert alert.rule == rule.id and alert.mitre == rule.mitre
        assert alert.severity in SEVERITIES
        assert alert.signin_ids == (signin()["properties"]["id"],)
        assert alert.time == "2026-01-15T10:00:00.123456Z"


def test_severity_override_and_disable_from_policy() -> None:
    rule = REGISTRY["legacy-auth"]
    case = next(c for c in rule.cases if c.match)
    target = normalize(signin(case.properties))
    assert isinstance(target, SignIn)
    policy = policy_from_data({"rules": {"legacy-auth": {"severity": "critical"}}})
    assert [a.severity for a in Engine(policy).evaluate(target, None)[1]] == ["critical"]
    policy = policy_from_data({"rules": {"legacy-auth": {"enabled": False}}})
    assert [a.rule for a in Engine(policy).evaluate(target, None)[1]] == []


def test_alert_ids_are_deterministic_per_rule_and_signin() -> None:
    rule = REGISTRY["legacy-auth"]
    case = next(c for c in rule.cases if c.match)
    first, second = run_case(rule, case), run_case(rule, case)
    assert first[0].id == second[0].id
    other = normalize(signin({**case.properties, "id": "another"}))
    assert isinstance(other, SignIn)
    third = Engine(policy_from_data({}), rules=[rule]).evaluate(other, None)[1]
    assert third[0].id != first[0].id


@pytest.mark.parametrize(
    "allow",
    [
        {"users": ["ADELE@contoso.com"]},
        {"ips": ["198.51.100.0/24"]},
        {"named_networks": {"HQ": ["198.51.100.23"]}},
        {"countries": ["us"]},
    ],
)
def test_allowlists_silence_every_rule(allow: dict[str, object]) -> None:
    target = normalize(
        signin({"clientAppUsed": "IMAP4", "riskLevelDuringSignIn": "high", "riskState": "atRisk"})
    )
    assert isinstance(target, SignIn)
    assert len(Engine(policy_from_data({})).evaluate(target, None)[1]) == 2
    assert Engine(policy_from_data({"allowlist": allow})).evaluate(target, None)[1] == []
