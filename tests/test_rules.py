"""Catalog-wide checks: every rule's metadata is sound and its own cases hold.

A new rule module is covered here the moment it exists.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from builders import USER_ID, scenario_records, signin

from pipeline.core.codec import RULE_STATES
from pipeline.core.detect import Engine
from pipeline.core.parse import normalize
from pipeline.core.policy import PolicyError, policy_from_data
from pipeline.core.records import ALERT_SCHEMA_VERSION, SEVERITIES, Alert, RiskEvent, SignIn
from pipeline.core.risk import update
from pipeline.core.rules import REGISTRY, AnyRule, Case, Rule, StatefulRule
from pipeline.core.rules.windows import Scenario
from pipeline.core.state import KeyedState, user_risk

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
    users, addresses = KeyedState(RULE_STATES), KeyedState(RULE_STATES)
    book = user_risk(users)
    out: list[Alert] = []
    for raw in scenario_records(scenario.events):
        judged = engine.process(normalize(raw), book, users)
        out += judged.alerts
        if judged.by_ip is not None:
            out += engine.process_by_ip(judged.by_ip, addresses)
        if stored:
            users.flush()
            addresses.flush()
    return out


def run_case(rule: Rule, case: Case) -> list[Alert]:
    engine = Engine(policy_from_data(dict(case.policy)), rules=[rule])
    book = user_risk(KeyedState(RULE_STATES))
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
        "device-code-phishing",
        "ropc-signin",
        "mfa-fraud-report",
        "attack-tool",
        "token-replay",
        "disabled-account-attempts",
        "new-country",
        "workload-new-network",
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
        assert alert.next_steps == rule.next_steps
        assert alert.links["signin"].endswith("/auditLogs/signIns/" + alert.signin_ids[0])
        assert alert.links["user_page"].endswith("/userId/" + USER_ID)
        assert alert.schema_version == ALERT_SCHEMA_VERSION


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


def test_every_rule_tells_the_analyst_what_to_do() -> None:
    for rule in REGISTRY.values():
        assert len(rule.next_steps) >= 2 and all(step[-1] in ".?" for step in rule.next_steps)


def _judge(engine: Engine, patches: list[dict[str, object]], **envelope: str) -> list[Alert]:
    """Sign-ins of one user in order through ``engine``, state kept between them."""
    users, addresses = KeyedState(RULE_STATES), KeyedState(RULE_STATES)
    book = user_risk(users)
    out: list[Alert] = []
    for patch in patches:
        judged = engine.process(normalize(signin(patch, envelope)), book, users)
        out += judged.alerts
        if judged.by_ip is not None:
            out += engine.process_by_ip(judged.by_ip, addresses)
    return out


def test_a_device_code_sign_in_and_its_refreshes_are_one_incident() -> None:
    engine = Engine(policy_from_data({}), rules=[REGISTRY["device-code-phishing"]])
    first = {
        "authenticationProtocol": "deviceCode",
        "appId": "d3590ed6-52b3-4102-aeff-aad2292ab01c",
        "resourceId": "00000003-0000-0ff1-ce00-000000000000",
    }
    refreshes = [
        {
            "id": f"refresh-{i}",
            "createdDateTime": f"2026-01-15T10:{5 + i * 5:02d}:00Z",
            "authenticationProtocol": "none",
            "originalTransferMethod": "deviceCodeFlow",
            "resourceId": "00000002-0000-0ff1-ce00-000000000000",
        }
        for i in range(4)
    ]
    versions = _judge(engine, [first, *refreshes])
    assert len({a.id for a in versions}) == 1
    # medium for the sign-in, high once a refresh reaches Exchange; re-sent as it grows
    assert [a.severity for a in versions] == ["medium", "high", "high"]
    assert versions[-1].evidence["signin_count"] == 4
    assert versions[-1].signin_ids[0] == signin()["properties"]["id"]


def test_a_device_code_incident_closes_after_the_suppression() -> None:
    engine = Engine(policy_from_data({}), rules=[REGISTRY["device-code-phishing"]])
    code = {"authenticationProtocol": "deviceCode", "appId": "d3590ed6-52b3-4102-aeff-aad2292ab01c"}
    later = {**code, "id": "later", "createdDateTime": "2026-01-15T12:00:00Z"}
    assert len({a.id for a in _judge(engine, [code, later])}) == 2


def test_exceptions_hold_for_stateful_and_ip_keyed_rules() -> None:
    spray = [
        {
            "id": f"spray-{i}",
            "userId": f"00000000-0000-4000-8000-{i:012d}",
            "userPrincipalName": f"user{i}@contoso.com",
            "ipAddress": "203.0.113.66",
            "createdDateTime": f"2026-01-15T10:{i:02d}:00Z",
            "status": {"errorCode": 50126},
        }
        for i in range(12)
    ]
    rule = REGISTRY["password-spray"]
    assert _judge(Engine(policy_from_data({}), rules=[rule]), spray)
    for exceptions in (
        {"ips": ["203.0.113.0/24"]},
        {"apps": [signin()["properties"]["appId"]]},  # applied as the sign-in is handed on
        {"users": ["user3@contoso.com"]},  # one of 12 excepted: 11 users still fail
    ):
        policy = policy_from_data({"rules": {"password-spray": {"exceptions": exceptions}}})
        alerts = _judge(Engine(policy, rules=[rule]), spray)
        if "users" in exceptions:
            assert "user3@contoso.com" not in alerts[-1].evidence["users"]  # type: ignore[operator]
        else:
            assert alerts == [], exceptions


@pytest.mark.parametrize(
    ("exceptions", "message"),
    [
        ({"apps": ["Azure CLI"]}, "not an application id"),
        ({"ips": ["10.0.0.300"]}, "does not appear to be an IPv4 or IPv6 network"),
        ({"hosts": ["x"]}, "Extra inputs are not permitted"),
    ],
)
def test_exceptions_are_validated(exceptions: dict[str, object], message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        policy_from_data({"rules": {"attack-tool": {"exceptions": exceptions}}})
