"""new-country: a user's successful interactive sign-in from a country not in their baseline.

The baseline is every country of the user's successful sign-ins (interactive or not) within
``window_minutes`` (default 30 days), kept per user (at most ``max_values`` countries). A
user with too short a history (first sign-in under ``min_history_days`` ago, or fewer than
``min_signins`` successful sign-ins) is learning and never alerts: a new deployment learns
for a week unless ``signin-risk baseline`` warmed it. An empty country is never new; a
country that alerted joins the baseline at once, so a stay abroad alerts once; a failed
sign-in neither alerts nor enters the baseline.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.outcomes import Outcome
from pipeline.core.rules.windows import (
    BaselineSettings,
    Hit,
    Scenario,
    Sighting,
    StatefulRule,
    baseline_step,
)

_SUCCESS = Outcome.SUCCESS.value
DAY = 1440.0


def wants(obs: Any) -> bool:
    return bool(obs.outcome == _SUCCESS)


def step(
    state: Any, seen: Sighting, settings: BaselineSettings, newest: float
) -> tuple[Any, Hit | None]:
    s, obs = seen.signin, seen.obs
    if s.is_workload:
        return state, None
    country = s.location.country
    state, new, facts = baseline_step(state, obs.time, country, s.interactive, settings)
    if not new:
        return state, None
    summary = (
        f"first successful sign-in from {country} (known: {', '.join(facts['known']) or 'none'})"  # type: ignore[arg-type]
    )
    evidence = {"country": country, "city": s.location.city, "ip": s.ip, **facts}
    return state, Hit("medium", summary, evidence, (obs.id,), obs.id, obs)


def history(
    days: int = 8, per_day: int = 2, **patch: Any
) -> tuple[tuple[float, dict[str, Any]], ...]:
    """A user's successful everyday sign-ins at home, ``days`` days of them."""
    return tuple(
        (day * DAY + i * 60.0, {"location": {"city": "Seattle", "countryOrRegion": "US"}, **patch})
        for day in range(days)
        for i in range(per_day)
    )


_ABROAD = {"ipAddress": "145.53.77.20", "location": {"city": "Amsterdam", "countryOrRegion": "NL"}}
_LATER = 8 * DAY + 600

RULE = StatefulRule(
    id="new-country",
    title="Sign-in from a new country",
    severity="medium",
    mitre=("T1078.004",),
    description=(
        "A successful interactive sign-in from a country where the user had no successful "
        "sign-in within the baseline (`window_minutes`, default 30 days), once the user has "
        "a history (`min_history_days` 7 and `min_signins` 10 by default)."
    ),
    next_steps=(
        "Ask the user whether they are travelling or use a VPN that exits in that country.",
        "If not: revoke the user's sessions, reset the password and check for new MFA methods.",
        "If travel is common, add the country to the allow-list or the user to this rule's "
        "exceptions for the trip.",
    ),
    keyed_by="user",
    wants=wants,
    step=step,
    settings=BaselineSettings,
    sees_signin=True,
    scenarios=(
        Scenario(
            "8 days at home, then Amsterdam", 1, (*history(), (_LATER, _ABROAD)), severity="medium"
        ),
        Scenario(
            "a stay abroad alerts once",
            1,
            (*history(), (_LATER, _ABROAD), (_LATER + 90, _ABROAD), (_LATER + DAY, _ABROAD)),
        ),
        Scenario(
            "too short a history: learning", 0, (*history(days=3, per_day=5), (3 * DAY, _ABROAD))
        ),
        Scenario("too few sign-ins: learning", 0, (*history(per_day=1), (_LATER, _ABROAD))),
        Scenario(
            "non-interactive sign-ins count toward history and baseline",
            0,
            (
                *history(),
                (_LATER - 60, {**_ABROAD, "category": "NonInteractiveUserSignInLogs"}),
                (_LATER, _ABROAD),
            ),
        ),
        Scenario(
            "a failed sign-in abroad neither alerts nor enters the baseline",
            1,
            (
                *history(),
                (_LATER - 60, {**_ABROAD, "status": {"errorCode": 50126}}),
                (_LATER, _ABROAD),
            ),
        ),
        Scenario(
            "unknown country is never new",
            0,
            (*history(), (_LATER, {"location": {"countryOrRegion": ""}})),
        ),
        Scenario(
            "a country last seen beyond the baseline is new again",
            1,
            (
                (0, _ABROAD),
                *((minute + DAY * 40, patch) for minute, patch in history(days=10)),
                (DAY * 51, _ABROAD),
            ),
        ),
    ),
)
