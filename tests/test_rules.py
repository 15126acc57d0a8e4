"""Catalog-wide checks: every rule's metadata is sound and its own cases hold.

A new rule module is covered here the moment it exists.
"""

from __future__ import annotations

import re

import pytest
from builders import signin

from pipeline.detect import Engine
from pipeline.parse import normalize
from pipeline.policy import policy_from_data
from pipeline.records import SEVERITIES, Alert, RiskEvent, SignIn
from pipeline.risk import RiskBook
from pipeline.rules import REGISTRY, Case, Rule

CASES = [
    pytest.param(rule, case, id=f"{rule.id}: {case.name}")
    for rule in REGISTRY.values()
    for case in rule.cases
]


def run_case(rule: Rule, case: Case) -> list[Alert]:
    engine = Engine(policy_from_data(dict(case.policy)), rules=[rule])
    book = RiskBook()
    for raw in case.prior:
        record = normalize(raw)
        if isinstance(record, RiskEvent):
            book.update(record)
    target = normalize(signin(case.properties, case.envelope))
    assert isinstance(target, SignIn)
    return engine.evaluate(target, book.get(target.user_id))[1]


def test_first_rules_are_registered_under_their_fixed_ids() -> None:
    assert {
        "risky-signin",
        "unapproved-mobile-client",
        "legacy-auth",
        "outdated-outlook-mobile",
    } <= set(REGISTRY)


@pytest.mark.parametrize("rule", REGISTRY.values(), ids=list(REGISTRY))
def test_rule_metadata(rule: Rule) -> None:
    assert re.fullmatch(r"[a-z]+(-[a-z]+)*", rule.id)
    assert rule.title and rule.description
    assert rule.severity in SEVERITIES
    assert rule.mitre and all(re.fullmatch(r"T\d{4}(\.\d{3})?", t) for t in rule.mitre)
    assert any(c.match for c in rule.cases), "needs a matching case"
    assert any(not c.match for c in rule.cases), "needs a non-matching case"
    assert len({c.name for c in rule.cases}) == len(rule.cases), "case names must be unique"


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
