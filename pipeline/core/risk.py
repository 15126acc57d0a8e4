"""Effective Identity Protection risk of a sign-in.

A sign-in carries its own levels (during sign-in, aggregated) and a state. Identity
Protection also reports the *user's* state separately (RiskyUsers, UserRiskEvents), often
minutes or hours later. The effective risk combines both; ``remediated``, ``dismissed`` and
``confirmedSafe`` clear a level. ``update`` keeps the per-user state keyed by user id, as
an entry of the user's state (``pipeline.core.state``): ``scan`` holds it in memory in
event-time order, the streaming worker in its user_state table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from pipeline.core.records import Category, RiskEvent, SignIn

if TYPE_CHECKING:
    from pipeline.core.state import Keyed

LEVELS = ("none", "low", "medium", "high")
_RANK = {level: rank for rank, level in enumerate(LEVELS)}
CLEARED_STATES = frozenset({"remediated", "dismissed", "confirmedSafe"})
ACTIVE_STATES = frozenset({"atRisk", "confirmedCompromised"})
MAX_DETECTIONS = 8
_NO_LEVEL = frozenset({"", "none", "hidden"})


def rank(level: str) -> int:
    """Order of a level; ``hidden``, ``unknownFutureValue`` and empty count as none."""
    return _RANK.get(level, 0)


@dataclass(frozen=True, slots=True)
class UserRisk:
    """A user's Identity Protection state as last reported."""

    level: str
    state: str
    updated: datetime
    detections: tuple[str, ...] = ()

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES and rank(self.level) > 0


@dataclass(frozen=True, slots=True)
class EffectiveRisk:
    level: str
    state: str
    detail: str
    detections: tuple[str, ...]
    from_user_state: bool

    def as_dict(self) -> dict[str, object]:
        return {"level": self.level, "state": self.state, "detections": list(self.detections)}


NO_RISK = EffectiveRisk("none", "none", "", (), False)


def apply(current: UserRisk | None, event: RiskEvent) -> UserRisk | None:
    """The user's state after ``event``; the same pure step serves scan and the worker."""
    if event.category is Category.RISKY_USERS:
        if current is not None and event.time < current.updated:
            return current  # an older snapshot of the user never overrides a newer one
        level = "none" if event.state in CLEARED_STATES else event.level
        detections = current.detections if current and level != "none" else ()
        return UserRisk(level, event.state, event.time, detections)
    # A single detection raises the user's level; it never lowers it, and one older than a
    # remediation or dismissal does not reopen the user.
    if event.state in CLEARED_STATES:
        return current
    if current is not None and not current.active and event.time < current.updated:
        return current
    detections = ((current.detections if current else ()) + (event.event_type,))[-MAX_DETECTIONS:]
    if current is None or not current.active:
        return UserRisk(event.level, event.state or "atRisk", event.time, detections)
    level = event.level if rank(event.level) > rank(current.level) else current.level
    return replace(
        current, level=level, updated=max(current.updated, event.time), detections=detections
    )


def effective(signin: SignIn, user: UserRisk | None) -> EffectiveRisk:
    """Combine the sign-in's own risk with the user's state.

    A non-interactive sign-in (token refresh, every few minutes) keeps only its own risk:
    inheriting the user's state would repeat one finding on every refresh.
    """
    if user is None and signin.risk_during in _NO_LEVEL and signin.risk_aggregated in _NO_LEVEL:
        return NO_RISK  # the common case, decided without ranking anything
    own_cleared = signin.risk_state in CLEARED_STATES
    own = (
        signin.risk_during
        if rank(signin.risk_during) >= rank(signin.risk_aggregated)
        else signin.risk_aggregated
    )
    own_rank = 0 if own_cleared else rank(own)
    inherit = user is not None and user.active and signin.interactive
    if inherit and user is not None and rank(user.level) > own_rank:
        return EffectiveRisk(
            user.level,
            user.state,
            signin.risk_detail,
            signin.risk_event_types + user.detections,
            True,
        )
    if own_rank == 0:
        if own_cleared:
            return EffectiveRisk("none", signin.risk_state, signin.risk_detail, (), False)
        return NO_RISK
    return EffectiveRisk(
        own, signin.risk_state or "atRisk", signin.risk_detail, signin.risk_event_types, False
    )


def update(users: Keyed[UserRisk], event: RiskEvent) -> None:
    """``event`` applied to its user's state in ``users`` (put only when it changes it); a
    record without a user id is nobody's."""
    if not event.user_id:
        return
    current = users.get(event.user_id)
    state = apply(current, event)
    if state is not current:
        users.put(event.user_id, state)
