"""disabled-account-attempts: one source address trying several disabled accounts.

Error 50057 (account disabled) comes after the password check, so an address that meets it
for several accounts is either testing passwords leaked for former staff or enumerating
which accounts exist; either way the next step is the accounts that are still enabled.
Keyed by IP like the spray, so the worker re-keys these sign-ins through the by-IP topic.
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

_DISABLED = Outcome.DISABLED.value
_MAX_ENTRIES = 200
"""Attempts kept per address: far past the threshold, so an incident is already open."""


class DisabledAccountAttemptsSettings(StatefulSettings):
    window_minutes: float = Field(60, gt=0)
    min_accounts: int = Field(3, ge=2)
    """Distinct disabled accounts tried from one address within the window."""


def wants(obs: Observation) -> bool:
    return bool(obs.ip) and obs.outcome == _DISABLED


def step(
    state: Any, obs: Observation, settings: DisabledAccountAttemptsSettings, newest: float
) -> tuple[Any, Hit | None]:
    state, found = distinct_users(
        state,
        obs,
        settings.window_minutes,
        settings.lateness_minutes,
        newest,
        settings.min_accounts,
        _MAX_ENTRIES,
    )
    if found is None:
        return state, None
    accounts = sorted({e[3] or e[2] for e in found})
    summary = (
        f"{len(accounts)} disabled accounts tried from {obs.ip} "
        f"within {settings.window_minutes:g} minutes"
    )
    evidence: dict[str, object] = {
        "distinct_users": len(accounts),
        "attempts": len(found),
        "users": accounts[: settings.max_signin_ids],
        "min_accounts": settings.min_accounts,
        "window_minutes": settings.window_minutes,
    }
    ids = tuple(e[1] for e in found)
    return state, Hit("medium", summary, evidence, ids, ids[0], obs)


def _tries(
    accounts: int, every: float, code: int = 50057
) -> tuple[tuple[float, dict[str, Any]], ...]:
    return tuple(
        (
            i * every,
            {
                "userId": f"00000000-0000-4000-8000-{i:012d}",
                "userPrincipalName": f"former{i}@contoso.com",
                "ipAddress": "203.0.113.77",
                "status": {"errorCode": code},
            },
        )
        for i in range(accounts)
    )


RULE = StatefulRule(
    id="disabled-account-attempts",
    title="Disabled accounts tried from one address",
    severity="medium",
    mitre=("T1110", "T1078"),
    description=(
        "One source IP signs in to at least `min_accounts` distinct disabled accounts "
        "(error 50057; default 3) within `window_minutes` (default 60)."
    ),
    next_steps=(
        "List the accounts tried (evidence.users): whose are they, and were their passwords "
        "leaked or reused elsewhere?",
        "Block the address with a Conditional Access named location and look for its sign-ins "
        "to enabled accounts (password-spray, brute-force alerts).",
        "Delete accounts that stay disabled, and make sure leavers' passwords were reset.",
    ),
    keyed_by="ip",
    wants=wants,
    step=step,
    settings=DisabledAccountAttemptsSettings,
    scenarios=(
        Scenario("3 disabled accounts in 20 minutes", 1, _tries(3, 10.0), severity="medium"),
        Scenario("2 disabled accounts: one short", 0, _tries(2, 10.0)),
        Scenario("3 disabled accounts over 3 hours", 0, _tries(3, 90.0)),
        Scenario(
            "one disabled account tried 5 times",
            0,
            tuple(
                (i * 2.0, {"ipAddress": "203.0.113.77", "status": {"errorCode": 50057}})
                for i in range(5)
            ),
        ),
        Scenario("wrong passwords are the spray's, not this", 0, _tries(5, 2.0, code=50126)),
    ),
)
