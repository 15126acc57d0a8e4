"""risk-detection: an Identity Protection detection, joined back to the sign-in it is about.

Offline detections (leaked credentials, anomalous token, unfamiliar features computed after
the fact) arrive minutes to hours after their sign-in, when no sign-in rule can see them.
The rule keeps each user's recent sign-ins and joins a detection to its sign-in by
``requestId`` (= the sign-in's id), else by ``correlationId`` where that names exactly one
sign-in, so the alert says which client, address and place the risk was raised on. A
detection whose sign-in is unknown (too old, not exported, out of order) still alerts, with
what the detection itself carries. A ``RiskyUsers`` row alerts when the user's state turns
to ``atRisk`` or ``confirmedCompromised``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pipeline.records import Category, RiskEvent
from pipeline.rules.base import Severity
from pipeline.rules.windows import (
    Hit,
    Observation,
    Scenario,
    StatefulRule,
    StatefulSettings,
    admit,
)

_RISKY_STATES = ("atRisk", "confirmedCompromised")


class Settings(StatefulSettings):
    window_minutes: float = Field(24 * 60, gt=0)
    """How long a sign-in is kept for joining."""
    max_recent: int = Field(20, ge=1)
    """Sign-ins kept per user; the oldest go first."""


def wants(obs: Observation) -> bool:
    """Interactive sign-ins, and any sign-in with risk of its own: where Identity Protection
    raises sign-in detections. Keeping every token refresh would multiply the state."""
    return (
        bool(obs.user)
        and obs.client[0] != "service-principal"
        and (obs.interactive or obs.risk[0] not in ("none", ""))
    )


def step(state: Any, obs: Observation, settings: Settings, newest: float) -> tuple[Any, Hit | None]:
    state = dict(state or {})
    span = (settings.window_minutes + settings.lateness_minutes) * 60
    admitted = admit(state.get("recent", []), [obs.time, obs.id, obs.encode()], newest, span)
    if admitted is not None:
        state["recent"] = admitted[-settings.max_recent :]
    return state, None


def on_risk(
    state: Any, event: RiskEvent, settings: Settings, newest: float
) -> tuple[Any, Hit | None]:
    state = dict(state or {})
    if event.category == Category.RISKY_USERS:
        previous, state["user_state"] = state.get("user_state", ""), event.state
        if event.state not in _RISKY_STATES or previous == event.state:
            return state, None
        about = _from_event(event, event.id)
        severity: Severity = "critical" if event.state == "confirmedCompromised" else _level(event)
        summary = f"Identity Protection marked the user {event.state} ({event.level} risk)"
        evidence = _evidence(event, joined=False)
        return state, Hit(severity, summary, evidence, (), f"{event.id}@{about.time}", about)
    joined = _join(state.get("recent", []), event)
    about = joined or _from_event(event, event.request_id or event.id)
    where = f" on the sign-in from {about.ip}" if about.ip else ""
    summary = (
        f"{event.event_type or 'risk'} detected{where} "
        f"({event.level} risk, {event.timing or 'unknown'} timing)"
    )
    ids = (joined.id,) if joined else (event.request_id,) if event.request_id else ()
    return state, Hit(
        _level(event), summary, _evidence(event, joined is not None), ids, event.id, about
    )


def _join(recent: list[list[Any]], event: RiskEvent) -> Observation | None:
    by_id = [e for e in recent if event.request_id and e[1] == event.request_id]
    if not by_id and event.correlation_id:
        by_id = [
            e for e in recent if Observation.decode(e[2]).correlation_id == event.correlation_id
        ]
        if len(by_id) != 1:
            return None
    return Observation.decode(by_id[0][2]) if by_id else None


def _from_event(event: RiskEvent, signin_id: str) -> Observation:
    return Observation(
        signin_id,
        event.time.timestamp(),
        event.tenant_id,
        event.upn,
        event.user_id,
        event.ip,
        event.location,
        ("unknown", "", "", ""),
        (event.level, event.state, (event.event_type,) if event.event_type else ()),
        "",
        True,
        event.correlation_id,
        "",
    )


def _level(event: RiskEvent) -> Severity:
    return {"high": "high", "medium": "medium", "low": "low"}.get(event.level, "medium")  # type: ignore[return-value]


def _evidence(event: RiskEvent, joined: bool) -> dict[str, object]:
    return {
        "detection_id": event.id,
        "category": event.category.value,
        "risk_event_type": event.event_type,
        "risk_level": event.level,
        "risk_state": event.state,
        "risk_detail": event.detail,
        "detection_timing": event.timing,
        "request_id": event.request_id,
        "joined_signin": joined,
    }


_SIGNIN = {
    "id": "5f0c1c2e-0000-4000-8000-00000000a001",
    "correlationId": "c0ffee00-0000-4000-8000-000000000001",
}
_OTHER = {
    "id": "5f0c1c2e-0000-4000-8000-00000000a002",
    "correlationId": "c0ffee00-0000-4000-8000-000000000001",
}


def _detection(**patch: Any) -> dict[str, Any]:
    return {"category": "UserRiskEvents", **patch}


RULE = StatefulRule(
    id="risk-detection",
    title="Identity Protection risk detection",
    severity="medium",
    mitre=("T1078.004",),
    description=(
        "An Identity Protection detection (UserRiskEvents), joined to the sign-in it refers "
        "to when that sign-in was seen in the last `window_minutes` (default 24 h), or a "
        "RiskyUsers change to atRisk or confirmedCompromised. Severity follows the "
        "detection's risk level; confirmedCompromised is critical."
    ),
    keyed_by="user",
    wants=wants,
    step=step,
    on_risk=on_risk,
    settings=Settings,
    scenarios=(
        Scenario(
            "offline detection joined by requestId",
            1,
            ((0, _SIGNIN), (45, _detection(requestId=_SIGNIN["id"], riskLevel="high"))),
            severity="high",
        ),
        Scenario(
            "detection whose sign-in was never seen still alerts",
            1,
            (
                (
                    0,
                    _detection(
                        requestId="5f0c1c2e-0000-4000-8000-00000000ffff", riskLevel="medium"
                    ),
                ),
            ),
            severity="medium",
        ),
        Scenario(
            "ambiguous correlationId is not a join but still alerts",
            1,
            (
                (0, _SIGNIN),
                (1, _OTHER),
                (
                    30,
                    _detection(
                        requestId="", correlationId=_SIGNIN["correlationId"], riskLevel="low"
                    ),
                ),
            ),
            severity="low",
        ),
        Scenario(
            "user confirmed compromised",
            1,
            (
                (
                    0,
                    {
                        "category": "RiskyUsers",
                        "riskState": "confirmedCompromised",
                        "riskLevel": "high",
                    },
                ),
            ),
            severity="critical",
        ),
        Scenario(
            "user remediated is not an alert",
            0,
            ((0, {"category": "RiskyUsers", "riskState": "remediated", "riskLevel": "none"}),),
        ),
        Scenario("sign-ins alone raise nothing", 0, ((0, _SIGNIN), (1, _OTHER))),
    ),
)
