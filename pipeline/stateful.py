"""Stateful detection: observations, event-time windows, and one alert per incident.

A stateful rule is a pure step over its own small, JSON-ready state. ``scan`` keeps states in
dicts, the worker in Faust tables (changelogged, so a restarted worker resumes its windows).
What every such rule shares lives here: lateness and expiry, redelivery, incidents with
suppression, and the cap on the sign-in ids an alert lists. A rule module holds its pattern.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any, NamedTuple

import orjson

from pipeline.ids import alert_id
from pipeline.records import RiskEvent
from pipeline.rules.base import rank_severity
from pipeline.rules.windows import Hit, Observation, StatefulRule, StatefulSettings


class Incident(NamedTuple):
    id: str
    last: float
    severity: str
    signin_ids: tuple[str, ...]
    total: int
    emitted: int
    """``total`` when an alert version was last emitted."""

    @classmethod
    def load(cls, stored: list[Any]) -> Incident:
        """From its JSON-ready form, where the sign-in ids came back as a list."""
        id_, last, severity, signin_ids, total, emitted = stored
        return cls(id_, last, severity, tuple(signin_ids), total, emitted)


def merge(
    previous: Incident | None, hit: Hit, new_id: str, settings: StatefulSettings
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


class StateBook:
    """Per-key state of the stateful rules over any mapping (a dict, a Faust table).

    Reads are cached and writes collected, so the worker writes each touched key once per
    batch (a table write is a changelog send) when it calls ``flush``. With ``encoded`` the
    store holds orjson bytes: Faust's own JSON codec (the stdlib's) was a tenth of the
    worker's time on these values.
    """

    def __init__(
        self, store: MutableMapping[str, Any] | None = None, encoded: bool = False
    ) -> None:
        self._store: MutableMapping[str, Any] = {} if store is None else store
        self._encoded = encoded
        self._cache: dict[str, dict[str, Any]] = {}
        self._dirty: set[str] = set()

    def _read(self, key: str) -> dict[str, Any]:
        value = self._store.get(key)
        if not value:
            return {}
        return dict(orjson.loads(value) if self._encoded else value)

    def get(self, key: str) -> dict[str, Any]:
        state = self._cache.get(key)
        if state is None:
            state = self._cache[key] = self._read(key)
        return state

    def touched(self, key: str) -> None:
        self._dirty.add(key)

    def flush(self) -> None:
        for key in self._dirty:
            state = self._cache[key]
            if state:
                self._store[key] = orjson.dumps(state) if self._encoded else state
            elif key in self._store:
                del self._store[key]
        self._dirty.clear()
        self._cache.clear()

    def expire(self, keys: Iterable[str], before: float) -> int:
        """Drop keys whose every rule state was last touched before ``before`` (event time);
        the worker's sweep, so idle users and addresses do not hold memory forever."""
        dropped = 0
        for key in list(keys):
            if all(entry[0] < before for entry in self._read(key).values()):
                del self._store[key]
                dropped += 1
        return dropped


def run(
    rule: StatefulRule,
    settings: StatefulSettings,
    states: StateBook,
    key: str,
    item: Observation | RiskEvent,
) -> tuple[Incident, Hit] | None:
    """One observation (or risk record) through one rule for one key; the incident and
    hit when an alert version is due. Expired state is dropped as it is touched."""
    state = states.get(key)
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
    incident = Incident.load(stored) if stored else None
    emit = False
    if hit is not None:
        incident, emit = merge(incident, hit, alert_id(rule.id, (key, hit.anchor)), settings)
    newest = max(newest, t)
    if incident is not None and newest - incident.last > settings.suppression_minutes * 60:
        incident = None
    if rule_state or incident is not None:
        state[rule.id] = [newest, rule_state, list(incident) if incident else None]
    else:
        state.pop(rule.id, None)
    states.touched(key)
    return (incident, hit) if emit and incident is not None and hit is not None else None
