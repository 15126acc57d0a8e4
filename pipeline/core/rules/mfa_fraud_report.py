"""mfa-fraud-report: the user answered an MFA prompt with "report fraud".

The user says someone else is signing in with their password: the password is known to an
attacker. Entra fails the sign-in with 500121 and says why in ``status.additionalDetails``
or in the MFA step's result detail ("MFA denied; user reported fraud", "MFA denied; Phone
App Reported Fraud"). A plain deny or an unanswered prompt is not a report (bursts of those
are ``mfa-fatigue``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.core.rules.base import Case, Finding, IncidentSettings, Rule

if TYPE_CHECKING:
    from pipeline.core.enrich import Enriched
    from pipeline.core.policy import Policy

MFA_DENIED = 500121


def check(e: Enriched, policy: Policy, settings: IncidentSettings) -> Finding | None:
    s = e.signin
    if s.error_code != MFA_DENIED:
        return None
    details = [s.additional_details, *(step.result_detail for step in s.auth_steps)]
    reported = next((d for d in details if "fraud" in d.lower()), None)
    if reported is None:
        return None
    return Finding(
        severity="high",
        summary=f"the user reported the MFA prompt as fraud ({reported})",
        evidence={
            "error_code": s.error_code,
            "detail": reported,
            "app_name": s.app_name,
            "resource": s.resource_name or s.resource_id,
            "user_agent": s.user_agent,
        },
    )


def _denied(detail: str) -> dict[str, object]:
    return {"status": {"errorCode": MFA_DENIED, "additionalDetails": detail}}


RULE = Rule(
    id="mfa-fraud-report",
    title="MFA prompt reported as fraud",
    severity="high",
    mitre=("T1621",),
    description=(
        "A sign-in failed with 500121 and the user reported the MFA prompt as fraud (the word "
        "'fraud' in status.additionalDetails or an authentication step's result detail). A "
        "plain deny or a timeout does not alert. One incident per user while it continues."
    ),
    next_steps=(
        "Confirm with the user that they did not start the sign-in; note the address and app.",
        "Reset the user's password and revoke their sessions: the prompt means the password "
        "worked for someone else.",
        "Block the source address with a Conditional Access named location if it is not "
        "shared, and look for other users' sign-ins from it.",
        "If the tenant blocks users who report fraud, unblock the user once the password is "
        "changed.",
    ),
    check=check,
    settings=IncidentSettings,
    cases=(
        Case("reported in the status details", True, _denied("MFA denied; user reported fraud")),
        Case(
            "reported in the authentication step",
            True,
            {
                "status": {"errorCode": MFA_DENIED},
                "authenticationDetails": [
                    {
                        "authenticationMethod": "Mobile app notification",
                        "succeeded": False,
                        "authenticationStepResultDetail": "MFA denied; Phone App Reported Fraud",
                    }
                ],
            },
        ),
        Case("ordinary deny", False, _denied("MFA denied; user declined the authentication")),
        Case(
            "prompt not answered",
            False,
            _denied("MFA denied; user did not respond to mobile app notification"),
        ),
        Case(
            "fraud wording on a success",
            False,
            {"status": {"errorCode": 0, "additionalDetails": "fraud"}},
        ),
    ),
)
