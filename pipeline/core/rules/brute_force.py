"""brute-force: one user failing primary authentication many times in a short window.

Counts wrong passwords, lockouts and unknown-user errors (the outcome table in
``pipeline.core.outcomes``); MFA prompts and Conditional Access blocks are not counted, since
those mean the password was right. A success after the burst raises the severity: the
password was found.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.enrich import Observation
from pipeline.core.outcomes import Outcome
from pipeline.core.rules.base import Severity
from pipeline.core.rules.windows import (
    BurstSettings,
    Hit,
    Scenario,
    StatefulRule,
    burst_then_success,
)

_COUNTED = Outcome.PRIMARY_FAILURE.value
_AFTER = {Outcome.SUCCESS.value, Outcome.PASSWORD_PROVEN.value, Outcome.DISABLED.value}


def wants(obs: Observation) -> bool:
    return bool(obs.user) and (obs.outcome == _COUNTED or obs.outcome in _AFTER)


def step(
    state: Any, obs: Observation, settings: BurstSettings, newest: float
) -> tuple[Any, Hit | None]:
    def describe(attempts: int, succeeded: bool) -> tuple[Severity, str]:
        if succeeded:
            return "high", f"{attempts} failed passwords, then a correct one from {obs.ip}"
        return "medium", f"{attempts} failed passwords in {settings.window_minutes:g} minutes"

    return burst_then_success(state, obs, settings, newest, _COUNTED, describe)


def _failures(n: int, every: float, start: float = 0) -> tuple[tuple[float, dict[str, Any]], ...]:
    return tuple((start + i * every, {"status": {"errorCode": 50126}}) for i in range(n))


_SUCCESS = {"status": {"errorCode": 0}}

RULE = StatefulRule(
    id="brute-force",
    title="Brute force against one account",
    severity="medium",
    mitre=("T1110.001",),
    description=(
        "One user fails primary authentication at least `threshold` times (default 10) "
        "within `window_minutes` (default 10). High when a success (or an MFA prompt, "
        "which proves the password) follows the burst."
    ),
    next_steps=(
        "Check whether a success followed (severity high): if so, the password is known.",
        "If it succeeded: reset the password and revoke the user's sessions; review what the "
        "account did since.",
        "Block the source address with a Conditional Access named location and confirm smart "
        "lockout is on.",
    ),
    keyed_by="user",
    wants=wants,
    step=step,
    settings=BurstSettings,
    scenarios=(
        Scenario("10 failures in 9 minutes", 1, _failures(10, 1.0), severity="medium"),
        Scenario("9 failures: one short", 0, _failures(9, 1.0)),
        Scenario("10 failures spread over 30 minutes", 0, _failures(10, 3.3)),
        Scenario(
            "burst then the password is found",
            1,
            (*_failures(12, 0.5), (7.0, _SUCCESS)),
            severity="high",
        ),
        Scenario(
            "burst then an MFA prompt (password proven)",
            1,
            (*_failures(10, 0.5), (6.0, {"status": {"errorCode": 50074}})),
            severity="high",
        ),
        Scenario(
            "MFA denials are not password failures",
            0,
            tuple((i * 0.5, {"status": {"errorCode": 500121}}) for i in range(12)),
        ),
        Scenario(
            "a continuing burst is one incident",
            1,
            _failures(40, 0.25),
        ),
        Scenario(
            "out of order within the lateness still counts",
            1,
            tuple(reversed(_failures(10, 0.3))),
        ),
        Scenario(
            "threshold from the policy",
            1,
            _failures(3, 1.0),
            policy={"rules": {"brute-force": {"threshold": 3}}},
        ),
    ),
)
