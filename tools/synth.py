"""Deterministic generator of raw Entra ID sign-in diagnostic records.

The demo sample and the throughput benchmark need realistic input with known incidents and no
tenant behind it. Records have the shape Azure Monitor diagnostic settings deliver to Event Hubs;
every person, address and id is fictional, and all randomness comes from one
``random.Random(seed)``, so the same seed always yields byte-identical output.
"""

from __future__ import annotations

import base64
import random
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

Record = dict[str, Any]

TENANT_ID = "5e1f0c2a-7d43-4b8e-a9f6-2c81d4e7b093"
DOMAIN = "contoso.com"
EXCHANGE = ("00000002-0000-0ff1-ce00-000000000000", "Office 365 Exchange Online")
GRAPH = ("00000003-0000-0000-c000-000000000000", "Microsoft Graph")
ARM = ("797f4846-ba00-4fd7-ba43-dac1f8f63013", "Windows Azure Service Management API")
KEY_VAULT = ("cfa8b339-82a2-471a-a3c9-0fc0be7a4093", "Azure Key Vault")
OUTLOOK_MOBILE_ID = "27922004-5251-4030-b22d-91ecd9a37ea4"
MODERN = "Mobile Apps and Desktop clients"
_NS = uuid.UUID("9b0c7a52-3f1e-4d6a-8e2b-5c4f7a1d0e93")  # stable ids for users and policies
_START = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
# The demo's input, bundled in the package; tests/test_sample.py checks it is what we write.
BUNDLED_SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"


@dataclass(frozen=True)
class Place:
    """A geolocation as Entra reports it; ``net`` is the /24 its addresses come from."""

    city: str
    state: str
    country: str
    lat: float
    lon: float
    net: str
    asn: int


@dataclass(frozen=True)
class User:
    """A member of the tenant; ``ip`` is where their everyday sign-ins come from."""

    id: str
    upn: str
    display_name: str
    home: Place
    ip: str


@dataclass(frozen=True)
class ServicePrincipal:
    """An application (or, if ``managed``, a managed identity) signing in without a user."""

    id: str
    app_id: str
    name: str
    managed: bool = False


PLACES: dict[str, Place] = {  # documentation address blocks and ASNs (RFC 5737, RFC 5398)
    "redmond": Place("Redmond", "Washington", "US", 47.674, -122.1215, "203.0.113", 64496),
    "seattle": Place("Seattle", "Washington", "US", 47.6062, -122.3321, "198.51.100", 64497),
    "new_york": Place("New York", "New York", "US", 40.7128, -74.006, "198.51.100", 64498),
    "london": Place("London", "England", "GB", 51.5072, -0.1276, "192.0.2", 64499),
    "quincy": Place("Quincy", "Washington", "US", 47.2343, -119.8526, "198.51.100", 64510),
    # foreign places use public-looking addresses, as attacks and travel come from real networks
    "amsterdam": Place("Amsterdam", "Noord-Holland", "NL", 52.3676, 4.9041, "145.53.77", 64500),
    "singapore": Place("Singapore", "Singapore", "SG", 1.3521, 103.8198, "118.189.40", 64501),
    "lagos": Place("Lagos", "Lagos", "NG", 6.5244, 3.3792, "102.89.34", 64502),
    "sao_paulo": Place("Sao Paulo", "Sao Paulo", "BR", -23.5505, -46.6333, "177.54.144", 64503),
    "hanoi": Place("Hanoi", "Ha Noi", "VN", 21.0278, 105.8342, "116.108.12", 64504),
    "bucharest": Place("Bucharest", "Bucuresti", "RO", 44.4268, 26.1025, "185.220.101", 64505),
    # a hosting provider's network (DigitalOcean's AS), where phishing proxies run
    "frankfurt_vps": Place("Frankfurt", "Hessen", "DE", 50.1109, 8.6821, "167.99.12", 14061),
}
NOWHERE = Place("", "", "", 0.0, 0.0, "", 0)

# app key -> (appId, appDisplayName, resourceId, resourceDisplayName)
APPS: dict[str, tuple[str, str, str, str]] = {
    "officehome": ("4765445b-32c6-49b0-83e6-1d93765276ca", "OfficeHome", *GRAPH),
    "owa": ("9199bf20-a13f-4107-85dc-02114787ef48", "One Outlook Web", *EXCHANGE),
    "outlook-desktop": ("d3590ed6-52b3-4102-aeff-aad2292ab01c", "Microsoft Office", *EXCHANGE),
    "outlook-mobile": (OUTLOOK_MOBILE_ID, "Outlook Mobile", *EXCHANGE),
    "teams": (
        "1fec8e78-bce4-4aaf-ab1b-5451cc387264",
        "Microsoft Teams",
        "cc15fd57-2c6c-4117-a88c-83b1d56b4bbe",
        "Microsoft Teams Services",
    ),
    "ios-accounts": ("f8d98a96-0999-43f5-8af3-69971c7bb423", "iOS Accounts", *EXCHANGE),
    "exchange": (*EXCHANGE, *EXCHANGE),
    "aad-powershell": (
        "1b730954-1685-4b74-9bfd-dac224a7b894",
        "Azure Active Directory PowerShell",
        *GRAPH,
    ),
}
_BROWSER_APPS = frozenset({"officehome", "owa"})
_CHROME = "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"
_TEAMS = "(KHTML, like Gecko)"
# agent key -> (userAgent, deviceDetail.operatingSystem, deviceDetail.browser)
AGENTS: dict[str, tuple[str, str, str]] = {
    "edge-win": (f"{_WIN} {_CHROME} Edg/131.0.2903.70", "Windows 10", "Edge 131.0.2903"),
    "chrome-win": (f"{_WIN} {_CHROME}", "Windows 10", "Chrome 131.0.0"),
    "chrome-mac": (
        f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_CHROME}",
        "MacOs",
        "Chrome 131.0.0",
    ),
    "chrome-linux": (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
        "Linux",
        "Chrome 124.0.0",
    ),
    "outlook-win": (
        "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.18227; Pro)",
        "Windows 10",
        "Rich Client 5.2.6.0",
    ),
    "outlook-ios-a": ("Outlook-iOS/4.2450.2 (iPhone15,3; iOS 17.6.1)", "Ios 17.6.1", ""),
    "outlook-ios-b": ("Outlook-iOS/4.2502.0 (iPhone16,2; iOS 18.1.1)", "Ios 18.1.1", ""),
    "outlook-android-a": ("Outlook-Android/4.2446.1 (SM-S918B; Android 14)", "Android 14", ""),
    "outlook-android-b": ("Outlook-Android/4.2504.1 (Pixel 8; Android 15)", "Android 15", ""),
    "outlook-ios-old": ("Outlook-iOS/4.2310.1 (iPhone12,1; iOS 16.7.2)", "Ios 16.7.2", ""),
    "outlook-android-old": ("Outlook-Android/4.2305.0 (SM-G991B; Android 13)", "Android 13", ""),
    "teams-ios": (
        f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 "
        f"{_TEAMS} Mobile/15E148 TeamsMobile-iOS",
        "Ios 17.6.1",
        "Mobile Safari",
    ),
    "teams-android": (
        f"Mozilla/5.0 (Linux; Android 14; SM-S918B; wv) AppleWebKit/537.36 {_TEAMS}"
        " Version/4.0 Chrome/131.0.6778.39 Mobile Safari/537.36 TeamsMobile-Android",
        "Android 14",
        "Mobile Safari",
    ),
    "ios-mail": ("iOS/17.5.1 (21F90) accountsd/1.0", "Ios 17.5.1", ""),
    "ios-mail-18": ("iOS/18.1 (22B83) accountsd/1.0", "Ios 18.1", ""),
    "gmail": ("Android-Mail/2024.05.26.637963220.Release", "Android", ""),
    "samsung": ("SAMSUNG-SM-S918B/101.1034", "Android", ""),
    "spoofed-outlook": ("Outlook-Android/2.0", "Android", ""),
    "smtp": ("BAV2ROPC", "", ""),
    "none": ("", "", ""),
    "python": ("python-requests/2.32.3", "", ""),
    "azurehound": ("azurehound/v2.2.1", "", ""),
}

# errorCode -> (failureReason, additionalDetails), as Entra words them
ERRORS: dict[int, tuple[str, str]] = {
    50126: (
        "Error validating credentials due to invalid username or password.",
        "The user didn't enter the right credentials.",
    ),
    53003: (
        "Access has been blocked by Conditional Access policies. The access policy does not "
        "allow token issuance.",
        "The client app is not allowed by Conditional Access.",
    ),
    50074: ("Strong Authentication is required.", "MFA required in Azure AD"),
    50076: (
        "Due to a configuration change made by your administrator, or because you moved to a "
        "new location, you must use multi-factor authentication.",
        "MFA required in Azure AD",
    ),
    50140: (
        "This error occurred due to 'Keep me signed in' interrupt when the user was signing-in.",
        "The user was asked whether to stay signed in.",
    ),
    500121: (
        "Authentication failed during strong authentication request.",
        "The user didn't complete the MFA prompt.",
    ),
    7000215: ("Invalid client secret provided.", "The client sent an expired or wrong secret."),
    50057: ("User account is disabled.", "The account has been disabled by an administrator."),
}

# (displayName, enforcedGrantControls, enforcedSessionControls). Long policy lists are what make
# real records 3-10 KB, so the number of policies is the size knob.
_POLICIES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("CA001: Require multifactor authentication for all users", ("Mfa",), ()),
    ("CA002: Block legacy authentication", ("Block",), ()),
    (
        "CA003: Require approved client app on iOS and Android",
        ("RequireApprovedApp", "RequireCompliantApp"),
        (),
    ),
    ("CA004: Block access from sanctioned countries", ("Block",), ()),
    ("CA005: Require compliant device for administrators", ("RequireCompliantDevice",), ()),
    ("CA006: Sign-in frequency 12 hours on unmanaged devices", (), ("SignInFrequency",)),
    ("CA007: Require MFA for medium and high sign-in risk", ("Mfa",), ()),
    ("CA008: Require password change for high user risk", ("Mfa", "PasswordChange"), ()),
    ("CA009: Block Exchange ActiveSync on unmanaged devices", ("Block",), ()),
    ("CA010: Terms of use for guests and external users", ("TermsOfUse",), ()),
    ("CA011: App enforced restrictions for SharePoint", (), ("ApplicationEnforcedRestrictions",)),
    ("CA012: No persistent browser on unmanaged devices", (), ("PersistentBrowserSessionMode",)),
    ("CA013: Report-only - phishing-resistant MFA for admins", ("Mfa",), ()),
    ("CA014: Block device code flow", ("Block",), ()),
)

_NOISE_NAMES = (
    "Priya Raman",
    "Tomasz Nowak",
    "Aisha Bello",
    "Daniel Okafor",
    "Hannah Schmidt",
    "Kenji Watanabe",
    "Lucia Romero",
    "Marcus Reid",
    "Nadia Haddad",
    "Oliver Grant",
    "Paula Costa",
    "Rahul Mehta",
    "Sofia Lindqvist",
    "Theo Martin",
    "Uma Krishnan",
    "Victor Hale",
    "Wen Li",
    "Yusuf Demir",
    "Zoe Carter",
    "Ben Adler",
    "Chloe Dubois",
    "Diego Alvarez",
)
# incident -> the user it happens to; these users have no everyday noise, so tests stay exact
_INCIDENT_NAMES: dict[str, str] = {
    "ios_mail": "Emma Novak",
    "gmail_eas": "Farid Karimi",
    "samsung_eas": "Grace Kim",
    "ios_mail_blocked": "Hugo Berg",
    "legacy_imap": "Ines Moreau",
    "legacy_smtp": "Scanner Floor3",
    "outdated_outlook_ios": "Jonas Weber",
    "outdated_outlook_android": "Kavya Iyer",
    "risky_high": "Leo Fischer",
    "risky_medium": "Maya Cohen",
    "risky_dismissed": "Noah Jensen",
    "risky_user_state": "Olga Petrova",
    "risk_remediated": "Pablo Ruiz",
    "risk_event_join": "Quinn Harper",
    "brute_force": "Rosa Silva",
    "mfa_fatigue": "Samir Nasser",
    "impossible_travel": "Tara Singh",
    "device_code": "Vera Lindholm",
    "ropc_script": "Walter Brandt",
    "mfa_fraud": "Xenia Pavlova",
    "attack_tool": "Yannick Morel",
    "new_country": "Zofia Nowicka",
    "token_replay": "Aaron Blake",
}
_SPRAY_IP, _STUFFING_IP = "116.108.12.77", "177.54.144.9"
_DISABLED_PROBE_IP, _WORKLOAD_MOVED_IP = "102.89.34.140", "167.99.12.40"
_HISTORY_DAYS = range(9, 1, -1)
"""Days before the sample's six hours with the everyday sign-ins the baselines learn from."""
_HOMES = ("redmond", "redmond", "redmond", "seattle", "new_york", "london")
_LAPTOPS = ("edge-win", "chrome-win", "chrome-mac")
_PHONES = ("outlook-ios-a", "outlook-ios-b", "outlook-android-a", "outlook-android-b")
_KINDS = ("officehome", "owa", "outlook-desktop", "outlook-mobile", "teams")


def _upn(name: str) -> str:
    return f"{name.lower().replace(' ', '.')}@{DOMAIN}"


INCIDENTS: dict[str, str] = {
    **{incident: _upn(name) for incident, name in _INCIDENT_NAMES.items()},
    "password_spray": _SPRAY_IP,
    "credential_stuffing": _STUFFING_IP,
    "disabled_accounts": _DISABLED_PROBE_IP,
    "workload_new_network": _WORKLOAD_MOVED_IP,
}
"""Incident -> UPN of its user (source IP for IP-keyed incidents) in ``sample_records()``."""


def _guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _ms(t: datetime) -> str:
    t = _utc(t)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _us_time(t: datetime) -> str:
    """Identity Protection categories stamp ``time`` in US locale, second precision."""
    t = _utc(t)
    half = "AM" if t.hour < 12 else "PM"
    return f"{t.month}/{t.day}/{t.year} {t.hour % 12 or 12}:{t.minute:02d}:{t.second:02d} {half}"


def _geo(place: Place) -> Record:
    return {
        "city": place.city,
        "state": place.state,
        "countryOrRegion": place.country,
        "geoCoordinates": {"latitude": place.lat, "longitude": place.lon},
    }


def users() -> list[User]:
    """The contoso tenant: 22 everyday users, then one user per incident (ids are stable)."""
    out: list[User] = []
    for i, name in enumerate((*_NOISE_NAMES, *_INCIDENT_NAMES.values())):
        home = PLACES[_HOMES[i % len(_HOMES)]]  # office users share three NAT addresses
        ip = f"203.0.113.{10 + i % 3}" if home.city == "Redmond" else f"{home.net}.{20 + i}"
        out.append(User(str(uuid.uuid5(_NS, _upn(name))), _upn(name), name, home, ip))
    return out


def service_principals() -> list[ServicePrincipal]:
    """Three app registrations, then two managed identities."""
    names = (
        "contoso-hr-sync",
        "contoso-backup-runner",
        "terraform-ci",
        "func-invoice-prod",
        "vm-build-agent-01",
    )
    return [
        ServicePrincipal(str(uuid.uuid5(_NS, n)), str(uuid.uuid5(_NS, "app/" + n)), n, i > 2)
        for i, n in enumerate(names)
    ]


def _policies(rng: random.Random, count: int, status: str) -> list[Record]:
    """Policy results consistent with the sign-in's conditionalAccessStatus."""
    hit = {"success": 0, "failure": min(2, count - 1)}.get(status, -1)
    out: list[Record] = []
    for i in range(count):
        name, grant, session = _POLICIES[i % len(_POLICIES)]
        if i >= len(_POLICIES):
            name = f"{name} (pilot {i // len(_POLICIES)})"
        result = (
            status
            if i == hit
            else rng.choice(("notApplied", "notApplied", "notEnabled", "reportOnlyNotApplied"))
        )
        out.append(
            {
                "conditionsNotSatisfied": rng.choice((0, 1, 2, 8, 16)),
                "conditionsSatisfied": rng.choice((0, 1, 3, 19)),
                "displayName": name,
                "enforcedGrantControls": list(grant),
                "enforcedSessionControls": list(session),
                "id": str(uuid.uuid5(_NS, name)),
                "result": result,
            }
        )
    return out


def _auth_steps(stamp: str, error_code: int, interactive: bool, mfa: bool) -> list[Record]:
    """authenticationDetails as Entra records them for each outcome."""

    def step(method: str, detail: str, ok: bool, result: str, second: bool = False) -> Record:
        return {
            "authenticationStepDateTime": stamp,
            "authenticationMethod": method,
            "authenticationMethodDetail": detail,
            "succeeded": ok,
            "authenticationStepResultDetail": result,
            "authenticationStepRequirement": "Multi-factor authentication"
            if second
            else "Primary authentication",
        }

    if not interactive:
        what = "MFA" if mfa else "First factor"
        return [
            step(
                "Previously satisfied",
                "",
                True,
                f"{what} requirement satisfied by claim in the token",
                mfa,
            )
        ]
    if error_code == 50126:
        return [
            step(
                "Password",
                "Password in the cloud",
                False,
                "Invalid username or password or Invalid on-premise username or password.",
            )
        ]
    steps = [step("Password", "Password in the cloud", True, "Correct password")]
    if error_code == 500121:
        steps.append(
            step(
                "Mobile app notification",
                "Microsoft Authenticator",
                False,
                "MFA denied; user declined the authentication",
                True,
            )
        )
    elif error_code in (50074, 50076):
        steps.append(step("", "", False, "MFA required in Azure AD", True))
    elif error_code == 0 and mfa:
        steps.append(
            step(
                "Mobile app notification",
                "Microsoft Authenticator",
                True,
                "MFA successfully completed",
                True,
            )
        )
    return steps


def sign_in(
    rng: random.Random,
    *,
    time: datetime,
    category: str = "SignInLogs",
    user: User | None = None,
    principal: ServicePrincipal | None = None,
    app_id: str = "",
    app_name: str = "",
    resource_id: str = EXCHANGE[0],
    resource_name: str = EXCHANGE[1],
    client_app_used: str = MODERN,
    user_agent: str = "",
    operating_system: str = "",
    browser: str = "",
    ip: str = "",
    place: Place = NOWHERE,
    error_code: int = 0,
    mfa: bool = True,
    interactive: bool | None = None,
    conditional_access_status: str | None = None,
    ca_policies: int = 4,
    risk_level_during: str = "none",
    risk_level_aggregated: str = "none",
    risk_state: str = "none",
    risk_detail: str = "none",
    risk_event_types: Sequence[str] = (),
    managed_device: bool = False,
    auth_details: list[Record] | None = None,
    tenant_id: str = TENANT_ID,
    protocol: str = "",
    original_transfer: str = "",
    session_id: str = "",
) -> Record:
    """One raw sign-in of ``user``, or of ``principal`` (service principal / managed identity).

    Unset derived fields follow Entra: interactive iff category is SignInLogs; CA status is
    "failure" for 53003, "success" for a successful MFA sign-in, else "notApplied".
    """
    if (user is None) == (principal is None):
        raise ValueError("pass exactly one of user or principal")
    stamp = _utc(time).strftime("%Y-%m-%dT%H:%M:%S.%f") + str(rng.randrange(10))  # 7 digits
    rid = f"{_guid(rng)[:-4]}{rng.randrange(256):02x}00"  # Entra request ids end in "00"
    corr = _guid(rng)
    if interactive is None:
        interactive = category == "SignInLogs"
    if conditional_access_status is None:
        conditional_access_status = (
            "failure"
            if error_code == 53003
            else "success"
            if mfa and not error_code
            else "notApplied"
        )
    reason, detail = ERRORS.get(error_code, ("", ""))
    status: Record = {"errorCode": error_code}
    if error_code:
        status.update(failureReason=reason, additionalDetails=detail)
    elif user is not None and (mfa or not interactive):
        status["additionalDetails"] = (
            "MFA completed in Azure AD"
            if interactive
            else "MFA requirement satisfied by claim in the token"
        )
    p: Record = {"id": rid, "createdDateTime": stamp + "+00:00"}
    if user is not None:
        p.update(
            userDisplayName=user.display_name,
            userPrincipalName=user.upn,
            userId=user.id,
            userType="Member",
            appId=app_id,
            appDisplayName=app_name,
            ipAddress=ip,
            autonomousSystemNumber=place.asn,
            clientAppUsed=client_app_used,
            userAgent=user_agent,
        )
        if protocol:
            p["authenticationProtocol"] = protocol
        if original_transfer:
            p["originalTransferMethod"] = original_transfer
        if session_id:
            p["sessionId"] = session_id
    elif principal is not None:
        p.update(userId=None, appId=principal.app_id, appDisplayName=principal.name, ipAddress=ip)
        if place.asn:
            p["autonomousSystemNumber"] = place.asn
    p.update(
        correlationId=corr,
        conditionalAccessStatus=conditional_access_status,
        originalRequestId=rid,
        isInteractive=interactive,
        tokenIssuerName="",
        tokenIssuerType="AzureAD",
        processingTimeInMilliseconds=rng.randint(20, 400),
        riskDetail=risk_detail,
        riskLevelAggregated=risk_level_aggregated,
        riskLevelDuringSignIn=risk_level_during,
        riskState=risk_state,
        riskEventTypes=list(risk_event_types),
        riskEventTypes_v2=list(risk_event_types),
        resourceDisplayName=resource_name,
        resourceId=resource_id,
        resourceTenantId=tenant_id,
        homeTenantId=tenant_id,
        status=status,
    )
    if user is not None:
        p["authenticationRequirement"] = (
            "multiFactorAuthentication" if mfa else "singleFactorAuthentication"
        )
        p["authenticationDetails"] = (
            auth_details
            if auth_details is not None
            else _auth_steps(stamp + "+00:00", error_code, interactive, mfa)
        )
        windows = operating_system.startswith("Windows")
        joined = "Azure AD joined" if windows else "Azure AD registered"
        p["deviceDetail"] = {
            "deviceId": str(uuid.uuid5(_NS, user.id + operating_system)) if managed_device else "",
            "displayName": f"CON-{user.upn[:6].upper()}" if managed_device else "",
            "operatingSystem": operating_system,
            "browser": browser,
            "isCompliant": managed_device,
            "isManaged": managed_device,
            "trustType": joined if managed_device else "",
        }
        count = max(ca_policies, 1) if conditional_access_status == "failure" else ca_policies
        policies = _policies(rng, count, conditional_access_status)
    else:
        managed = principal is not None and principal.managed
        p["clientCredentialType"] = "managedIdentity" if managed else "clientSecret"
        policies = []
    p.update(
        location=_geo(place),
        appliedConditionalAccessPolicies=policies,
        networkLocationDetails=[],
        crossTenantAccessType="none",
        flaggedForReview=False,
        uniqueTokenIdentifier=base64.b64encode(rid.encode()).decode(),
        servicePrincipalId=principal.id if principal else "",
        servicePrincipalName=principal.name if principal else "",
    )
    rec: Record = {
        "time": stamp + "Z",
        "resourceId": f"/tenants/{tenant_id}/providers/Microsoft.aadiam",
        "operationName": "Sign-in activity",
        "operationVersion": "1.0",
        "category": category,
        "tenantId": tenant_id,
        "resultType": str(error_code),
        "resultSignature": "None",
    }
    if error_code:
        rec["resultDescription"] = reason
    rec["durationMs"] = 0
    if ip:
        rec["callerIpAddress"] = ip
    rec["correlationId"] = corr
    if user is not None:
        rec["identity"] = user.display_name
    rec["Level"] = 4
    if place.country:
        rec["location"] = place.country
    rec["properties"] = p
    return rec


def risky_user(
    *,
    time: datetime,
    user: User,
    risk_state: str = "atRisk",
    risk_level: str = "high",
    risk_detail: str = "none",
    tenant_id: str = TENANT_ID,
) -> Record:
    """A RiskyUsers record: Identity Protection's current verdict on ``user``."""
    return {
        "time": _us_time(time),
        "resourceId": f"/tenants/{tenant_id}/providers/microsoft.aadiam",
        "operationName": "Risky user",
        "operationVersion": "1.0",
        "category": "RiskyUsers",
        "tenantId": tenant_id,
        "resultSignature": "None",
        "durationMs": 0,
        "correlationId": user.id,
        "identity": user.display_name.lower(),
        "Level": 4,
        "location": "wus2",
        "properties": {
            "id": user.id,
            "userDisplayName": user.display_name,
            "userPrincipalName": user.upn,
            "riskLastUpdatedDateTime": _ms(time),
            "riskState": risk_state,
            "riskDetail": risk_detail,
            "riskLevel": risk_level,
            "isGuest": False,
            "isDeleted": False,
            "isProcessing": False,
        },
    }


def user_risk_event(
    rng: random.Random,
    *,
    time: datetime,
    signin: Record,
    risk_event_type: str = "unfamiliarFeatures",
    risk_level: str = "high",
    timing: str = "offline",
) -> Record:
    """A UserRiskEvents detection raised at ``time`` about the raw sign-in ``signin``."""
    p, tenant = signin["properties"], signin["tenantId"]
    activity = datetime.fromisoformat(p["createdDateTime"][:26]).replace(tzinfo=UTC)
    rid = f"{rng.getrandbits(256):064x}"
    loc = dict(p["location"])
    loc["geoCoordinates"] = {"altitude": 0.0, **loc["geoCoordinates"]}
    info = orjson.dumps([{"Key": "userAgent", "Value": p.get("userAgent", "")}]).decode()
    return {
        "time": _us_time(time),
        "resourceId": f"/tenants/{tenant}/providers/microsoft.aadiam",
        "operationName": "User Risk Detection",
        "operationVersion": "1.0",
        "category": "UserRiskEvents",
        "tenantId": tenant,
        "resultSignature": "None",
        "durationMs": 0,
        "callerIpAddress": p["ipAddress"],
        "correlationId": rid,
        "identity": p["userDisplayName"].lower(),
        "Level": 4,
        "location": loc["countryOrRegion"].lower(),
        "properties": {
            "id": rid,
            "requestId": p["id"],
            "correlationId": p["correlationId"],
            "riskType": risk_event_type,
            "riskEventType": risk_event_type,
            "riskState": "atRisk",
            "riskLevel": risk_level,
            "riskDetail": "none",
            "source": "IdentityProtection",
            "detectionTimingType": timing,
            "activity": "signin",
            "ipAddress": p["ipAddress"],
            "location": loc,
            "activityDateTime": _ms(activity),
            "detectedDateTime": _ms(activity if timing == "realtime" else time),
            "lastUpdatedDateTime": _ms(time),
            "userId": p["userId"],
            "userDisplayName": p["userDisplayName"],
            "userPrincipalName": p["userPrincipalName"],
            "additionalInfo": info,
            "tokenIssuerType": "AzureAD",
            "resourceTenantId": None,
            "homeTenantId": tenant,
            "userType": "member",
            "crossTenantAccessType": "none",
        },
    }


def via(rng: random.Random, app: str, agent: str, **kw: Any) -> Record:
    """``sign_in`` with app and client fields taken from the APPS and AGENTS tables."""
    app_id, app_name, res_id, res_name = APPS[app]
    ua, os_name, browser = AGENTS[agent]
    kw.setdefault("client_app_used", "Browser" if app in _BROWSER_APPS else MODERN)
    return sign_in(
        rng,
        app_id=app_id,
        app_name=app_name,
        resource_id=res_id,
        resource_name=res_name,
        user_agent=ua,
        operating_system=os_name,
        browser=browser,
        **kw,
    )


def _everyday(kind: str, laptop: str, phone: str) -> tuple[str, str]:
    """Resolve a kind of everyday activity to (app, agent) on the user's own devices."""
    if kind == "outlook-desktop" and laptop.endswith("win"):
        return kind, "outlook-win"
    if kind == "outlook-mobile":
        return kind, phone
    if kind == "teams":
        return kind, "teams-ios" if "ios" in phone else "teams-android"
    return ("owa" if kind == "owa" else "officehome"), laptop


def sample_records(seed: int = 7, start: datetime = _START, history: bool = True) -> list[Record]:
    """About 470 records of six hours at contoso from ``start``: everyday noise plus every
    demo incident; with ``history``, the week before of the users and the workload whose
    baselines the new-country and workload-new-network incidents need.

    Sorted by time, except a few everyday records that arrive minutes late, as late Event Hubs
    batches do. ``INCIDENTS`` names the user (or source IP) of each incident.
    """
    rng = random.Random(seed)
    people = {u.display_name: u for u in users()}
    who = {incident: people[name] for incident, name in _INCIDENT_NAMES.items()}
    everyone = [people[n] for n in _NOISE_NAMES]
    timeline: list[tuple[datetime, int, Record]] = []
    noise: list[Record] = []

    def at(minute: float) -> datetime:  # minutes after start plus a few seconds of jitter
        return start + timedelta(minutes=minute, seconds=rng.uniform(0, 9))

    def add(t: datetime, rec: Record, is_noise: bool = False) -> Record:
        timeline.append((t, len(timeline), rec))
        if is_noise:
            noise.append(rec)
        return rec

    def signin(
        minute: float, u: User, app: str, agent: str, *, is_noise: bool = False, **kw: Any
    ) -> Record:
        t = at(minute)
        kw.setdefault("ip", u.ip)
        kw.setdefault("place", u.home)
        kw.setdefault("ca_policies", rng.randint(3, 7))
        return add(t, via(rng, app, agent, time=t, user=u, **kw), is_noise)

    kit = {u.upn: (rng.choice(_LAPTOPS), rng.choice(_PHONES)) for u in everyone}
    for category, count, weights in (
        ("SignInLogs", 115, (35, 15, 15, 22, 13)),
        ("NonInteractiveUserSignInLogs", 190, (10, 10, 25, 35, 20)),
    ):
        for _ in range(count):
            u = rng.choice(everyone)
            laptop, phone = kit[u.upn]
            app, agent = _everyday(rng.choices(_KINDS, weights)[0], laptop, phone)
            signin(
                rng.uniform(0, 358),
                u,
                app,
                agent,
                is_noise=True,
                category=category,
                managed_device=agent in (*_LAPTOPS, "outlook-win"),
            )
    for code in (50126, 50140) * 6:  # a mistyped password or a KMSI interrupt, then success
        u, minute = rng.choice(everyone), rng.uniform(0, 350)
        for error in (code, 0):
            signin(
                minute + (0.5 if error == 0 else 0),
                u,
                "officehome",
                kit[u.upn][0],
                is_noise=True,
                error_code=error,
                managed_device=True,
            )
    principals = service_principals()
    resources = dict(zip(principals, (GRAPH, ARM, ARM, KEY_VAULT, ARM), strict=True))
    for category, pool, count in (
        ("ServicePrincipalSignInLogs", principals[:3], 15),
        ("ManagedIdentitySignInLogs", principals[3:], 10),
    ):
        for i in range(count):
            sp, t = rng.choice(pool), at(rng.uniform(0, 358))
            add(
                t,
                sign_in(
                    rng,
                    time=t,
                    category=category,
                    principal=sp,
                    resource_id=resources[sp][0],
                    resource_name=resources[sp][1],
                    ip="" if sp.managed else "198.51.100.200",
                    mfa=False,
                    place=NOWHERE if sp.managed else PLACES["quincy"],
                    error_code=7000215 if i == 9 and not sp.managed else 0,
                ),
            )

    # (a)-(c) unapproved mail clients that still succeed
    for minute in (35, 95, 155, 215):
        signin(
            minute,
            who["ios_mail"],
            "ios-accounts",
            "ios-mail",
            category="SignInLogs" if minute == 35 else "NonInteractiveUserSignInLogs",
        )
    for minute in (50, 110, 170):
        signin(
            minute,
            who["gmail_eas"],
            "exchange",
            "gmail",
            mfa=False,
            client_app_used="Exchange ActiveSync",
        )
    for minute in (65, 140):
        signin(
            minute,
            who["samsung_eas"],
            "exchange",
            "samsung",
            mfa=False,
            client_app_used="Exchange ActiveSync",
        )
    # (d) native iOS Mail blocked by Conditional Access; the user then installs Outlook
    for minute in (75, 77):
        signin(
            minute,
            who["ios_mail_blocked"],
            "ios-accounts",
            "ios-mail-18",
            error_code=53003,
            mfa=False,
        )
    signin(100, who["ios_mail_blocked"], "outlook-mobile", "outlook-ios-b")
    # (e) successful single-factor legacy authentication
    for minute in (45, 105, 165, 225):
        signin(minute, who["legacy_imap"], "exchange", "none", mfa=False, client_app_used="IMAP4")
    for minute in (30, 130, 230):
        signin(
            minute,
            who["legacy_smtp"],
            "exchange",
            "smtp",
            mfa=False,
            client_app_used="Authenticated SMTP",
        )
    # (f) Outlook Mobile builds below the 4.2400 minimum, with the real Outlook app id
    for minute, category in ((55, "SignInLogs"), (175, "NonInteractiveUserSignInLogs")):
        signin(
            minute,
            who["outdated_outlook_ios"],
            "outlook-mobile",
            "outlook-ios-old",
            category=category,
        )
        signin(
            minute + 30,
            who["outdated_outlook_android"],
            "outlook-mobile",
            "outlook-android-old",
            category=category,
        )
    # (g) credential stuffing: spoofed Outlook user agent over a legacy client, from abroad
    for minute, u in zip((240, 243, 247), everyone[3:6], strict=True):
        signin(
            minute,
            u,
            "exchange",
            "spoofed-outlook",
            error_code=50126,
            mfa=False,
            client_app_used="Other clients",
            ip=_STUFFING_IP,
            place=PLACES["sao_paulo"],
        )
    # (h) risky sign-ins, one dismissed; (j) a clean-looking sign-in flagged offline later
    high = signin(
        125,
        who["risky_high"],
        "officehome",
        "chrome-win",
        ip="177.54.144.30",
        place=PLACES["sao_paulo"],
        risk_level_during="high",
        risk_level_aggregated="high",
        risk_state="atRisk",
        risk_event_types=["unfamiliarFeatures"],
    )
    t = at(127)
    add(t, user_risk_event(rng, time=t, signin=high, timing="realtime"))
    signin(
        200,
        who["risky_medium"],
        "owa",
        "chrome-mac",
        ip="185.220.101.52",
        place=PLACES["bucharest"],
        risk_level_during="medium",
        risk_level_aggregated="medium",
        risk_state="atRisk",
        risk_event_types=["anonymizedIPAddress"],
    )
    signin(
        260,
        who["risky_dismissed"],
        "officehome",
        "edge-win",
        risk_level_during="high",
        risk_level_aggregated="high",
        risk_state="dismissed",
        risk_detail="adminDismissedAllRiskForUser",
        risk_event_types=["unfamiliarFeatures"],
        managed_device=True,
    )
    joined = signin(
        140,
        who["risk_event_join"],
        "officehome",
        "chrome-win",
        ip="185.220.101.47",
        place=PLACES["bucharest"],
    )
    t = at(195)
    add(t, user_risk_event(rng, time=t, signin=joined, risk_event_type="anonymizedIPAddress"))
    # (i) risk carried by the user's state, not by the sign-in
    y, x = who["risk_remediated"], who["risky_user_state"]
    for minute, u, state, level, detail in (
        (20, y, "atRisk", "medium", "none"),
        (90, y, "remediated", "none", "userPerformedSecuredPasswordReset"),
        (150, x, "atRisk", "high", "none"),
    ):
        t = at(minute)
        add(t, risky_user(time=t, user=u, risk_state=state, risk_level=level, risk_detail=detail))
    signin(110, y, "officehome", "edge-win", managed_device=True)
    signin(185, x, "outlook-mobile", "outlook-ios-a")
    # password spray: one address, 12 users, within 13 minutes
    for i, u in enumerate(everyone[6:18]):
        signin(
            280 + i * 1.1,
            u,
            "aad-powershell",
            "python",
            error_code=50126,
            mfa=False,
            ip=_SPRAY_IP,
            place=PLACES["hanoi"],
        )
    # brute force: 12 failures within 8 minutes, then the password is found
    for i in range(13):
        signin(
            300 + i * 0.62,
            who["brute_force"],
            "officehome",
            "chrome-linux",
            mfa=False,
            error_code=50126 if i < 12 else 0,
            ip="102.89.34.18",
            place=PLACES["lagos"],
        )
    # MFA fatigue: 6 declined pushes within 10 minutes, then an accepted one
    for i in range(7):
        signin(
            320 + i * 1.5,
            who["mfa_fatigue"],
            "officehome",
            "chrome-win",
            error_code=500121 if i < 6 else 0,
            ip="102.89.34.61",
            place=PLACES["lagos"],
        )
    # impossible travel: Amsterdam, then Singapore 30 minutes later
    for minute, ip, city in (
        (240, "145.53.77.20", "amsterdam"),
        (270, "118.189.40.12", "singapore"),
    ):
        signin(
            minute, who["impossible_travel"], "officehome", "edge-win", ip=ip, place=PLACES[city]
        )

    # device-code phishing: the user enters an attacker's code for Microsoft Office, then the
    # attacker refreshes the tokens it got, for mail, from abroad
    victim = who["device_code"]
    signin(150, victim, "outlook-desktop", "chrome-win", protocol="deviceCode")
    for minute in (153, 175, 205):
        signin(
            minute,
            victim,
            "outlook-desktop",
            "python",
            category="NonInteractiveUserSignInLogs",
            original_transfer="deviceCodeFlow",
            ip="145.53.77.61",
            place=PLACES["amsterdam"],
        )
    # a script signing in with the user's password (ROPC), single-factor, to Graph
    signin(210, who["ropc_script"], "aad-powershell", "python", protocol="ropc", mfa=False)
    # the user reports the MFA prompt of someone else's sign-in as fraud
    fraud_stamp = "2026-11-20T00:00:00+00:00"  # steps carry no time of their own here
    signin(
        230,
        who["mfa_fraud"],
        "officehome",
        "chrome-win",
        error_code=500121,
        ip="185.220.101.9",
        place=PLACES["bucharest"],
        auth_details=[
            {
                "authenticationStepDateTime": fraud_stamp,
                "authenticationMethod": "Password",
                "succeeded": True,
                "authenticationStepResultDetail": "Correct password",
                "authenticationStepRequirement": "Primary authentication",
            },
            {
                "authenticationStepDateTime": fraud_stamp,
                "authenticationMethod": "Mobile app notification",
                "succeeded": False,
                "authenticationStepResultDetail": "MFA denied; user reported fraud",
                "authenticationStepRequirement": "Multi-factor authentication",
            },
        ],
    )
    # AzureHound collecting the directory with a stolen refresh token
    signin(
        250,
        who["attack_tool"],
        "aad-powershell",
        "azurehound",
        category="NonInteractiveUserSignInLogs",
        ip="145.53.77.88",
        place=PLACES["amsterdam"],
    )

    # new country: a week of history at home, then an interactive sign-in from Singapore
    traveller = who["new_country"]
    for day in _HISTORY_DAYS if history else ():
        for minute in (60, 300):
            signin(minute - day * 1440, traveller, "officehome", "edge-win", managed_device=True)
    signin(265, traveller, "officehome", "edge-win", ip="118.189.40.77", place=PLACES["singapore"])
    # token replay: a session opened at home is used 12 minutes later from a hosting provider
    victim, session = who["token_replay"], _guid(rng)
    signin(280, victim, "officehome", "chrome-win", session_id=session)
    signin(
        292,
        victim,
        "owa",
        "chrome-linux",
        category="NonInteractiveUserSignInLogs",
        session_id=session,
        ip="167.99.12.9",
        place=PLACES["frankfurt_vps"],
    )
    # disabled accounts (former staff) tried from one address
    for i, u in enumerate(everyone[18:21]):
        signin(
            300 + i * 7,
            u,
            "officehome",
            "chrome-linux",
            error_code=50057,
            mfa=False,
            ip=_DISABLED_PROBE_IP,
            place=PLACES["lagos"],
        )
    # a workload's week in its own network, then its secret used from a hosting provider
    hr_sync = principals[0]
    for day in _HISTORY_DAYS if history else ():
        for minute in (120, 480):
            t = at(minute - day * 1440)
            add(t, _workload_signin(rng, t, hr_sync, "198.51.100.200", PLACES["quincy"]))
    t = at(310)
    add(t, _workload_signin(rng, t, hr_sync, _WORKLOAD_MOVED_IP, PLACES["frankfurt_vps"]))

    records = [rec for _, _, rec in sorted(timeline, key=lambda e: (e[0], e[1]))]
    for rec in rng.sample(noise[:-30], 6):  # late batches: delivered 3-12 records too late
        i = next(i for i, r in enumerate(records) if r is rec)
        records.insert(i + rng.randint(3, 12), records.pop(i))
    return records


def _workload_signin(
    rng: random.Random, t: datetime, sp: ServicePrincipal, ip: str, place: Place
) -> Record:
    return sign_in(
        rng,
        time=t,
        category="ServicePrincipalSignInLogs",
        principal=sp,
        resource_id=GRAPH[0],
        resource_name=GRAPH[1],
        ip=ip,
        mfa=False,
        place=place,
    )


def sample_envelopes(records: Sequence[Record], per_envelope: int = 50) -> list[Record]:
    """Wrap records into Event Hubs diagnostic envelopes ``{"records": [...]}``."""
    return [
        {"records": list(records[i : i + per_envelope])}
        for i in range(0, len(records), per_envelope)
    ]


def sample_days(days: int, seed: int = 7) -> list[Record]:
    """Envelopes of ``days`` consecutive sample days (one seed each, so ids stay unique): the
    same users every day, so state outlives a day as it does in a tenant."""
    return [
        envelope
        for day in range(days)
        for envelope in sample_envelopes(
            sample_records(seed + day, _START + timedelta(days=day), history=day == 0)
        )
    ]


def write_sample(path: str | Path, seed: int = 7) -> None:
    """Write the demo sample: one envelope per line, newline-terminated JSON lines."""
    with Path(path).open("wb") as f:
        for envelope in sample_envelopes(sample_records(seed)):
            f.write(orjson.dumps(envelope) + b"\n")


def bench_envelope(n_records: int, seed: int) -> bytes:
    """One serialized envelope of ``n_records`` varied sign-ins of about 5 KB each."""
    rng = random.Random(seed)
    people = users()
    records: list[Record] = []
    for i in range(n_records):
        u = rng.choice(people)
        app, agent = _everyday(rng.choice(_KINDS), rng.choice(_LAPTOPS), rng.choice(_PHONES))
        records.append(
            via(
                rng,
                app,
                agent,
                # envelopes follow one another, ~0.7 s a sign-in, as a tenant's day does
                time=_START + timedelta(seconds=(seed * n_records + i) * 0.7),
                user=u,
                place=u.home,
                ip=f"{u.home.net}.{rng.randint(2, 254)}",
                ca_policies=rng.randint(7, 11),
                category=rng.choice(("SignInLogs", "NonInteractiveUserSignInLogs")),
                error_code=rng.choice((0, 0, 0, 0, 0, 0, 0, 0, 50126, 50140)),
                managed_device=rng.random() < 0.5,
            )
        )
    return orjson.dumps({"records": records})


if __name__ == "__main__":  # make sample
    write_sample(sys.argv[1] if len(sys.argv) > 1 else BUNDLED_SAMPLE)
