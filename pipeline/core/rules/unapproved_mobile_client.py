"""unapproved-mobile-client: a phone reached mailbox data with a client the policy does not allow.

The case for Conditional Access "require approved client app": only Outlook Mobile (by
default) may sync mail to iOS and Android. A native mail app, an ActiveSync client or a
spoofed Outlook user agent that got in means the policy has a gap. Microsoft's own mobile
apps (Teams, OneDrive, Edge) fetch mail-resource tokens for calendars and presence and are
approved client apps themselves, so they are out of scope here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.core.rules.base import Case, Finding, Rule, RuleSettings

if TYPE_CHECKING:
    from pipeline.core.enrich import Enriched
    from pipeline.core.policy import Policy

CA_BLOCKED = 53003


class UnapprovedMobileClientSettings(RuleSettings):
    report_blocked_attempts: bool = False
    """Also raise an informational alert when Conditional Access blocked the attempt."""


def check(e: Enriched, policy: Policy, settings: UnapprovedMobileClientSettings) -> Finding | None:
    s, client = e.signin, e.client
    if not client.mobile or client.approved or client.family == "office-mobile" or s.is_workload:
        return None
    if s.resource_id not in policy.mail_resources and client.family != "native-mail":
        return None
    evidence = {
        "app_id": s.app_id,
        "app_name": s.app_name,
        "client_app_used": s.client_app_used,
        "user_agent": s.user_agent,
        "device_os": s.device.os,
        "resource": s.resource_name or s.resource_id,
        "conditional_access_status": s.ca_status,
        "legacy_auth": client.legacy_auth,
    }
    if s.succeeded:
        return Finding(
            severity="high" if client.legacy_auth else "medium",
            summary=f"{client.name} on {client.platform} signed in to "
            f"{s.resource_name or 'a mail resource'}; not an approved client",
            evidence=evidence,
        )
    if settings.report_blocked_attempts and (
        s.error_code == CA_BLOCKED or s.ca_status == "failure"
    ):
        return Finding(
            severity="informational",
            title="Unapproved mobile mail client blocked by Conditional Access",
            summary=f"{client.name} on {client.platform} was blocked by Conditional Access",
            evidence={**evidence, "outcome": "blocked", "error_code": s.error_code},
        )
    return None


_EXO = {
    "resourceId": "00000002-0000-0ff1-ce00-000000000000",
    "resourceDisplayName": "Office 365 Exchange Online",
}
_IOS_MAIL = {
    **_EXO,
    "appId": "f8d98a96-0999-43f5-8af3-69971c7bb423",
    "appDisplayName": "iOS Accounts",
    "clientAppUsed": "Mobile Apps and Desktop clients",
    "userAgent": "iOS/17.5.1 (21F90) accountsd/1.0",
    "deviceDetail": {"operatingSystem": "Ios 17.5.1"},
}
_GMAIL_EAS = {
    **_EXO,
    "appId": "",
    "appDisplayName": "",
    "clientAppUsed": "Exchange ActiveSync",
    "userAgent": "Android-Mail/2024.05.26.637963220.Release",
    "deviceDetail": {"operatingSystem": "Android"},
}
_OUTLOOK_IOS = {
    **_EXO,
    "appId": "27922004-5251-4030-b22d-91ecd9a37ea4",
    "appDisplayName": "Microsoft Outlook",
    "clientAppUsed": "Mobile Apps and Desktop clients",
    "userAgent": "Outlook-iOS/4.2450.2 (iPhone15,3; iOS 17.6.1)",
    "deviceDetail": {"operatingSystem": "Ios 17.6.1"},
}
_BLOCKED = {
    "status": {
        "errorCode": 53003,
        "failureReason": "Access has been blocked by Conditional Access policies.",
    },
    "conditionalAccessStatus": "failure",
}

RULE = Rule(
    id="unapproved-mobile-client",
    title="Unapproved mobile mail client",
    severity="medium",
    mitre=("T1078.004", "T1114.002"),
    description=(
        "A successful sign-in from iOS or Android to Exchange Online (or another mail resource "
        "in the policy) by a client that is not on the approved list. High when the client "
        "used a legacy protocol. Attempts that Conditional Access blocked are informational "
        "alerts only when the policy asks for them."
    ),
    next_steps=(
        "Identify the app and device from the client and user agent; ask the user which mail app "
        "they set up.",
        "Have the user move to an approved client (Outlook Mobile) and remove the account from the"
        " unapproved app; revoke the user's sessions so its tokens stop working.",
        "Enforce 'Require approved client app' or an app protection policy in Conditional Access "
        "for mobile mail.",
    ),
    check=check,
    settings=UnapprovedMobileClientSettings,
    cases=(
        Case("native iOS Mail (iOS Accounts) to Exchange Online", True, _IOS_MAIL),
        Case("Gmail over Exchange ActiveSync", True, _GMAIL_EAS),
        Case(
            "Samsung Email over ActiveSync",
            True,
            {**_GMAIL_EAS, "userAgent": "SAMSUNG-SM-S918B/101.1034"},
        ),
        Case(
            "spoofed Outlook user agent without the Outlook app id",
            True,
            {**_GMAIL_EAS, "clientAppUsed": "Other clients", "userAgent": "Outlook-Android/2.0"},
        ),
        Case("Outlook for iOS is approved", False, _OUTLOOK_IOS),
        Case("native mail blocked by Conditional Access", False, {**_IOS_MAIL, **_BLOCKED}),
        Case(
            "blocked attempt reported when the policy asks",
            True,
            {**_IOS_MAIL, **_BLOCKED},
            policy={"rules": {"unapproved-mobile-client": {"report_blocked_attempts": True}}},
        ),
        Case(
            "wrong password is not a blocked attempt",
            False,
            {**_IOS_MAIL, "status": {"errorCode": 50126}},
            policy={"rules": {"unapproved-mobile-client": {"report_blocked_attempts": True}}},
        ),
        Case(
            "Teams on iOS reaching Exchange for the calendar",
            False,
            {
                **_EXO,
                "appId": "1fec8e78-bce4-4aaf-ab1b-5451cc387264",
                "appDisplayName": "Microsoft Teams",
                "userAgent": "TeamsMobile-iOS",
                "deviceDetail": {"operatingSystem": "Ios 17.6.1"},
            },
        ),
        Case(
            "iOS browser to SharePoint is not mail",
            False,
            {
                "resourceId": "00000003-0000-0ff1-ce00-000000000000",
                "resourceDisplayName": "Office 365 SharePoint Online",
                "clientAppUsed": "Browser",
                "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X)",
                "deviceDetail": {"operatingSystem": "Ios 17.5", "browser": "Mobile Safari"},
            },
        ),
        Case(
            "native iOS Mail approved by a custom policy",
            False,
            _IOS_MAIL,
            policy={"approved_clients": [{"app_id": "f8d98a96-0999-43f5-8af3-69971c7bb423"}]},
        ),
        Case(
            "Windows desktop Outlook to Exchange is not mobile",
            False,
            {
                **_EXO,
                "appId": "d3590ed6-52b3-4102-aeff-aad2292ab01c",
                "clientAppUsed": "Mobile Apps and Desktop clients",
                "deviceDetail": {"operatingSystem": "Windows 10"},
            },
        ),
    ),
)
