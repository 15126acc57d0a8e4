"""password-spray: one source address failing primary authentication for many users.

Keyed by IP, so the worker re-keys observations through the by-IP topic. Sentinel's
analytic uses a lower bar (5 users in 20 minutes) plus a filter on addresses that mostly
succeed; here the default bar is 10 distinct users, which needs no success history per IP
and keeps the shared egress of a large office (many users mistyping) below the threshold.
A success from the spraying address is not looked for: it would mean re-keying every
success by IP, doubling the worker's traffic. brute-force and risky-signin cover the
account side.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pipeline.core.enrich import Observation
from pipeline.core.outcomes import Outcome
from pipeline.core.rules.windows import (
    Hit,
    Scenario,
    StatefulRule,
    StatefulSettings,
    distinct_users,
)

_FAILED = Outcome.PRIMARY_FAILURE.value
_MAX_ENTRIES = 1000
"""Per address: a spray past this many failures in the window is already an incident."""


class PasswordSpraySettings(StatefulSettings):
    window_minutes: float = Field(20, gt=0)
    min_users: int = Field(10, ge=2)
    """Distinct users failing from one address within the window."""


def wants(obs: Observation) -> bool:
    # Failures only: re-keying every success by IP would double the worker's traffic.
    return bool(obs.ip) and obs.outcome == _FAILED


def step(
    state: Any, obs: Observation, settings: PasswordSpraySettings, newest: float
) -> tuple[Any, Hit | None]:
    state, found = distinct_users(
        state,
        obs,
        settings.window_minutes,
        settings.lateness_minutes,
        newest,
        settings.min_users,
        _MAX_ENTRIES,
    )
    return state, None if found is None else _hit(found, obs, settings, "medium")


def _hit(
    found: list[list[Any]], obs: Observation, settings: PasswordSpraySettings, severity: Any
) -> Hit:
    users = sorted({e[3] or e[2] for e in found})
    evidence: dict[str, object] = {
        "distinct_users": len(users),
        "failures": len(found),
        "users": users[: settings.max_signin_ids],
        "min_users": settings.min_users,
        "window_minutes": settings.window_minutes,
    }
    summary = (
        f"{len(users)} users failed to sign in from {obs.ip} "
        f"within {settings.window_minutes:g} minutes"
    )
    ids = tuple(e[1] for e in found)
    return Hit(severity, summary, evidence, ids, ids[0], obs)


def _spray(users: int, every: float) -> tuple[tuple[float, dict[str, Any]], ...]:
    return tuple(
        (
            i * every,
            {
                "userId": f"00000000-0000-4000-8000-{i:012d}",
                "userPrincipalName": f"user{i}@contoso.com",
                "ipAddress": "203.0.113.66",
                "status": {"errorCode": 50126},
            },
        )
        for i in range(users)
    )


RULE = StatefulRule(
    id="password-spray",
    title="Password spray from one address",
    severity="medium",
    mitre=("T1110.003",),
    description=(
        "One source IP fails primary authentication for at least `min_users` distinct users "
        "(default 10) within `window_minutes` (default 20). MFA prompts and Conditional "
        "Access blocks do not count (the password was right)."
    ),
    next_steps=(
        "List the targeted accounts (evidence.users) and look for a success from the same address "
        "or for risky sign-ins of those users.",
        "Block the address with a Conditional Access named location (or at the edge) if it is not "
        "a shared egress.",
        "Reset the passwords of any targeted account that then signed in, and check that the "
        "targeted users are covered by MFA.",
    ),
    keyed_by="ip",
    wants=wants,
    step=step,
    settings=PasswordSpraySettings,
    scenarios=(
        Scenario("10 users in 13 minutes", 1, _spray(10, 1.4), severity="medium"),
        Scenario("9 users: one short", 0, _spray(9, 1.0)),
        Scenario("10 users over an hour", 0, _spray(10, 6.0)),
        Scenario(
            "one user failing 12 times is not a spray",
            0,
            tuple(
                (i * 0.5, {"ipAddress": "203.0.113.66", "status": {"errorCode": 50126}})
                for i in range(12)
            ),
        ),
        Scenario(
            "interrupts are not failures",
            0,
            tuple((t, {**patch, "status": {"errorCode": 50140}}) for t, patch in _spray(12, 1.0)),
        ),
    ),
)
