"""outdated-outlook-mobile: an Outlook for iOS/Android build older than the policy minimum.

Old builds are known not to enforce device PIN policies. The build is the token after
``Outlook-iOS/`` or ``Outlook-Android/`` in the user agent; the bare ``2.0`` of old protocol
strings and spoofers, or no token at all, is "version unknown" and never alerts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.clientapp import version_tuple
from pipeline.rules.base import Case, Finding, Rule, RuleSettings

if TYPE_CHECKING:
    from pipeline.enrich import Enriched
    from pipeline.policy import Policy


def check(e: Enriched, policy: Policy, settings: RuleSettings) -> Finding | None:
    client = e.client
    if client.family != "outlook-mobile" or not client.version or not e.signin.succeeded:
        return None
    if client.platform not in ("ios", "android"):
        return None
    minimum = getattr(policy.outlook_minimum, client.platform)
    if version_tuple(client.version) >= version_tuple(minimum):
        return None
    return Finding(
        severity="low",
        summary=f"{client.name} {client.version} is older than the minimum {minimum}",
        evidence={
            "version": client.version,
            "minimum": minimum,
            "user_agent": e.signin.user_agent,
            "device_os": e.signin.device.os,
        },
    )


def _outlook(user_agent: str, os_name: str = "Ios 17.6.1") -> dict[str, object]:
    return {
        "appId": "27922004-5251-4030-b22d-91ecd9a37ea4",
        "appDisplayName": "Microsoft Outlook",
        "clientAppUsed": "Mobile Apps and Desktop clients",
        "userAgent": user_agent,
        "resourceId": "00000002-0000-0ff1-ce00-000000000000",
        "deviceDetail": {"operatingSystem": os_name},
    }


RULE = Rule(
    id="outdated-outlook-mobile",
    title="Outdated Outlook Mobile build",
    severity="low",
    mitre=("T1078.004",),
    description=(
        "A successful sign-in by Outlook for iOS or Android (by its app id) whose build, read "
        "from the user agent, is older than the per-platform minimum in the policy."
    ),
    check=check,
    cases=(
        Case(
            "Outlook for iOS 4.2310.1",
            True,
            _outlook("Outlook-iOS/4.2310.1 (iPhone12,1; iOS 16.4)"),
        ),
        Case(
            "Outlook for Android 4.2305.0",
            True,
            _outlook("Outlook-Android/4.2305.0 (SM-G991B; Android 13)", "Android 13"),
        ),
        Case(
            "current Outlook for iOS",
            False,
            _outlook("Outlook-iOS/4.2450.2 (iPhone15,3; iOS 17.6.1)"),
        ),
        Case(
            "exactly the minimum", False, _outlook("Outlook-iOS/4.2400.0 (iPhone15,3; iOS 17.6.1)")
        ),
        Case("bare 2.0 is version unknown", False, _outlook("Outlook-Android/2.0", "Android 14")),
        Case(
            "no Outlook token in the user agent",
            False,
            _outlook("Mozilla/5.0 (compatible; MSAL 1.0) PKeyAuth/1.0"),
        ),
        Case(
            "spoofed Outlook user agent without the app id",
            False,
            {**_outlook("Outlook-iOS/4.2001.0 (iPhone12,1; iOS 16.4)"), "appId": ""},
        ),
        Case(
            "failed sign-in of an old build",
            False,
            {
                **_outlook("Outlook-iOS/4.2310.1 (iPhone12,1; iOS 16.4)"),
                "status": {"errorCode": 50126},
            },
        ),
        Case(
            "policy minimum raised for Android",
            True,
            _outlook("Outlook-Android/4.2446.1 (Pixel 8; Android 14)", "Android 14"),
            policy={"outlook_minimum": {"android": "4.2500"}},
        ),
    ),
)
