"""workload-new-network: a service principal or managed identity signing in from a network
not in its baseline.

A workload runs where it is deployed, so its networks are few and stable: a new autonomous
system (or, when the sign-in has none, a new country) is a stolen secret or certificate
used elsewhere, or a deployment nobody announced. Same baseline as ``new-country``, per
workload: every successful sign-in counts, an empty value is never new, a network that
alerted joins the baseline at once.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.outcomes import Outcome
from pipeline.core.rules.new_country import DAY
from pipeline.core.rules.windows import (
    BaselineSettings,
    Hit,
    Scenario,
    Sighting,
    StatefulRule,
    baseline_step,
)

_SUCCESS = Outcome.SUCCESS.value


def wants(obs: Any) -> bool:
    return bool(obs.outcome == _SUCCESS)


def network(asn: int, country: str) -> str:
    """The value the baseline keeps: the AS, else the country, else nothing."""
    if asn:
        return f"AS{asn}"
    return f"country {country}" if country else ""


def step(
    state: Any, seen: Sighting, settings: BaselineSettings, newest: float
) -> tuple[Any, Hit | None]:
    s, obs = seen.signin, seen.obs
    if not s.is_workload:
        return state, None
    value = network(s.asn, s.location.country)
    state, new, facts = baseline_step(state, obs.time, value, True, settings)
    if not new:
        return state, None
    who = s.sp_name or s.app_name or "the workload"
    summary = f"{who} signed in from {value} ({s.ip or 'no address'}) for the first time"
    evidence = {
        "network": value,
        "asn": s.asn,
        "country": s.location.country,
        "ip": s.ip,
        "app_id": s.app_id,
        "resource": s.resource_name or s.resource_id,
        "credential_key_id": s.sp_credential_key_id,
        **facts,
    }
    return state, Hit("medium", summary, evidence, (obs.id,), obs.id, obs)


_SP = {
    "category": "ServicePrincipalSignInLogs",
    "userId": None,
    "userPrincipalName": None,
    "servicePrincipalId": "6a1f0e2d-3c4b-4a59-8687-9a0b1c2d3e4f",
    "servicePrincipalName": "contoso-hr-sync",
    "ipAddress": "198.51.100.200",
    "autonomousSystemNumber": 8075,
    "location": {"city": "Quincy", "countryOrRegion": "US"},
}


def _runs(days: int = 8, **patch: Any) -> tuple[tuple[float, dict[str, Any]], ...]:
    return tuple((day * DAY + i * 360.0, {**_SP, **patch}) for day in range(days) for i in range(2))


_LATER = 8 * DAY + 600
_ELSEWHERE = {**_SP, "ipAddress": "167.99.1.2", "autonomousSystemNumber": 14061}

RULE = StatefulRule(
    id="workload-new-network",
    title="Workload identity from a new network",
    severity="medium",
    mitre=("T1078.004",),
    description=(
        "A service principal or managed identity signs in successfully from an autonomous "
        "system (or a country when no AS is given) not seen for it within the baseline "
        "(`window_minutes`, default 30 days), once it has a history (`min_history_days` 7, "
        "`min_signins` 10)."
    ),
    next_steps=(
        "Ask the workload's owner whether it moved (new region, new CI runner, new cloud).",
        "If not: remove the credential used (evidence.credential_key_id) and rotate the others, "
        "then review what the workload did since.",
        "Restrict the workload with Conditional Access for workload identities (locations).",
    ),
    keyed_by="user",
    wants=wants,
    step=step,
    settings=BaselineSettings,
    sees_signin=True,
    workloads=True,
    scenarios=(
        Scenario(
            "8 days in Azure, then DigitalOcean",
            1,
            (*_runs(), (_LATER, _ELSEWHERE)),
            severity="medium",
        ),
        Scenario("same network every day", 0, (*_runs(), (_LATER, _SP))),
        Scenario(
            "no AS: a new country counts",
            1,
            (
                *_runs(autonomousSystemNumber=0),
                (
                    _LATER,
                    {**_SP, "autonomousSystemNumber": 0, "location": {"countryOrRegion": "NL"}},
                ),
            ),
        ),
        Scenario(
            "a managed identity without address, AS or place is never new",
            0,
            (
                *_runs(),
                (
                    _LATER,
                    {
                        **_SP,
                        "category": "ManagedIdentitySignInLogs",
                        "ipAddress": "",
                        "autonomousSystemNumber": 0,
                        "location": {},
                        "envelope": {"callerIpAddress": "", "location": ""},
                    },
                ),
            ),
        ),
        Scenario(
            "a failed sign-in from elsewhere neither alerts nor enters the baseline",
            1,
            (
                *_runs(),
                (_LATER - 60, {**_ELSEWHERE, "status": {"errorCode": 7000215}}),
                (_LATER, _ELSEWHERE),
            ),
        ),
        Scenario("users are new-country's", 0, (*_runs(category="SignInLogs"),)),
    ),
)
