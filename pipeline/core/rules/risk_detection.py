"""risk-detection: an Identity Protection detection, joined back to the sign-in it is about.

Offline detections (leaked credentials, anomalous token, unfamiliar features computed after
the fact) arrive minutes to hours after their sign-in, when no sign-in rule can see them.
The rule keeps each user's recent sign-ins and joins a detection to its sign-in by
``requestId`` (= the sign-in's id), else by ``correlationId`` where that names exactly one
sign-in, so the alert says which client, address and place the risk was raised on. A
detection whose sign-in is unknown (too old, not exported, later than ``lateness_minutes``)
still alerts, with what the detection itself carries. A ``RiskyUsers`` row alerts when the
user's state turns to ``atRisk`` or ``confirmedCompromised``.

The join does not depend on which of the two comes first, as long as the sign-in is no more
than ``lateness_minutes`` late: they travel in different categories and envelopes, so the
worker may well take a realtime detection before its sign-in. A detection not yet joined by
``requestId`` is kept that long, and the sign-in that completes its join re-sends its alert
(same id), joined; so ``scan`` and the worker agree however records are batched.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pipeline.core.codec import load_observation
from pipeline.core.enrich import Observation
from pipeline.core.records import Category, RiskEvent
from pipeline.core.rules.base import Severity
from pipeline.core.rules.windows import (
    Hit,
    Scenario,
    StatefulRule,
    StatefulSettings,
    admit,
)

_RISKY_STATES = ("atRisk", "confirmedCompromised")


class RiskDetectionSettings(StatefulSettings):
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


def step(
    state: Any, obs: Observation, settings: RiskDetectionSettings, newest: float
) -> tuple[Any, Hit | None]:
    state = _current(state)
    span = (settings.window_minutes + settings.lateness_minutes) * 60
    recent, values = list(state.get("recent", [])), list(state.get("values", []))
    if admit(recent, _remembered(obs, values), newest, span) is None:
        return state, None
    _remember(state, recent[-settings.max_recent :], values)
    if "pending" not in state:
        return state, None
    pending = _unexpired(state, max(newest, obs.time), settings)
    hit = None
    for entry in pending:
        _, _, correlation_id, joined_id, evidence = entry
        request_id = evidence["request_id"]
        if obs.id != request_id and not (correlation_id and obs.correlation_id == correlation_id):
            continue
        joined = _join(state, request_id, correlation_id)
        if joined is None or joined.id == joined_id:
            continue  # a join is only ever improved, never undone
        entry[3] = joined.id
        # One alert version per step: further detections of this sign-in are in the same
        # incident, whose alert describes the first of them when they arrive in order too.
        # what its last version named gives way to this sign-in
        named = (joined_id or request_id,) if joined_id or request_id else ()
        hit = hit or _hit(evidence, joined, joined=True)._replace(replaces=named)
    _keep(state, [entry for entry in pending if not _final(entry)])
    return state, hit


def on_risk(
    state: Any, event: RiskEvent, settings: RiskDetectionSettings, newest: float
) -> tuple[Any, Hit | None]:
    state = _current(state)
    if event.category == Category.RISKY_USERS:
        previous, state["user_state"] = state.get("user_state", ""), event.state
        if event.state not in _RISKY_STATES or previous == event.state:
            return state, None
        about = _from_event(event, event.id)
        severity: Severity = (
            "critical" if event.state == "confirmedCompromised" else _severity(event.level)
        )
        summary = f"Identity Protection marked the user {event.state} ({event.level} risk)"
        evidence = _evidence(event) | {"joined_signin": False}
        return state, Hit(severity, summary, evidence, (), f"{event.id}@{about.time}", about)
    joined = _join(state, event.request_id, event.correlation_id)
    evidence = _evidence(event)
    t = event.time.timestamp()
    pending = _unexpired(state, max(newest, t), settings)
    entry = [t, event.id, event.correlation_id, joined.id if joined else "", evidence]
    if not _final(entry):
        pending = admit(pending, entry, newest, settings.lateness_minutes * 60) or pending
    _keep(state, pending[-settings.max_recent :])
    if joined is not None:
        return state, _hit(evidence, joined, joined=True)
    return state, _hit(evidence, _from_event(event, event.request_id or event.id), joined=False)


def _unexpired(
    state: dict[str, Any], newest: float, settings: RiskDetectionSettings
) -> list[list[Any]]:
    """Detections not joined by ``requestId`` whose sign-in may still arrive in time."""
    horizon = newest - settings.lateness_minutes * 60
    return [entry for entry in state.get("pending", []) if entry[0] >= horizon]


def _final(entry: list[Any]) -> bool:
    """Joined by ``requestId``: no sign-in that arrives later can be a better join."""
    request_id = entry[4]["request_id"]
    return bool(request_id) and entry[3] == request_id


def _keep(state: dict[str, Any], pending: list[list[Any]]) -> None:
    if pending:
        state["pending"] = pending
    else:
        state.pop("pending", None)


def _parts(obs: Observation) -> list[Any]:
    """What an alert shows of a sign-in besides its id, time and address, in parts a user's
    sign-ins mostly share (who, place, client, risk, outcome and app, the session's
    correlation id): the state keeps each distinct part once."""
    level, state, detections = obs.risk
    return [
        [obs.tenant_id, obs.user, obs.user_id],
        list(obs.location),
        list(obs.client),
        [level, state, list(detections)],
        [obs.outcome, obs.interactive, obs.app],
        obs.correlation_id,
    ]


def _remembered(obs: Observation, values: list[Any]) -> list[Any]:
    """[time, id, address, index of each part in ``values``], adding new parts to it (in a
    free slot, None, where there is one)."""
    at = []
    for part in _parts(obs):
        try:
            at.append(values.index(part))
        except ValueError:
            if None in values:
                values[values.index(None)] = part
            else:
                values.append(part)
            at.append(values.index(part))
    return [obs.time, obs.id, obs.ip, *at]


def _recalled(entry: list[Any], values: list[Any]) -> Observation:
    t, signin_id, ip, *at = entry
    who, location, client, risk, (outcome, interactive, app), correlation_id = (
        values[i] for i in at
    )
    row = [signin_id, t, *who, ip, location, client, risk, outcome, interactive]
    return load_observation([*row, correlation_id, app])


def _remember(state: dict[str, Any], recent: list[list[Any]], values: list[Any]) -> None:
    """Keep ``recent`` and the parts they use; a part no longer used leaves a free slot
    (None) rather than renumbering every entry."""
    used = {i for entry in recent for i in entry[3:]}
    for i, part in enumerate(values):
        if part is not None and i not in used:
            values[i] = None
    while values and values[-1] is None:
        values.pop()
    state["recent"], state["values"] = recent, values


def _current(state: Any) -> dict[str, Any]:
    """A copy of the state in today's form: state an earlier version wrote, where each
    remembered sign-in carried its whole observation row ([time, id, row]), is converted."""
    current: dict[str, Any] = dict(state or {})
    old = current.get("recent", [])
    if old and isinstance(old[0][2], list):
        values: list[Any] = []
        current["recent"] = [_remembered(load_observation(row), values) for _, _, row in old]
        current["values"] = values
    return current


def _join(state: dict[str, Any], request_id: str, correlation_id: str) -> Observation | None:
    recent, values = state.get("recent", []), state.get("values", [])
    found = [_recalled(e, values) for e in recent if request_id and e[1] == request_id]
    if not found and correlation_id:
        found = [_recalled(e, values) for e in recent if values[e[-1]] == correlation_id]
        if len(found) != 1:
            return None
    return found[0] if found else None


def _hit(evidence: dict[str, Any], about: Observation, joined: bool) -> Hit:
    """A detection's alert from what the rule keeps of it, so a detection that waited for
    its sign-in reads as if the sign-in had come first."""
    where = f" on the sign-in from {about.ip}" if about.ip else ""
    summary = (
        f"{evidence['risk_event_type'] or 'risk'} detected{where} "
        f"({evidence['risk_level']} risk, {evidence['detection_timing'] or 'unknown'} timing)"
    )
    ids = (about.id,) if joined or evidence["request_id"] else ()
    severity = _severity(evidence["risk_level"])
    anchor = str(evidence["detection_id"])
    evidence = evidence | {"joined_signin": joined}
    return Hit(severity, summary, evidence, ids, anchor, about)


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


def _severity(level: str) -> Severity:
    return {"high": "high", "medium": "medium", "low": "low"}.get(level, "medium")  # type: ignore[return-value]


def _evidence(event: RiskEvent) -> dict[str, Any]:
    """JSON-ready, so a detection waiting for its sign-in keeps it in the rule's state."""
    return {
        "detection_id": event.id,
        "category": event.category.value,
        "risk_event_type": event.event_type,
        "risk_level": event.level,
        "risk_state": event.state,
        "risk_detail": event.detail,
        "detection_timing": event.timing,
        "request_id": event.request_id,
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
    next_steps=(
        "Open the detection in Identity Protection and the sign-in it names; ask the user whether "
        "it was theirs.",
        "If not: confirm the user compromised, revoke their sessions and reset the password; check"
        " for new MFA methods, mailbox rules and app consents.",
        "If it was: dismiss the risk so later sign-ins are not judged by it.",
    ),
    keyed_by="user",
    wants=wants,
    step=step,
    on_risk=on_risk,
    settings=RiskDetectionSettings,
    scenarios=(
        Scenario(
            "offline detection joined by requestId",
            1,
            ((0, _SIGNIN), (45, _detection(requestId=_SIGNIN["id"], riskLevel="high"))),
            severity="high",
        ),
        Scenario(
            "realtime detection delivered before its sign-in is one alert",
            1,
            ((0, _detection(requestId=_SIGNIN["id"], riskLevel="high")), (0, _SIGNIN)),
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
