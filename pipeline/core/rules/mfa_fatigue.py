"""mfa-fatigue: one user denying or ignoring MFA prompts again and again.

The password is already known (the prompt only comes after it); the attacker pushes until
the user gives in. A success after the burst raises the severity: the user approved one.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

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

_COUNTED = Outcome.MFA_DENIED.value


class MfaFatigueSettings(BurstSettings):
    threshold: int = Field(5, ge=2)


def wants(obs: Observation) -> bool:
    return bool(obs.user) and obs.outcome in (_COUNTED, Outcome.SUCCESS.value)


def step(
    state: Any, obs: Observation, settings: MfaFatigueSettings, newest: float
) -> tuple[Any, Hit | None]:
    def describe(prompts: int, succeeded: bool) -> tuple[Severity, str]:
        if succeeded:
            return "high", f"{prompts} MFA prompts denied or unanswered, then one approved"
        return "medium", (
            f"{prompts} MFA prompts denied or unanswered in {settings.window_minutes:g} minutes"
        )

    return burst_then_success(state, obs, settings, newest, _COUNTED, describe)


def _denials(n: int, every: float) -> tuple[tuple[float, dict[str, Any]], ...]:
    return tuple((i * every, {"status": {"errorCode": 500121}}) for i in range(n))


_DENIED_STEP = {
    "status": {"errorCode": 50074},
    "authenticationDetails": [
        {
            "authenticationMethod": "Mobile app notification",
            "succeeded": False,
            "authenticationStepResultDetail": "MFA denied; user declined the authentication",
        }
    ],
}

RULE = StatefulRule(
    id="mfa-fatigue",
    title="MFA fatigue (push bombing)",
    severity="medium",
    mitre=("T1621",),
    description=(
        "One user denies or ignores MFA prompts (error 500121, or an authentication step "
        "whose result starts with 'MFA denied') at least `threshold` times (default 5) within "
        "`window_minutes` (default 10). High when a success follows: the user gave in."
    ),
    next_steps=(
        "Call the user: did they approve a prompt they did not start?",
        "If a prompt was approved (severity high): revoke the user's sessions, reset the password "
        "and review registered MFA methods and devices.",
        "Turn on number matching and additional context for the Authenticator app; block the "
        "source address if it is not shared.",
    ),
    keyed_by="user",
    wants=wants,
    step=step,
    settings=MfaFatigueSettings,
    scenarios=(
        Scenario("5 denials in 8 minutes", 1, _denials(5, 2.0), severity="medium"),
        Scenario("4 denials: one short", 0, _denials(4, 2.0)),
        Scenario("5 denials spread over an hour", 0, _denials(5, 15.0)),
        Scenario(
            "denials then an approval",
            1,
            (*_denials(6, 1.5), (10.0, {"status": {"errorCode": 0}})),
            severity="high",
        ),
        Scenario(
            "denial recorded only in the authentication steps",
            1,
            tuple((i * 1.0, _DENIED_STEP) for i in range(5)),
        ),
        Scenario(
            "MFA interrupt followed by success is normal",
            0,
            ((0.0, {"status": {"errorCode": 50074}}), (0.5, {"status": {"errorCode": 0}})),
        ),
    ),
)
