"""legacy-auth: a successful sign-in over a basic-authentication protocol.

Legacy protocols (IMAP, POP, SMTP AUTH, ActiveSync with basic auth, ...) cannot do MFA, so a
password alone got in; they are the usual door for password spray and credential stuffing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.core.risk import rank
from pipeline.core.rules.base import Case, Finding, Rule, RuleSettings

if TYPE_CHECKING:
    from pipeline.core.enrich import Enriched
    from pipeline.core.policy import Policy


def check(e: Enriched, policy: Policy, settings: RuleSettings) -> Finding | None:
    s = e.signin
    if not e.client.legacy_auth or not s.succeeded or s.is_workload:
        return None
    at_risk = rank(e.risk.level) >= rank("medium")
    return Finding(
        severity="high" if at_risk else "medium",
        summary=f"signed in with {s.client_app_used} (no MFA possible) to "
        f"{s.resource_name or s.app_name or 'a resource'}",
        evidence={
            "client_app_used": s.client_app_used,
            "user_agent": s.user_agent,
            "app_name": s.app_name,
            "resource": s.resource_name or s.resource_id,
            "authentication_requirement": s.auth_requirement,
            "conditional_access_status": s.ca_status,
        },
    )


RULE = Rule(
    id="legacy-auth",
    title="Legacy authentication sign-in",
    severity="medium",
    mitre=("T1078.004", "T1110"),
    description=(
        "A successful sign-in over a legacy-authentication protocol (Exchange ActiveSync, "
        "IMAP4, POP3, Authenticated SMTP, EWS, MAPI over HTTP, Outlook Anywhere, Offline "
        "Address Book, AutoDiscover, Other clients). High when the sign-in is also risky."
    ),
    next_steps=(
        "Find the device or service that uses the protocol (user agent, address) and its owner.",
        "Move it to modern authentication; a shared mailbox or scanner should use OAuth SMTP or a "
        "connector.",
        "Block legacy authentication in Conditional Access, and reset the password if the address "
        "is not the owner's: legacy protocols are a spray target.",
    ),
    check=check,
    cases=(
        Case("IMAP4 success", True, {"clientAppUsed": "IMAP4", "userAgent": ""}),
        Case("Authenticated SMTP success", True, {"clientAppUsed": "Authenticated SMTP"}),
        Case(
            "Other clients (BAV2ROPC) success",
            True,
            {"clientAppUsed": "Other clients", "userAgent": "BAV2ROPC"},
        ),
        Case(
            "IMAP4 with a wrong password",
            False,
            {"clientAppUsed": "IMAP4", "status": {"errorCode": 50126}},
        ),
        Case(
            "IMAP4 blocked by Conditional Access",
            False,
            {
                "clientAppUsed": "IMAP4",
                "status": {"errorCode": 53003},
                "conditionalAccessStatus": "failure",
            },
        ),
        Case("modern desktop client", False, {"clientAppUsed": "Mobile Apps and Desktop clients"}),
        Case("browser", False, {"clientAppUsed": "Browser"}),
        Case(
            "resultType Success with no status object",
            True,
            {"clientAppUsed": "POP3", "status": None},
            envelope={"resultType": "Success"},
        ),
    ),
)
