"""ropc-signin: a member user signed in with the resource-owner password credentials grant.

ROPC sends the password itself to the token endpoint, so no MFA prompt and no Conditional
Access grant that needs interaction can happen; scripts and legacy mail clients use it
(Exchange Online's basic-auth proxy shows as the user agent ``BAV2ROPC``), and so do
credential-stuffing tools checking a password. Only successes alert: failures count toward
brute force and spray. ``legacy-auth`` may fire on the same sign-in (a protocol vs a grant).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.core.rules.base import Case, Finding, IncidentSettings, Rule

if TYPE_CHECKING:
    from pipeline.core.enrich import Enriched
    from pipeline.core.policy import Policy


def check(e: Enriched, policy: Policy, settings: IncidentSettings) -> Finding | None:
    s = e.signin
    if not s.succeeded or s.is_workload or s.user_type.lower() == "guest":
        return None
    by_protocol = s.auth_protocol.lower() == "ropc"
    if not by_protocol and "bav2ropc" not in s.user_agent.lower():
        return None
    single = s.auth_requirement == "singleFactorAuthentication"
    return Finding(
        severity="high" if single else "medium",
        summary=f"password-only (ROPC) sign-in to {s.resource_name or s.app_name or 'a resource'}"
        + (" with a single factor" if single else ""),
        evidence={
            "authentication_protocol": s.auth_protocol,
            "user_agent": s.user_agent,
            "app_name": s.app_name,
            "app_id": s.app_id,
            "resource": s.resource_name or s.resource_id,
            "client_app_used": s.client_app_used,
            "authentication_requirement": s.auth_requirement,
        },
    )


_ROPC = {
    "authenticationProtocol": "ropc",
    "clientAppUsed": "Mobile Apps and Desktop clients",
    "userAgent": "python-requests/2.32.3",
    "userType": "Member",
}

RULE = Rule(
    id="ropc-signin",
    title="Password-only (ROPC) sign-in",
    severity="medium",
    mitre=("T1078.004",),
    description=(
        "A member user's successful sign-in with the resource-owner password credentials "
        "grant (authenticationProtocol ropc, or the user agent BAV2ROPC): the password alone "
        "got a token. High when it was single-factor. One incident per user while it "
        "continues."
    ),
    next_steps=(
        "Find the app (app id, user agent) and ask its owner whether it is a known script or "
        "device; a service that needs ROPC should use a workload identity instead.",
        "If unknown: reset the user's password and revoke their sessions; the password is "
        "known to whoever made this sign-in.",
        "Block the grant for users who do not need it: Conditional Access requiring MFA "
        "makes ROPC fail, and blocking legacy authentication closes BAV2ROPC.",
    ),
    check=check,
    settings=IncidentSettings,
    cases=(
        Case("ROPC by a script, MFA claimed", True, _ROPC),
        Case(
            "BAV2ROPC, single factor",
            True,
            {
                "authenticationProtocol": "none",
                "userAgent": "BAV2ROPC",
                "clientAppUsed": "Authenticated SMTP",
                "authenticationRequirement": "singleFactorAuthentication",
            },
        ),
        Case("protocol in another casing", True, {**_ROPC, "authenticationProtocol": "ROPC"}),
        Case("failed ROPC (wrong password)", False, {**_ROPC, "status": {"errorCode": 50126}}),
        Case("ROPC by a guest", False, {**_ROPC, "userType": "Guest"}),
        Case("ordinary browser sign-in", False, {"authenticationProtocol": "none"}),
        Case(
            "source range excepted by the policy",
            False,
            _ROPC,
            policy={"rules": {"ropc-signin": {"exceptions": {"ips": ["198.51.100.0/24"]}}}},
        ),
    ),
)
