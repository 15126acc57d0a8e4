"""What stateful rules are made of: hits, settings, scenarios, and the event-time window
helpers they share (the ``Observation`` they step over is in ``pipeline.core.enrich``).

A stateful rule is a pure step over its own small, JSON-ready state; ``pipeline.core.stateful``
runs it (incidents, suppression, keyed state) for ``scan`` and the worker alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from pydantic import Field

from pipeline.core.enrich import Observation
from pipeline.core.records import RiskEvent, SignIn
from pipeline.core.rules.base import IncidentSettings, Severity
from pipeline.core.timeparse import format_time


class Hit(NamedTuple):
    """A rule's pattern is present now; the incident layer decides whether it is news."""

    severity: Severity
    summary: str
    evidence: dict[str, object]
    signin_ids: tuple[str, ...]
    anchor: str
    """Names the incident: the first sign-in (or detection) of the pattern."""
    about: Observation
    """The sign-in the alert describes (time, client, place)."""
    replaces: tuple[str, ...] | None = None
    """Set when the hit says better what an earlier hit of its incident said (a detection
    joined to its sign-in once that arrived): the sign-in ids that hit named. Worth a new
    alert version though nothing grew, and the ids it named no longer count."""


class StatefulSettings(IncidentSettings):
    window_minutes: float = Field(10, gt=0)
    lateness_minutes: float = Field(5, ge=0)
    """How late (event time) a record may arrive and still count: Event Hubs batches lag."""


class Sighting(NamedTuple):
    """A sign-in for a rule that needs more of it than an ``Observation`` keeps (its session,
    network, app, user agent). Only user-keyed rules get one: the by-IP topic carries
    observations, and state keeps only what each rule takes from it."""

    obs: Observation
    signin: SignIn

    @property
    def time(self) -> float:
        return self.obs.time


Step = Callable[[Any, Any, Any, float], tuple[Any, Hit | None]]
"""(rule state or None, observation (a ``Sighting`` for a rule that ``sees_signin``),
settings, newest event time seen) -> (state, hit).
A step that changes its state returns a new state object; returning the one it was given
tells the engine nothing changed (and nothing needs writing)."""
RiskStep = Callable[[Any, RiskEvent, Any, float], tuple[Any, Hit | None]]


@dataclass(frozen=True, slots=True)
class Scenario:
    """A rule's own test: raw sign-ins (and risk records) in delivery order, and what should
    come of them. ``events`` are (minute offset, property patch); a patch with a
    ``category`` of ``UserRiskEvents`` or ``RiskyUsers`` is a risk record, any other the
    sign-in's category; ``envelope`` patches a sign-in's envelope."""

    name: str
    alerts: int
    """Distinct incidents (alert ids) expected."""
    events: tuple[tuple[float, dict[str, Any]], ...]
    severity: Severity | None = None
    """Severity of the last version of the last incident, when it matters."""
    policy: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StatefulRule:
    id: str
    title: str
    severity: Severity
    mitre: tuple[str, ...]
    description: str
    next_steps: tuple[str, ...]
    """What an analyst checks and does, in order; every alert of the rule carries them."""
    keyed_by: Literal["user", "ip"]
    wants: Callable[[Observation], bool]
    """Cheap filter: the sign-ins that reach ``step`` (most do not, and cost nothing)."""
    step: Step
    scenarios: tuple[Scenario, ...]
    settings: type[StatefulSettings] = StatefulSettings
    on_risk: RiskStep | None = None
    sees_signin: bool = False
    """``step`` gets a ``Sighting`` (user-keyed rules only)."""
    workloads: bool = False
    """Its key is a service principal's or managed identity's object id."""


def admit(
    entries: list[list[Any]], entry: list[Any], newest: float, span: float
) -> list[list[Any]] | None:
    """``entries`` ([time, id, ...], oldest first) with ``entry`` inserted in time order and
    everything older than ``newest - span`` dropped, in place; None (and ``entries`` as it
    was) when ``entry`` is already there (a redelivery) or too late to count.

    In order is the common case, so this looks only at the tail and the head of the list.
    """
    t = entry[0]
    horizon = max(newest, t) - span
    if t < horizon:
        return None
    at = len(entries)
    while at and entries[at - 1][0] >= t:
        if entries[at - 1][0] == t and entries[at - 1][1] == entry[1]:
            return None
        at -= 1
    entries.insert(at, entry)
    stale = 0
    while entries[stale][0] < horizon:
        stale += 1
    if stale:
        del entries[:stale]
    return entries


def burst(
    entries: list[list[Any]], t: float, width: float, key: Callable[[list[Any]], Any]
) -> list[list[Any]]:
    """The entries of the ``width``-long interval around ``t`` with the most distinct keys.

    One pass with a sliding window over the time-ordered entries: a burst of thousands of
    attempts costs linear time, not quadratic.
    """
    counts: dict[Any, int] = {}
    best: tuple[int, int, int] = (0, 0, 0)  # distinct keys, start, end (exclusive)
    lo = 0
    for hi, entry in enumerate(entries):
        if entry[0] > t + width:
            break
        k = key(entry)
        counts[k] = counts.get(k, 0) + 1
        while entries[lo][0] < entry[0] - width:
            gone = key(entries[lo])
            counts[gone] -= 1
            if not counts[gone]:
                del counts[gone]
            lo += 1
        if entry[0] >= t and entries[lo][0] <= t and len(counts) > best[0]:
            best = (len(counts), lo, hi + 1)
    return entries[best[1] : best[2]]


_MAX_ENTRIES = 1000
"""Attempts kept per key: past this a burst is an incident already, and memory stays bounded
(about 60 bytes an attempt)."""


class BurstSettings(StatefulSettings):
    threshold: int = Field(10, ge=2)
    """Attempts within ``window_minutes`` that make a burst."""


def burst_then_success(
    state: Any,
    obs: Observation,
    settings: BurstSettings,
    newest: float,
    counted: str,
    describe: Callable[[int, bool], tuple[Severity, str]],
) -> tuple[Any, Hit | None]:
    """Shared by brute force and MFA fatigue: ``threshold`` sign-ins with outcome
    ``counted`` within the window, and a success after them (``describe`` gets the burst
    size and whether it ended in a success, and words the alert)."""
    window = settings.window_minutes * 60
    entries: list[list[Any]] = (state or {}).get("burst", [])
    if obs.outcome == counted:
        admitted = admit(
            entries, [obs.time, obs.id], newest, window + settings.lateness_minutes * 60
        )
        if admitted is None:
            return state, None
        del admitted[:-_MAX_ENTRIES]
        found = burst(admitted, obs.time, window, key=lambda e: e[1])
        state = {"burst": admitted}
        if len(found) < settings.threshold:
            return state, None
        severity, summary = describe(len(found), False)
        ids = tuple(e[1] for e in found)
        return state, Hit(severity, summary, _burst_evidence(found, settings), ids, ids[0], obs)
    # a success: did a burst end just before it?
    before = [e for e in entries if obs.time - window <= e[0] <= obs.time]
    if len(before) < settings.threshold:
        return state, None
    severity, summary = describe(len(before), True)
    ids = (*(e[1] for e in before), obs.id)
    evidence = _burst_evidence(before, settings) | {"succeeded_signin_id": obs.id}
    return state, Hit(severity, summary, evidence, ids, ids[0], obs)


def _burst_evidence(found: list[list[Any]], settings: BurstSettings) -> dict[str, object]:
    first, last = found[0][0], found[-1][0]
    return {
        "attempts": len(found),
        "threshold": settings.threshold,
        "window_minutes": settings.window_minutes,
        "first": format_time(datetime.fromtimestamp(first, UTC)),
        "span_seconds": round(last - first, 3),
    }


def distinct_users(
    state: Any,
    obs: Observation,
    window_minutes: float,
    lateness_minutes: float,
    newest: float,
    min_users: int,
    cap: int,
) -> tuple[Any, list[list[Any]] | None]:
    """Shared by the IP-keyed rules: ``obs`` admitted among an address's attempts (at most
    ``cap``), and the burst around it when ``min_users`` distinct users are in one
    ``window_minutes``. Entries are [time, sign-in id, user id, UPN]."""
    window = window_minutes * 60
    entries: list[list[Any]] = (state or {}).get("attempts", [])
    admitted = admit(
        entries, [obs.time, obs.id, obs.user_id, obs.user], newest, window + lateness_minutes * 60
    )
    if admitted is None:
        return state, None
    state = {"attempts": admitted[-cap:]}
    found = burst(state["attempts"], obs.time, window, key=lambda e: e[2])
    return state, found if len({e[2] for e in found}) >= min_users else None


class BaselineSettings(StatefulSettings):
    window_minutes: float = Field(30 * 1440, gt=0)
    """The baseline: a value not seen for this long is new again (default 30 days)."""
    min_history_days: float = Field(7, ge=0)
    """No alert until the first successful sign-in is at least this old ..."""
    min_signins: int = Field(10, ge=0)
    """... and at least this many successful sign-ins (of every kind) were seen."""
    max_values: int = Field(20, ge=1)
    """Values kept per key; past it the one seen longest ago is forgotten."""


_REFRESH = 86400.0
"""A known value's last-seen time is moved on at most daily: the baseline is weeks long, and
a state left as it was is not written again (most sign-ins change nothing)."""


def baseline_step(
    state: Any, t: float, value: str, alert: bool, settings: BaselineSettings
) -> tuple[Any, bool, dict[str, object]]:
    """A successful sign-in at ``t`` with ``value`` (a country, a network; "" when unknown,
    which is never new) into a key's baseline {"first", "count", "seen": {value: last
    seen}}; whether it is new and may alert (``alert`` and the history is long enough), and
    the facts for the evidence. A value joins the baseline at once, alerted or not.
    ``count`` stops one past ``min_signins``: beyond that it decides nothing."""
    horizon = t - settings.window_minutes * 60
    if state is not None:
        last = state["seen"].get(value) if value else None
        learning = state["count"] <= settings.min_signins or t < state["first"]
        if not learning and (not value or (last is not None and t - last < _REFRESH)):
            return state, False, {}  # the same object: nothing to write
    state = dict(state or {"first": t, "count": 0, "seen": {}})
    seen = dict(state["seen"])
    last = seen.get(value) if value else None
    state["first"] = min(state["first"], t)
    state["count"] = min(state["count"] + 1, settings.min_signins + 1)
    history = t - state["first"] >= settings.min_history_days * 86400
    established = history and state["count"] > settings.min_signins
    new = bool(value) and (last is None or last < horizon)
    facts: dict[str, object] = {}
    if new and alert and established:
        facts = {
            "known": sorted(v for v, when in seen.items() if when >= horizon),
            "history_since": format_time(datetime.fromtimestamp(state["first"], UTC)),
            "baseline_days": settings.window_minutes / 1440,
        }
    if value:
        seen[value] = max(t, last or t)
    kept = sorted(((w, v) for v, w in seen.items() if w >= horizon), reverse=True)
    state["seen"] = {v: w for w, v in kept[: settings.max_values]}
    return state, bool(facts), facts
