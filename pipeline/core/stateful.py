"""Stateful detection: observations, event-time windows, and one alert per incident.

A stateful rule is a pure step over its own small, JSON-ready state. A key's states are one
value of a ``KeyedState`` (``pipeline.core.state``): in dicts for ``scan``, in Faust tables for the
worker (changelogged, so a restarted worker resumes its windows).
What every such rule shares lives here: lateness and expiry, redelivery, incidents with
suppression, and the cap on the sign-in ids an alert lists. A rule module holds its pattern.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pipeline.core.codec import dump_incident, load_incident
from pipeline.core.enrich import Observation
from pipeline.core.ids import Incident, alert_id
from pipeline.core.records import RiskEvent
from pipeline.core.rules.base import IncidentSettings, rank_severity
from pipeline.core.rules.windows import Hit, Sighting, StatefulRule, StatefulSettings
from pipeline.core.state import MARKS, KeyedState, RuleStates


def merge(
    previous: Incident | None, hit: Hit, new_id: str, settings: IncidentSettings
) -> tuple[Incident, bool]:
    """The incident after ``hit`` and whether to emit a version of its alert.

    A continuing pattern re-emits (same id) only when its severity rises, its sign-in count
    doubles or the hit revises what an earlier one said: receivers keep the last version of
    each id.
    """
    open_ = previous is not None and hit.about.time - previous.last <= (
        settings.suppression_minutes * 60
    )
    if previous is None or not open_:
        ids = hit.signin_ids[: settings.max_signin_ids]
        count = len(hit.signin_ids)
        return Incident(new_id, hit.about.time, hit.severity, ids, count, count), True
    known = set(previous.signin_ids)
    fresh = [i for i in hit.signin_ids if i not in known]
    stale = {i for i in hit.replaces or () if i in known and i not in hit.signin_ids}
    ids = tuple(i for i in previous.signin_ids + tuple(fresh) if i not in stale)
    ids = ids[: settings.max_signin_ids]
    count = previous.total + len(fresh) - len(stale)
    severity = max(previous.severity, hit.severity, key=rank_severity)
    emit = (
        hit.replaces is not None
        or rank_severity(severity) > rank_severity(previous.severity)
        or count >= 2 * previous.emitted
    )
    last = max(previous.last, hit.about.time)
    incident = Incident(
        previous.id, last, severity, ids, count, count if emit else previous.emitted
    )
    return incident, emit


def expire(
    states: KeyedState[RuleStates],
    keys: Iterable[str],
    before: float,
    entries: Mapping[str, Callable[[Any], bool]] | None = None,
) -> int:
    """Drop keys whose every rule state was last touched before ``before`` (event time) and
    that hold nothing else but the positions applied (a user's risk stays), and flush; the
    worker's sweep, so idle users and addresses do not hold memory forever. ``entries``
    names other ``@`` entries with whether one is expired: those go first (an incident, an
    inventory), and a key left with nothing but positions goes too."""
    entries = entries or {}
    dropped = 0
    for key in keys:
        value = states.get(key) or {}
        stale = [name for name, gone in entries.items() if name in value and gone(value[name])]
        kept = {name: entry for name, entry in value.items() if name not in stale}
        if all(
            entry[0] < before if not name.startswith("@") else name == MARKS
            for name, entry in kept.items()
        ):
            states.put(key, None)
            dropped += 1
        elif stale:
            states.put(key, kept)
    states.flush()
    return dropped


def run(
    rule: StatefulRule,
    settings: StatefulSettings,
    states: KeyedState[RuleStates],
    key: str,
    item: Observation | Sighting | RiskEvent,
) -> tuple[Incident, Hit] | None:
    """One observation (or risk record) through one rule for one key; the incident and
    hit when an alert version is due. Expired state is dropped as it is touched."""
    state = states.get(key) or {}
    newest, rule_state, stored = state.get(rule.id) or (0.0, None, None)
    before = rule_state
    if isinstance(item, RiskEvent):
        assert rule.on_risk is not None
        t = item.time.timestamp()
        rule_state, hit = rule.on_risk(rule_state, item, settings, newest)
    else:
        t = item.time
        rule_state, hit = rule.step(rule_state, item, settings, newest)
    if hit is None and rule_state is before:
        return None  # nothing changed (a rule returns a new state object when it changes)
    return _settle(rule.id, settings, states, key, state, newest, t, rule_state, hit, stored)


def file_hit(
    rule_id: str, settings: IncidentSettings, states: KeyedState[RuleStates], key: str, hit: Hit
) -> Incident | None:
    """A single-sign-in rule's finding into the key's incident of that rule (the rule keeps
    no state of its own); the incident when an alert version is due."""
    state = states.get(key) or {}
    newest, _, stored = state.get(rule_id) or (0.0, None, None)
    due = _settle(rule_id, settings, states, key, state, newest, hit.about.time, None, hit, stored)
    return None if due is None else due[0]


def _settle(
    rule_id: str,
    settings: IncidentSettings,
    states: KeyedState[RuleStates],
    key: str,
    state: RuleStates,
    newest: float,
    t: float,
    rule_state: Any,
    hit: Hit | None,
    stored: list[Any] | None,
) -> tuple[Incident, Hit] | None:
    """Merge ``hit`` into the stored incident, expire it, and put the key's new state."""
    incident = load_incident(stored) if stored else None
    emit = False
    if hit is not None:
        incident, emit = merge(incident, hit, alert_id(rule_id, (key, hit.anchor)), settings)
    newest = max(newest, t)
    if incident is not None and newest - incident.last > settings.suppression_minutes * 60:
        incident = None
    if rule_state or incident is not None:
        state[rule_id] = [newest, rule_state, dump_incident(incident) if incident else None]
    else:
        state.pop(rule_id, None)
    states.put(key, state)
    return (incident, hit) if emit and incident is not None and hit is not None else None
