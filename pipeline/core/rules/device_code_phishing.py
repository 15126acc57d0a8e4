"""device-code-phishing: a user signed in with the OAuth device-code flow, or refreshed a
token first obtained that way, for an app not on the rule's allow-list.

The device-code flow lets one device sign in for another: the attacker starts it, sends the
victim the code, and the victim's MFA completes the attacker's sign-in (Storm-2372, 2025).
Entra records it as ``authenticationProtocol: deviceCode`` on the sign-in, and as
``originalTransferMethod: deviceCodeFlow`` on every later refresh of the tokens it gave, so
a refresh alone opens an incident when the first sign-in was missed. The incident is per
user: the sign-in and the refreshes that follow are one alert, updated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, field_serializer, field_validator

from pipeline.core.clientapp import reaches_mail_or_graph
from pipeline.core.rules.base import Case, Finding, IncidentSettings, Rule, app_ids

if TYPE_CHECKING:
    from pipeline.core.enrich import Enriched
    from pipeline.core.policy import Policy

AZURE_CLI = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
AZURE_POWERSHELL = "1950a258-227b-4e31-a9cf-717495945fc2"
AUTH_BROKER = "29d9ed98-a469-4536-ade2-f981bc1d605e"
"""Microsoft Authentication Broker: a device code for it can register a device and so
mint a primary refresh token, the prize of the 2025 device-code campaigns."""


class DeviceCodePhishingSettings(IncidentSettings):
    allowed_apps: frozenset[str] = Field(default=frozenset({AZURE_CLI, AZURE_POWERSHELL}))
    """Apps whose device-code sign-ins are expected: admin tooling used on headless hosts
    (``az login --use-device-code``, ``Connect-AzAccount -UseDeviceAuthentication``). Graph
    PowerShell is left out on purpose: it reads mail and files through Graph, so a phished
    code for it is as damaging as one for Office; add it per tenant if admins use it."""

    @field_validator("allowed_apps")
    @classmethod
    def _app_ids(cls, value: frozenset[str]) -> frozenset[str]:
        return app_ids(value)

    @field_serializer("allowed_apps")
    def _sorted(self, value: frozenset[str]) -> list[str]:
        return sorted(value)


def check(e: Enriched, policy: Policy, settings: DeviceCodePhishingSettings) -> Finding | None:
    s = e.signin
    if not s.succeeded or s.is_workload or s.app_id in settings.allowed_apps:
        return None
    sign_in = s.auth_protocol.lower() == "devicecode"
    if not sign_in and s.original_transfer_method.lower() != "devicecodeflow":
        return None
    broker, sensitive = s.app_id == AUTH_BROKER, reaches_mail_or_graph(s)
    how = "signed in with a device code" if sign_in else "refreshed a device-code token"
    return Finding(
        severity="high" if broker or sensitive else "medium",
        summary=f"{how} for {s.app_name or s.app_id} to {s.resource_name or 'a resource'}",
        evidence={
            "authentication_protocol": s.auth_protocol,
            "original_transfer_method": s.original_transfer_method,
            "app_name": s.app_name,
            "app_id": s.app_id,
            "resource": s.resource_name or s.resource_id,
            "user_agent": s.user_agent,
            "session_id": s.session_id,
        },
    )


_DEVICE_CODE = {
    "authenticationProtocol": "deviceCode",
    "appId": "d3590ed6-52b3-4102-aeff-aad2292ab01c",
    "appDisplayName": "Microsoft Office",
    "resourceId": "00000003-0000-0ff1-ce00-000000000000",
    "resourceDisplayName": "Office 365 SharePoint Online",
}

RULE = Rule(
    id="device-code-phishing",
    title="Device-code sign-in (possible device-code phishing)",
    severity="medium",
    mitre=("T1528", "T1566"),
    description=(
        "A successful sign-in with the device-code flow (authenticationProtocol deviceCode), "
        "or a token refresh whose originalTransferMethod is deviceCodeFlow, by an app not in "
        "`allowed_apps` (default Azure CLI and Azure PowerShell). High for the Microsoft "
        "Authentication Broker or a token for Exchange Online or Microsoft Graph. One "
        "incident per user while it continues."
    ),
    next_steps=(
        "Ask the user whether they typed a code at microsoft.com/devicelogin; a code that "
        "arrived by mail, chat or a call is phishing.",
        "If not theirs: revoke the user's sessions (Revoke-MgUserSignInSession), which "
        "invalidates the refresh tokens the code gave, and reset the password if it was "
        "entered too.",
        "Check for devices the user registered since (Authentication Broker) and remove them, "
        "and for mailbox rules or app consents added since.",
        "Block the device-code flow in Conditional Access (authentication flows) for users "
        "who do not need it.",
    ),
    check=check,
    settings=DeviceCodePhishingSettings,
    cases=(
        Case("device code for Microsoft Office", True, _DEVICE_CODE),
        Case(
            "device code for the Authentication Broker to Graph",
            True,
            {
                **_DEVICE_CODE,
                "appId": AUTH_BROKER,
                "appDisplayName": "Microsoft Authentication Broker",
                "resourceId": None,
                "resourceDisplayName": "Microsoft Graph",
            },
        ),
        Case(
            "refresh of a device-code token, alone",
            True,
            {
                "authenticationProtocol": "none",
                "originalTransferMethod": "deviceCodeFlow",
                "resourceId": "00000002-0000-0ff1-ce00-000000000000",
                "resourceDisplayName": "Office 365 Exchange Online",
            },
            envelope={"category": "NonInteractiveUserSignInLogs"},
        ),
        Case(
            "Azure CLI via device code (allow-listed admin tooling)",
            False,
            {**_DEVICE_CODE, "appId": AZURE_CLI, "appDisplayName": "Azure CLI"},
        ),
        Case(
            "failed device-code poll (authorization pending)",
            False,
            {**_DEVICE_CODE, "status": {"errorCode": 70016}},
        ),
        Case("ordinary browser sign-in", False, {"authenticationProtocol": "none"}),
        Case(
            "app added to the allow-list by the policy",
            False,
            _DEVICE_CODE,
            policy={
                "rules": {
                    "device-code-phishing": {
                        "allowed_apps": [AZURE_CLI, "D3590ED6-52B3-4102-AEFF-AAD2292AB01C"]
                    }
                }
            },
        ),
        Case(
            "user excepted by the policy",
            False,
            _DEVICE_CODE,
            policy={
                "rules": {"device-code-phishing": {"exceptions": {"users": ["ADELE@contoso.com"]}}}
            },
        ),
    ),
)
