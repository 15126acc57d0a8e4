"""Incidents per entity: the alerts of one user (or, for IP-keyed rules, one source address)
that keep coming within a window, as one record an analyst reads instead of a flat list.

A pure step over a small JSON-ready state per entity key, like the stateful rules' states
(``pipeline.core.stateful``): ``scan`` keeps the states in a dict (``Tracker``), the worker
can keep them in a changelogged table keyed by the same key (``entity``), which is the key
the alert's own rule state lives under, so an entity's incident stays in its partition.

- An alert joins the open incident of its entity; no merging across entities. The incident
  stays open while alerts keep coming within ``window_hours`` (event time) of its last one.
- The id is derived like alert ids, from the kind, the key and the opening alert's id, so a
  redelivery or a rerun gives the same id.
- Severity is the highest of its alerts, one step higher when a combination of the policy's
  ``escalate`` table is present: an alert of a ``first`` rule, then (same time or later) an
  alert of a ``then`` rule. Two alerts that rest on a common sign-in never escalate each
  other: one sign-in seen by two rules (IMAP from Samsung Email is legacy-auth and
  unapproved-mobile-client) is one event, not a sequence.
- A version is due whenever the incident changes (a new alert, a higher severity, an
  escalation, a new entity); a redelivered alert changes nothing.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.core.ids import alert_id
from pipeline.core.rules import REGISTRY, StatefulRule
from pipeline.core.rules.base import rank_severity, shift
from pipeline.core.state import Keyed
from pipeline.core.timeparse import format_time, parse_time

State = dict[str, Any]
"""One entity's open incident, JSON-ready (what a table value holds)."""
AnyAlert = Mapping[str, Any]
"""An alert as on the alerts topic (``Alert`` as a mapping)."""

IP_KEYED = frozenset(
    r.id for r in REGISTRY.values() if isinstance(r, StatefulRule) and r.keyed_by == "ip"
)
"""Rules whose alerts belong to a source address rather than a user."""

MAX_ALERTS = 50
"""Alerts an incident lists (the newest); ``alert_count`` has them all."""
MAX_ENTITIES = 20
"""Values per entity list (users, addresses, countries, apps, clients)."""
ANY_RULE = "*"
INCIDENT = "incident"
"""An incident's ``rule``: never a rule id, so receivers tell incidents from alerts by it."""


class Escalation(BaseModel):
    """One combination that raises an incident's severity one step."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    first: tuple[str, ...] = Field(min_length=1)
    then: tuple[str, ...] = Field(min_length=1)
    """Rule ids, or ``*``: any rule not in ``first``."""
    why: str = Field(min_length=1)
    """Said in the incident's narrative and ``escalation``."""

    @field_validator("first", "then")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for rule in value:
            if rule != ANY_RULE and rule not in REGISTRY:
                raise ValueError(f"unknown rule id {rule!r}")
        return value

    def follows(self, earlier: str, later: str) -> bool:
        """``earlier`` then ``later`` is this combination."""
        if earlier not in self.first:
            return False
        return later in self.then or (ANY_RULE in self.then and later not in self.first)


class IncidentPolicy(BaseModel):
    """The policy's ``incidents:`` section."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_hours: float = Field(24, gt=0)
    """An incident stays open while its entity's alerts come within this of the last one."""
    escalate: tuple[Escalation, ...] = (
        Escalation(
            first=("brute-force", "mfa-fatigue", "mfa-fraud-report", "device-code-phishing"),
            then=(ANY_RULE,),
            why="password guessing, MFA abuse or a device-code token, then another finding",
        ),
        Escalation(
            first=("risky-signin", "risk-detection"),
            then=("impossible-travel", "unapproved-mobile-client", "legacy-auth"),
            why="a risky sign-in, then travel or mail access that policy should stop",
        ),
    )


def entity(alert: AnyAlert) -> tuple[str, str]:
    """(kind, key) of the alert's entity: the source address for an IP-keyed rule, else the
    user (their object id, the key of the user's state). An alert without either is its own
    entity."""
    if alert.get("rule") in IP_KEYED and alert.get("ip"):
        return "ip", str(alert["ip"])
    return "user", str(alert.get("user_id") or alert.get("user") or alert.get("ip") or alert["id"])


def incident_id(kind: str, key: str, opening_alert: str) -> str:
    return alert_id("incident", (kind, key, opening_alert))


def _signins(alert: AnyAlert) -> list[int]:
    """Compact fingerprints of the sign-ins the alert rests on (enough to tell two alerts
    apart within one entity's day)."""
    return [zlib.crc32(str(i).encode()) for i in alert.get("signin_ids") or ()]


def _time(alert: AnyAlert) -> float:
    return parse_time(str(alert["time"])).timestamp()


def _add(values: list[Any], *new: Any) -> bool:
    changed = False
    for value in new:
        if value and value not in values and len(values) < MAX_ENTITIES:
            values.append(value)
            changed = True
    return changed


def _open(kind: str, key: str, alert: AnyAlert, t: float) -> State:
    return {
        "id": incident_id(kind, key, str(alert["id"])),
        "kind": kind,
        "key": key,
        "first": t,
        "last": t,
        "peak": str(alert["severity"]),
        "count": 0,
        "alerts": [],
        "rules": [],
        "mitre": [],
        "escalation": [],
        "tenant_id": str(alert.get("tenant_id") or ""),
        "user": "",
        "user_id": "",
        "ip": key if kind == "ip" else "",
        "entities": {"users": [], "ips": [], "countries": [], "apps": [], "clients": []},
    }


def step(state: State | None, alert: AnyAlert, policy: IncidentPolicy) -> tuple[State, bool]:
    """The entity's incident after ``alert`` (a new one when none is open), and whether it
    changed, i.e. whether a version of it is due. ``state`` is not modified."""
    kind, key = entity(alert)
    t = _time(alert)
    if state is None or t - state["last"] > policy.window_hours * 3600:
        state = _open(kind, key, alert, t)
    else:
        state = {**state, "alerts": [list(a) for a in state["alerts"]]}
        state["entities"] = {k: list(v) for k, v in state["entities"].items()}
        for name in ("rules", "mitre", "escalation"):
            state[name] = list(state[name])
    changed = _fold(state, alert, t, policy)
    return state, changed


def _fold(state: State, alert: AnyAlert, t: float, policy: IncidentPolicy) -> bool:
    aid, rule, severity = str(alert["id"]), str(alert["rule"]), str(alert["severity"])
    signins = _signins(alert)
    listed = next((a for a in state["alerts"] if a[0] == aid), None)
    changed = False
    if listed is None:
        listed = [aid, rule, severity, t, signins]
        state["alerts"] = [*state["alerts"], listed][-MAX_ALERTS:]
        state["count"] += 1
        changed = True
    elif rank_severity(severity) > rank_severity(listed[2]) or set(signins) - set(listed[4]):
        listed[2] = max(listed[2], severity, key=rank_severity)
        listed[4] = sorted(set(listed[4]) | set(signins))
        changed = True
    state["first"], state["last"] = min(state["first"], t), max(state["last"], t)
    if rank_severity(severity) > rank_severity(state["peak"]):
        state["peak"] = severity
    changed |= _add(state["rules"], rule)
    changed |= _add(state["mitre"], *(alert.get("mitre") or ()))
    changed |= _entities(state, alert)
    changed |= _escalate(state, listed, policy)
    return changed


def _entities(state: State, alert: AnyAlert) -> bool:
    found = state["entities"]
    evidence = alert.get("evidence") or {}
    client = alert.get("client") or {}
    location = alert.get("location") or {}
    users = evidence.get("users") if state["kind"] == "ip" else None
    changed = False
    if (
        state["kind"] == "user"
        and not state["user"]
        and (alert.get("user") or alert.get("user_id"))
    ):
        state["user"], state["user_id"] = (
            str(alert.get("user") or ""),
            str(alert.get("user_id") or ""),
        )
        changed = True
    changed |= _add(found["users"], alert.get("user"), *(users if isinstance(users, list) else ()))
    ends = (evidence.get(k) for k in ("from", "to"))  # impossible travel's two places
    places: list[dict[str, Any]] = [p for p in (location, *ends) if isinstance(p, dict)]
    changed |= _add(found["ips"], alert.get("ip"), *(p.get("ip") for p in places))
    changed |= _add(found["countries"], *(p.get("country") for p in places))
    changed |= _add(found["apps"], evidence.get("app_name"))
    name = client.get("name")
    if name and client.get("version"):
        name = f"{name} {client['version']}"
    changed |= _add(found["clients"], name)
    return changed


def _escalate(state: State, new: list[Any], policy: IncidentPolicy) -> bool:
    """Add the combinations ``new`` completes with an alert listed before it."""
    changed = False
    t, mine = new[3], set(new[4])
    for combination in policy.escalate:
        if combination.why in state["escalation"]:
            continue
        for other in state["alerts"]:
            if other is new or mine & set(other[4]):
                continue
            before, after = (other, new) if other[3] <= t else (new, other)
            if combination.follows(before[1], after[1]) or (
                other[3] == t and combination.follows(after[1], before[1])
            ):
                state["escalation"].append(combination.why)
                changed = True
                break
    return changed


def severity(state: State) -> str:
    peak = state["peak"]
    return shift(peak, 1) if state["escalation"] else peak


def expired(state: State, before: float) -> bool:
    """Closed by event time ``before`` minus the window: the worker's sweep drops it."""
    return float(state["last"]) < before


def _when(t: float) -> str:
    return format_time(datetime.fromtimestamp(t, UTC))


def narrative(state: State) -> str:
    """One line: who, which findings in which order, from where, and why it was escalated."""
    who = state["user"] or state["user_id"] if state["kind"] == "user" else state["ip"]
    found = state["entities"]
    rules = " then ".join(state["rules"])
    places = ""
    if found["ips"]:
        places = f" from {len(found['ips'])} address(es)"
        if found["countries"]:
            places += f" in {', '.join(found['countries'])}"
    hours = (state["last"] - state["first"]) / 3600
    span = f" over {hours:.1f} h" if hours >= 1 else f" over {round(hours * 60)} min"
    text = f"{who}: {rules} ({state['count']} alert(s)){places}{span if hours else ''}"
    if state["escalation"]:
        text += f"; raised to {severity(state)}: {'; '.join(state['escalation'])}"
    return text


def record(state: State) -> dict[str, Any]:
    """The incident as it is sent and written (its JSON form). ``rule``, ``title``,
    ``summary`` (the narrative) and ``time`` (its last alert's) are the alert's fields of
    the same meaning, so every sink takes an incident as it takes an alert."""
    who = state["user"] or state["user_id"] if state["kind"] == "user" else state["ip"]
    return {
        "id": state["id"],
        "rule": INCIDENT,
        "kind": state["kind"],
        "severity": severity(state),
        "title": f"Incident: {', '.join(state['rules'])} ({who})",
        "summary": narrative(state),
        "first": _when(state["first"]),
        "time": _when(state["last"]),
        "tenant_id": state["tenant_id"],
        "user": state["user"],
        "user_id": state["user_id"],
        "ip": state["ip"],
        "alert_count": state["count"],
        "alert_ids": [a[0] for a in state["alerts"]],
        "rules": list(state["rules"]),
        "mitre": list(state["mitre"]),
        "escalation": list(state["escalation"]),
        "entities": {k: list(v) for k, v in state["entities"].items()},
    }


def is_incident(document: Mapping[str, Any]) -> bool:
    """An incident record rather than an alert (both travel as JSON objects)."""
    return document.get("rule") == INCIDENT and "alert_ids" in document


def track(
    users: Keyed[State], addresses: Keyed[State], alert: AnyAlert, policy: IncidentPolicy
) -> tuple[str, dict[str, Any] | None]:
    """The one call per alert version, ``scan``'s and the worker's: the alert's incident id,
    and the incident's new version when one is due. The state lives with the entity's other
    state: the user's (``users``, keyed by user id) or the address's (``addresses``)."""
    kind, key = entity(alert)
    states = users if kind == "user" else addresses
    state, changed = step(states.get(key), alert, policy)
    states.put(key, state)
    return str(state["id"]), record(state) if changed else None


class States(dict[str, Any]):
    """A dict as keyed state (``pipeline.core.state.Keyed``), for offline runs."""

    def put(self, key: str, value: Any) -> None:
        if value is None:
            self.pop(key, None)
        else:
            self[key] = value


class Tracker:
    """Incidents over alerts in the order they are raised, states in dicts: ``scan``'s.

    ``add`` returns the alert's incident id; ``incidents`` keeps the last version of each
    incident, in the order incidents were opened."""

    def __init__(self, policy: IncidentPolicy) -> None:
        self.policy = policy
        self.states = States()
        """Users' and addresses' states in one dict: a user id never reads as an address."""
        self.incidents: dict[str, dict[str, Any]] = {}

    def add(self, alert: AnyAlert) -> str:
        incident_id, version = track(self.states, self.states, alert, self.policy)
        if version is not None:
            self.incidents[incident_id] = version
        return incident_id
