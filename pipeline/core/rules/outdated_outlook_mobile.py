"""outdated-outlook-mobile: an Outlook for iOS/Android build older than the policy minimum.

Old builds are known not to enforce device PIN policies (Outlook for iOS 1.0.3 ignored them;
1.0.4 fixed it). The build is read from the user agent by ``clientapp.outlook_build``: the
token after ``Outlook-iOS/`` or ``Outlook-Android/`` when it is dotted numbers (1.0.3, 2.1.4,
3.49.0, 4.2450, 4.2450.2), else the build alone in the parentheses that follow
(``Outlook-iOS/709.2189947.prod.iphone (3.24.0)``) or after the app's bundle id. It is
compared numerically with the policy minimum, so 3.49.0 is older than 4.2400 and 2.1.4 older
than 2.1.10. The bare protocol strings ``Outlook-iOS/2.0`` and ``Outlook-Android/2.0`` (also
sent by spoofers), Exchange Online's ``Outlook-iOS-Android/1.0``, or no Outlook token at all
are "version unknown" and never alert.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.core.clientapp import version_tuple
from pipeline.core.rules.base import Case, Finding, Rule, RuleSettings

if TYPE_CHECKING:
    from pipeline.core.enrich import Enriched
    from pipeline.core.policy import Policy


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
    next_steps=(
        "Ask the user to update Outlook Mobile from the App Store or Google Play.",
        "Enforce a minimum app version with an Intune app protection policy (conditional launch) "
        "so old builds are blocked.",
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
        Case(
            "Outlook for iOS 1.0.3, which ignored device PIN policies",
            True,
            _outlook("Outlook-iOS/1.0.3 (iPhone7,2; iOS 8.4)", "Ios 8.4"),
        ),
        Case(
            "Outlook for Android 2.1.4",
            True,
            _outlook("Outlook-Android/2.1.4 (SM-G920F; Android 5.1.1)", "Android 5.1.1"),
        ),
        Case("Outlook for iOS 3.49.0", True, _outlook("Outlook-iOS/3.49.0", "Ios 13.3")),
        Case(
            "iOS build in parentheses after the internal build",
            True,
            _outlook("Outlook-iOS/709.2189947.prod.iphone (3.24.0)", "Ios 13.1.3"),
        ),
        Case(
            "current iOS build in parentheses after the internal build",
            False,
            _outlook("Outlook-iOS/749.4.prod.iphone (4.2534.0)"),
        ),
        Case(
            "build after the bundle id, beside the 2.0 protocol string",
            True,
            _outlook("Outlook-Android/2.0 com.microsoft.office.outlook/4.2305.0", "Android 13"),
        ),
        Case(
            "two-part build is a build",
            True,
            _outlook("Outlook-Android/4.2305 (SM-G991B; Android 13)", "Android 13"),
        ),
        Case("bare 2.0 is version unknown", False, _outlook("Outlook-Android/2.0", "Android 14")),
        Case("bare iOS 2.0 is version unknown", False, _outlook("Outlook-iOS/2.0")),
        Case(
            "Exchange-side Outlook-iOS-Android/1.0 is version unknown",
            False,
            _outlook("Outlook-iOS-Android/1.0"),
        ),
        Case(
            "another product's version beside 2.0 is not Outlook's build",
            False,
            _outlook("Outlook-Android/2.0 okhttp/3.12.0", "Android 14"),
        ),
        Case(
            "a version inside another product's name is not Outlook's build",
            False,
            _outlook("NotOutlook-iOS/1.0.3"),
        ),
        Case(
            "builds compare numerically: 2.1.4 is older than 2.1.10",
            True,
            _outlook("Outlook-Android/2.1.4", "Android 5.1.1"),
            policy={"outlook_minimum": {"android": "2.1.10"}},
        ),
        Case(
            "builds compare numerically: 3.49.0 is newer than 3.5",
            False,
            _outlook("Outlook-iOS/3.49.0", "Ios 13.3"),
            policy={"outlook_minimum": {"ios": "3.5"}},
        ),
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
