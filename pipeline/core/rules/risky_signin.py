"""risky-signin: Identity Protection rates the sign-in or its user at or above the threshold."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.core.risk import CLEARED_STATES, rank
from pipeline.core.rules.base import Case, Finding, Rule, RuleSettings, Severity, shift

if TYPE_CHECKING:
    from pipeline.core.enrich import Enriched
    from pipeline.core.policy import Policy

_BY_LEVEL: dict[str, Severity] = {"low": "low", "medium": "medium", "high": "high"}


def check(e: Enriched, policy: Policy, settings: RuleSettings) -> Finding | None:
    level = e.risk.level
    if rank(level) < rank(policy.risk_threshold) or e.risk.state in CLEARED_STATES:
        return None
    severity = _BY_LEVEL[level]
    if e.risk.state == "confirmedCompromised":
        severity = "critical"
    if not e.signin.succeeded:
        severity = shift(severity, -1)  # a risky attempt that failed is less urgent
    source = "the user's risk state" if e.risk.from_user_state else "the sign-in's own risk"
    outcome = "succeeded" if e.signin.succeeded else f"failed ({e.signin.error_code})"
    return Finding(
        severity=severity,
        summary=f"{level} risk from {source}; sign-in {outcome}",
        evidence={
            "risk_level_during_signin": e.signin.risk_during,
            "risk_level_aggregated": e.signin.risk_aggregated,
            "risk_state": e.risk.state,
            "risk_detail": e.risk.detail,
            "from_user_state": e.risk.from_user_state,
            "error_code": e.signin.error_code,
        },
    )


_AT_RISK_USER = {
    "category": "RiskyUsers",
    "time": "1/15/2026 9:00:00 AM",
    "properties": {
        "id": "0b9a2f60-1d4e-4b9c-8f0e-2a6c1d3e4f50",
        "userPrincipalName": "adele@contoso.com",
        "riskLastUpdatedDateTime": "2026-01-15T09:00:00Z",
        "riskState": "atRisk",
        "riskLevel": "high",
        "riskDetail": "none",
    },
}

RULE = Rule(
    id="risky-signin",
    title="Risky sign-in",
    severity="high",
    mitre=("T1078", "T1078.004"),
    description=(
        "A sign-in whose effective Identity Protection risk (its own levels, or for an "
        "interactive sign-in the user's current state) is at or above the policy threshold "
        "and has not been remediated, dismissed or confirmed safe."
    ),
    next_steps=(
        "Open the sign-in and the user's risk detections in Identity Protection: which detection, "
        "from where, and whether the user recognises the sign-in.",
        "If it was not the user: confirm the user compromised (Identity Protection), revoke their "
        "sessions and reset the password.",
        "If it was the user: dismiss the risk, or let a risk-based Conditional Access policy make "
        "them prove it with MFA and a password change.",
    ),
    check=check,
    cases=(
        Case(
            "high risk during sign-in",
            True,
            {"riskLevelDuringSignIn": "high", "riskState": "atRisk"},
        ),
        Case(
            "medium aggregated risk", True, {"riskLevelAggregated": "medium", "riskState": "atRisk"}
        ),
        Case(
            "high risk, dismissed by an admin",
            False,
            {"riskLevelDuringSignIn": "high", "riskState": "dismissed"},
        ),
        Case(
            "high risk, remediated",
            False,
            {"riskLevelDuringSignIn": "high", "riskState": "remediated"},
        ),
        Case(
            "low risk under the medium threshold",
            False,
            {"riskLevelDuringSignIn": "low", "riskState": "atRisk"},
        ),
        Case(
            "low risk with threshold lowered to low",
            True,
            {"riskLevelDuringSignIn": "low", "riskState": "atRisk"},
            policy={"risk_threshold": "low"},
        ),
        Case("no risk of its own, user marked at risk earlier", True, {}, prior=(_AT_RISK_USER,)),
        Case(
            "user at risk, but a non-interactive refresh",
            False,
            {},
            envelope={"category": "NonInteractiveUserSignInLogs"},
            prior=(_AT_RISK_USER,),
        ),
        Case(
            "user at risk, then remediated",
            False,
            {},
            prior=(
                _AT_RISK_USER,
                {
                    **_AT_RISK_USER,
                    "properties": {
                        **_AT_RISK_USER["properties"],  # type: ignore[dict-item]
                        "riskLastUpdatedDateTime": "2026-01-15T09:30:00Z",
                        "riskState": "remediated",
                    },
                },
            ),
        ),
        Case(
            "hidden risk (tenant without P2)",
            False,
            {"riskLevelDuringSignIn": "hidden", "riskLevelAggregated": "hidden"},
        ),
    ),
)
