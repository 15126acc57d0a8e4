"""Client identity: which app really signed in, on what platform, at what version.

Sign-ins are raw Entra records (builders.signin) run through the parser, so the table is
checked on the fields exactly as the parser hands them over.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from builders import signin

from pipeline.core.clientapp import (
    EXCHANGE_ONLINE_RESOURCE_ID,
    IOS_ACCOUNTS_APP_ID,
    OUTLOOK_MOBILE_APP_ID,
    ClientClassifier,
    ClientIdentity,
    outlook_build,
    platform_of,
    version_tuple,
)
from pipeline.core.parse import normalize
from pipeline.core.records import SignIn

TEAMS_APP_ID = "1fec8e78-bce4-4aaf-ab1b-5451cc387264"
OFFICE_APP_ID = "d3590ed6-52b3-4102-aeff-aad2292ab01c"
MODERN = "Mobile Apps and Desktop clients"
DEFAULT_APPROVED = frozenset({OUTLOOK_MOBILE_APP_ID})

_EXO: dict[str, Any] = {
    "resourceId": EXCHANGE_ONLINE_RESOURCE_ID,
    "resourceDisplayName": "Office 365 Exchange Online",
}


def parsed(properties: Mapping[str, Any], envelope: Mapping[str, Any] | None = None) -> SignIn:
    record = normalize(signin(properties, envelope))
    assert isinstance(record, SignIn)
    return record


def outlook(user_agent: str, os_name: str) -> dict[str, Any]:
    return {
        **_EXO,
        "appId": OUTLOOK_MOBILE_APP_ID,
        "appDisplayName": "Microsoft Outlook",
        "clientAppUsed": MODERN,
        "userAgent": user_agent,
        "deviceDetail": {"operatingSystem": os_name},
    }


def activesync(user_agent: str, os_name: str = "Android") -> dict[str, Any]:
    """A mail app syncing over Exchange ActiveSync: no app id of its own."""
    return {
        **_EXO,
        "appId": "",
        "appDisplayName": "",
        "clientAppUsed": "Exchange ActiveSync",
        "userAgent": user_agent,
        "deviceDetail": {"operatingSystem": os_name},
    }


def legacy(client_app: str, user_agent: str = "") -> dict[str, Any]:
    """Basic auth from a script or a device that reports no OS."""
    return {
        **_EXO,
        "appId": EXCHANGE_ONLINE_RESOURCE_ID,
        "appDisplayName": "Office 365 Exchange Online",
        "clientAppUsed": client_app,
        "userAgent": user_agent,
        "deviceDetail": None,
    }


def teams(user_agent: str, os_name: str) -> dict[str, Any]:
    return {
        "appId": TEAMS_APP_ID,
        "appDisplayName": "Microsoft Teams",
        "clientAppUsed": MODERN,
        "userAgent": user_agent,
        "deviceDetail": {"operatingSystem": os_name},
    }


_SERVICE_PRINCIPAL: dict[str, Any] = {
    "userId": None,
    "userPrincipalName": None,
    "userDisplayName": None,
    "servicePrincipalId": "8c1a2b3d-4e5f-4a6b-9c8d-7e6f5a4b3c2d",
    "servicePrincipalName": "backup-job",
    "appId": "3f2e1d0c-9b8a-4765-8432-10fedcba9876",
    "appDisplayName": "backup-job",
    "clientAppUsed": "",
    "userAgent": "",
    "deviceDetail": None,
}


def identity(
    family: str,
    name: str,
    platform: str,
    version: str = "",
    *,
    legacy_auth: bool = False,
    approved: bool = False,
) -> ClientIdentity:
    return ClientIdentity(
        family=family,
        name=name,
        platform=platform,
        version=version,
        legacy_auth=legacy_auth,
        mobile=platform in ("ios", "android"),
        approved=approved,
    )


TABLE = [
    pytest.param(
        outlook("Outlook-iOS/4.2450.2 (iPhone15,3; iOS 17.6.1)", "Ios 17.6.1"),
        {},
        identity("outlook-mobile", "Outlook for iOS", "ios", "4.2450.2", approved=True),
        id="Outlook for iOS by app id, build from the user agent",
    ),
    pytest.param(
        outlook("Outlook-Android/4.2446.1 (SM-S918B; Android 14)", "Android 14"),
        {},
        identity("outlook-mobile", "Outlook for Android", "android", "4.2446.1", approved=True),
        id="Outlook for Android by app id",
    ),
    pytest.param(
        outlook("Outlook-Android/2.0", "Android 14"),
        {},
        identity("outlook-mobile", "Outlook for Android", "android", "", approved=True),
        id="Outlook app id with the bare 2.0 user agent: build unknown",
    ),
    pytest.param(
        outlook("Outlook-iOS/1.0.3 (iPhone7,2; iOS 8.4)", "Ios 8.4"),
        {},
        identity("outlook-mobile", "Outlook for iOS", "ios", "1.0.3", approved=True),
        id="Outlook for iOS 1.0.3: a build from before the 4.yymm scheme",
    ),
    pytest.param(
        outlook("Outlook-iOS/709.2189947.prod.iphone (3.24.0)", "Ios 13.1.3"),
        {},
        identity("outlook-mobile", "Outlook for iOS", "ios", "3.24.0", approved=True),
        id="Outlook for iOS: the build in parentheses, not the internal build",
    ),
    pytest.param(
        outlook("Outlook-iOS-Android/1.0", "Ios 17.6.1"),
        {},
        identity("outlook-mobile", "Outlook for iOS", "ios", "", approved=True),
        id="Outlook app id with Exchange's Outlook-iOS-Android/1.0: build unknown",
    ),
    pytest.param(
        outlook("Mozilla/5.0 (compatible; MSAL 1.0) PKeyAuth/1.0", "Ios 18.2.1"),
        {},
        identity("outlook-mobile", "Outlook for iOS", "ios", "", approved=True),
        id="Outlook token refresh with a generic user agent: build unknown",
    ),
    pytest.param(
        {**outlook("Outlook-iOS/4.2450.2 (iPhone15,3; iOS 17.6.1)", ""), "deviceDetail": None},
        {},
        identity("outlook-mobile", "Outlook for iOS", "ios", "4.2450.2", approved=True),
        id="Outlook without device OS: platform from the user agent",
    ),
    pytest.param(
        {
            **_EXO,
            "appId": IOS_ACCOUNTS_APP_ID,
            "appDisplayName": "iOS Accounts",
            "clientAppUsed": MODERN,
            "userAgent": "iOS/17.5.1 (21F90) accountsd/1.0",
            "deviceDetail": {"operatingSystem": "Ios 17.5.1"},
        },
        {},
        identity("native-mail", "iOS Mail", "ios", "17.5.1"),
        id="iOS Accounts app id is native iOS Mail",
    ),
    pytest.param(
        {
            **_EXO,
            "appId": IOS_ACCOUNTS_APP_ID,
            "appDisplayName": "iOS Accounts",
            "clientAppUsed": MODERN,
            "userAgent": "",
            "deviceDetail": None,
        },
        {},
        identity("native-mail", "iOS Mail", "ios"),
        id="iOS Accounts with no OS and no user agent is still on iOS",
    ),
    pytest.param(
        activesync("Android-Mail/2024.05.26.637963220.Release"),
        {},
        identity("native-mail", "Gmail", "android", "2024.05.26.637963220", legacy_auth=True),
        id="Gmail over Exchange ActiveSync",
    ),
    pytest.param(
        activesync("SAMSUNG-SM-S918B/101.1034"),
        {},
        identity("native-mail", "Samsung Email", "android", "101.1034", legacy_auth=True),
        id="Samsung Email over Exchange ActiveSync",
    ),
    pytest.param(
        activesync("Apple-iPhone15C3/2107.5", "Ios"),
        {},
        identity("native-mail", "iOS Mail", "ios", legacy_auth=True),
        id="native iOS Mail over Exchange ActiveSync (by user agent)",
    ),
    pytest.param(
        activesync("MailClient/7.1.2", "Android 14"),
        {},
        identity("native-mail", "Android mail app", "android", legacy_auth=True),
        id="another ActiveSync app on Android",
    ),
    pytest.param(
        {**activesync("Outlook-Android/2.0"), "clientAppUsed": "Other clients"},
        {},
        identity("unknown", "Outlook user agent (unverified app)", "android", "", legacy_auth=True),
        id="spoofed Outlook-Android/2.0 user agent without the Outlook app id",
    ),
    pytest.param(
        {
            **_EXO,
            "appId": OFFICE_APP_ID,
            "appDisplayName": "Microsoft Office",
            "clientAppUsed": MODERN,
            "userAgent": "Outlook-Android/4.2446.1 (SM-S918B; Android 14)",
            "deviceDetail": {"operatingSystem": "Android 14"},
        },
        {},
        identity("unknown", "Outlook user agent (unverified app)", "android", "4.2446.1"),
        id="Outlook user agent under another Microsoft app id is not Outlook Mobile",
    ),
    pytest.param(
        legacy("IMAP4"),
        {},
        identity("legacy-protocol", "IMAP4", "other", legacy_auth=True),
        id="IMAP4",
    ),
    pytest.param(
        legacy("POP3"),
        {},
        identity("legacy-protocol", "POP3", "other", legacy_auth=True),
        id="POP3",
    ),
    pytest.param(
        legacy("Authenticated SMTP", "BAV2ROPC"),
        {},
        identity("legacy-protocol", "Authenticated SMTP", "other", legacy_auth=True),
        id="Authenticated SMTP",
    ),
    pytest.param(
        legacy("Other clients", "python-requests/2.32.3"),
        {},
        identity("legacy-protocol", "Other clients", "other", legacy_auth=True),
        id="Other clients",
    ),
    pytest.param(
        {
            **legacy("Exchange Web Services", "Microsoft Office/16.0 (Windows NT 10.0)"),
            "deviceDetail": {"operatingSystem": "Windows 10"},
        },
        {},
        identity("legacy-protocol", "Exchange Web Services", "windows", legacy_auth=True),
        id="Exchange Web Services from Windows",
    ),
    pytest.param(
        teams(
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) TeamsMobile-iOS",
            "Ios 17.6.1",
        ),
        {},
        identity("office-mobile", "Microsoft Teams", "ios"),
        id="Teams app id on iOS",
    ),
    pytest.param(
        teams("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Teams/24295.605", "Windows 10"),
        {},
        identity("desktop-app", "Microsoft Teams", "windows"),
        id="Teams app id on Windows",
    ),
    pytest.param(
        {
            **_EXO,
            "appId": OFFICE_APP_ID,
            "appDisplayName": "Microsoft Office",
            "clientAppUsed": MODERN,
            "userAgent": "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.18227)",
            "deviceDetail": {"operatingSystem": "Windows 10"},
        },
        {},
        identity("desktop-app", "Microsoft Office", "windows"),
        id="desktop Outlook on Windows",
    ),
    pytest.param(
        {
            "clientAppUsed": "Browser",
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) Chrome/131.0.0.0",
            "deviceDetail": {"operatingSystem": "MacOs", "browser": "Chrome 131.0.0"},
        },
        {},
        identity("browser", "Chrome 131.0.0", "macos"),
        id="browser on macOS",
    ),
    pytest.param(
        {
            "clientAppUsed": "Browser",
            "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148",
            "deviceDetail": {"operatingSystem": "Ios 17.5", "browser": "Mobile Safari"},
        },
        {},
        identity("browser", "Mobile Safari", "ios"),
        id="browser on iPhone",
    ),
    pytest.param(
        _SERVICE_PRINCIPAL,
        {"category": "ServicePrincipalSignInLogs"},
        identity("service-principal", "backup-job", "other"),
        id="service principal",
    ),
    pytest.param(
        {**_SERVICE_PRINCIPAL, "servicePrincipalName": "", "appDisplayName": "func-invoice"},
        {"category": "ManagedIdentitySignInLogs"},
        identity("service-principal", "func-invoice", "other"),
        id="managed identity without a service principal name",
    ),
    pytest.param(
        {
            "appId": "",
            "appDisplayName": "",
            "clientAppUsed": "",
            "userAgent": "",
            "deviceDetail": None,
        },
        {},
        identity("unknown", "unknown", "other"),
        id="nothing to go on",
    ),
]


@pytest.mark.parametrize(("properties", "envelope", "expected"), TABLE)
def test_identity_table(
    properties: dict[str, Any], envelope: dict[str, Any], expected: ClientIdentity
) -> None:
    classifier = ClientClassifier(DEFAULT_APPROVED)
    assert classifier.identify(parsed(properties, envelope)) == expected


def test_approved_list_decides_approval_not_the_family() -> None:
    ios_mail = parsed(
        {
            **_EXO,
            "appId": IOS_ACCOUNTS_APP_ID.upper(),  # the parser lower-cases app ids
            "clientAppUsed": MODERN,
            "userAgent": "iOS/17.5.1 (21F90) accountsd/1.0",
            "deviceDetail": {"operatingSystem": "Ios 17.5.1"},
        }
    )
    client = ClientClassifier(frozenset({OUTLOOK_MOBILE_APP_ID, IOS_ACCOUNTS_APP_ID})).identify(
        ios_mail
    )
    assert client.family == "native-mail" and client.approved
    nothing_approved = ClientClassifier(frozenset()).identify(
        parsed(outlook("Outlook-iOS/4.2450.2 (iPhone15,3; iOS 17.6.1)", "Ios 17.6.1"))
    )
    assert nothing_approved.family == "outlook-mobile" and not nothing_approved.approved


def test_spoofed_user_agent_is_never_approved_even_from_an_approved_list() -> None:
    spoofed = parsed(activesync("Outlook-iOS/4.2450.2 (iPhone15,3; iOS 17.6.1)", "Ios"))
    client = ClientClassifier(DEFAULT_APPROVED).identify(spoofed)
    assert client.family != "outlook-mobile"
    assert not client.approved


def test_third_party_app_on_a_phone_is_not_office_mobile() -> None:
    third_party = parsed(
        {
            **_EXO,
            "appId": "5b7c9e31-2a4d-4f60-8e1b-c3d5a7f90e24",
            "appDisplayName": "Acme Mail",
            "clientAppUsed": MODERN,
            "userAgent": "AcmeMail/3.4 (iPhone15,3; iOS 17.6.1)",
            "deviceDetail": {"operatingSystem": "Ios 17.6.1"},
        }
    )
    client = ClientClassifier(DEFAULT_APPROVED).identify(third_party)
    assert client.mobile and not client.approved
    assert client.family != "office-mobile"


@pytest.mark.parametrize(
    ("os_name", "user_agent", "platform"),
    [
        ("Ios 17.6.1", "", "ios"),
        ("Android 14", "", "android"),
        ("Windows 10", "", "windows"),
        ("MacOs", "", "macos"),
        ("Linux", "", "linux"),
        ("Windows 10", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X)", "windows"),
        ("", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X)", "ios"),
        ("", "Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X)", "ios"),
        ("", "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/131.0", "android"),
        ("", "SAMSUNG-SM-S918B/101.1034", "android"),
        ("", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)", "macos"),
        ("", "Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "windows"),
        ("", "Windows-AzureAD-Authentication-Provider/1.0", "windows"),
        ("", "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0", "linux"),
        ("", "okhttp/4.9.3 BIOS", "other"),  # "ios" inside a word is not iOS
        ("", "BAV2ROPC", "other"),
        ("", "", "other"),
        pytest.param(
            "",
            "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 Chrome/131.0",
            "linux",
            id="ChromeOS user agent",
        ),
    ],
)
def test_platform_from_device_os_then_user_agent(
    os_name: str, user_agent: str, platform: str
) -> None:
    assert platform_of(os_name, user_agent) == platform


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("4.2450.2", (4, 2450, 2)),
        ("4.2400", (4, 2400)),
        ("2024.05.26.637963220", (2024, 5, 26, 637963220)),
        ("", ()),
    ],
)
def test_version_tuple(version: str, expected: tuple[int, ...]) -> None:
    assert version_tuple(version) == expected


def test_version_tuples_order_like_outlook_builds() -> None:
    minimum = version_tuple("4.2400")
    assert version_tuple("4.2310.1") < minimum
    assert version_tuple("4.2305.0") < minimum
    assert version_tuple("4.2400.0") >= minimum
    assert version_tuple("4.2450.2") > minimum
    assert version_tuple("4.2502.0") > version_tuple("4.2450.2")
    assert version_tuple("10.0000") > minimum  # numeric, not string, comparison


@pytest.mark.parametrize(
    ("user_agent", "build"),
    [
        # the token after Outlook-iOS/ or Outlook-Android/ is the build when it is dotted numbers
        ("Outlook-iOS/4.2450.2 (iPhone15,3; iOS 17.6.1)", "4.2450.2"),
        ("Outlook-Android/4.2446.1 (SM-S918B; Android 14)", "4.2446.1"),
        ("Outlook-iOS/1.0.3", "1.0.3"),
        ("Outlook-Android/2.1.4", "2.1.4"),
        ("Outlook-iOS/3.49.0", "3.49.0"),
        ("Outlook-iOS/4.2450", "4.2450"),
        ("Outlook-iOS/2.0.0", "2.0.0"),
        ("outlook-android/4.2504.1", "4.2504.1"),
        (
            "Outlook-Android/4.2415.1 (com.microsoft.office.outlook; build:42415818; Android 12)",
            "4.2415.1",
        ),
        (
            "Mozilla/5.0 (Linux; Android 10; SM-G973F) AppleWebKit/537.36 (KHTML, like Gecko) "
            "Version/4.0 Chrome/89.0.4389.105 Mobile Safari/537.36 Outlook-Android/4.2118.0",
            "4.2118.0",
        ),
        # iOS: an internal build, then the app's build in parentheses
        ("Outlook-iOS/709.2189947.prod.iphone (3.24.0)", "3.24.0"),
        ("Outlook-iOS/719.3623017.prod.iphone (4.20.0)", "4.20.0"),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Mobile/15E148 Outlook-iOS/749.4.prod.iphone (4.2534.0)",
            "4.2534.0",
        ),
        # the 2.0 protocol string with the build beside it
        ("Outlook-Android/2.0 com.microsoft.office.outlook/4.2403.0", "4.2403.0"),
        (
            "Outlook-iOS/2.0 (iPhone; iOS 17.4; Scale/3.00; 428x926; "
            "com.microsoft.Office.Outlook 4.2418.0)",
            "4.2418.0",
        ),
        ("Outlook-iOS/2.0 (4.2450.2)", "4.2450.2"),
        # version unknown
        ("Outlook-iOS/2.0", ""),
        ("Outlook-Android/2.0", ""),
        ("Outlook-iOS-Android/1.0", ""),
        ("Outlook-iOS/709.2189947.prod.iphone", ""),
        ("Outlook-iOS/", ""),
        ("Outlook-iOS/4", ""),
        ("Mozilla/5.0 (compatible; MSAL 1.0) PKeyAuth/1.0", ""),
        ("", ""),
        # no false builds: the OS, other products, look-alike names
        ("Outlook-iOS/2.0 (iPhone; iOS 17.4)", ""),
        ("Outlook-Android/2.0 (SM-G991B; Android 13)", ""),
        ("Outlook-Android/2.0 okhttp/3.12.0", ""),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) Outlook-iOS/2.0", ""),
        ("Outlook-iOS/709.2189947.prod.iphone CFNetwork/1.0.3", ""),
        ("NotOutlook-iOS/1.0.3", ""),
        ("Outlook-iOS-Android/1.0.3", ""),
        ("Outlook-Android/2.0 com.microsoft.office.outlookx/1.0.3", ""),
    ],
)
def test_outlook_build_from_the_user_agent(user_agent: str, build: str) -> None:
    assert outlook_build(user_agent) == build


def test_outlook_builds_before_the_yymm_scheme_compare_numerically() -> None:
    minimum = version_tuple("4.2400")
    assert version_tuple("1.0.3") < version_tuple("1.0.4") < minimum
    assert version_tuple("2.1.4") < version_tuple("2.1.10")  # "2.1.4" > "2.1.10" as strings
    assert version_tuple("3.49.0") > version_tuple("3.5")  # "3.49.0" < "3.5" as strings
    assert version_tuple("3.49.0") < minimum
    assert version_tuple("4.20.0") < minimum  # January 2020, before the yymm builds


# The memo: a tenant has few distinct clients, so answers are cached per classifier.

_IOS_MAIL: dict[str, Any] = {
    **_EXO,
    "appId": IOS_ACCOUNTS_APP_ID,
    "appDisplayName": "iOS Accounts",
    "clientAppUsed": MODERN,
    "userAgent": "iOS/17.5.1 (21F90) accountsd/1.0",
    "deviceDetail": {"operatingSystem": "Ios 17.5.1"},
}


def test_memo_gives_the_same_answer_for_the_same_client() -> None:
    classifier = ClientClassifier(DEFAULT_APPROVED)
    first = classifier.identify(parsed({**_IOS_MAIL, "id": "a"}))
    again = classifier.identify(
        parsed(
            {
                **_IOS_MAIL,
                "id": "b",
                "userPrincipalName": "bob@contoso.com",
                "createdDateTime": "2026-01-16T08:00:00Z",
            }
        )
    )
    assert again == first == ClientClassifier(DEFAULT_APPROVED).identify(parsed(_IOS_MAIL))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        pytest.param(
            ({"clientAppUsed": "Browser", "deviceDetail": {"browser": "Edge 131.0"}}, {}),
            ({"clientAppUsed": "Browser", "deviceDetail": {"browser": "Firefox 133.0"}}, {}),
            id="browser name",
        ),
        pytest.param(
            ({"clientAppUsed": "", "appDisplayName": "App One", "deviceDetail": None}, {}),
            ({"clientAppUsed": "", "appDisplayName": "App Two", "deviceDetail": None}, {}),
            id="app display name",
        ),
        pytest.param(
            (_SERVICE_PRINCIPAL, {"category": "ServicePrincipalSignInLogs"}),
            (
                {**_SERVICE_PRINCIPAL, "servicePrincipalName": "hr-sync"},
                {"category": "ServicePrincipalSignInLogs"},
            ),
            id="service principal name",
        ),
        pytest.param(
            (_SERVICE_PRINCIPAL, {"category": "ServicePrincipalSignInLogs"}),
            (_SERVICE_PRINCIPAL, {"category": "SignInLogs"}),
            id="category",
        ),
        pytest.param(
            (teams("TeamsMobile", "Ios 17.6.1"), {}),
            (teams("TeamsMobile", "Windows 10"), {}),
            id="device OS",
        ),
        pytest.param(
            (activesync("Android-Mail/2024.05.26.637963220.Release"), {}),
            (activesync("Android-Mail/2024.06.02.641234567.Release"), {}),
            id="user agent",
        ),
        pytest.param(
            (legacy("IMAP4"), {}),
            (legacy("POP3"), {}),
            id="client app used",
        ),
        pytest.param(
            (_IOS_MAIL, {}),
            ({**_IOS_MAIL, "appId": OUTLOOK_MOBILE_APP_ID}, {}),
            id="app id",
        ),
    ],
)
def test_memo_never_conflates_clients_that_differ_in_a_field_the_table_reads(
    first: tuple[dict[str, Any], dict[str, Any]], second: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    shared = ClientClassifier(DEFAULT_APPROVED)
    shared.identify(parsed(*first))
    fresh = ClientClassifier(DEFAULT_APPROVED).identify(parsed(*second))
    assert shared.identify(parsed(*second)) == fresh
    assert fresh != ClientClassifier(DEFAULT_APPROVED).identify(parsed(*first))


def test_memo_does_not_leak_approval_across_classifiers() -> None:
    strict = ClientClassifier(DEFAULT_APPROVED)
    lenient = ClientClassifier(frozenset({OUTLOOK_MOBILE_APP_ID, IOS_ACCOUNTS_APP_ID}))
    ios_mail = parsed(_IOS_MAIL)
    assert not strict.identify(ios_mail).approved
    assert lenient.identify(ios_mail).approved
    assert not strict.identify(ios_mail).approved
    # and in the other order, on fresh classifiers
    lenient, strict = (
        ClientClassifier(frozenset({OUTLOOK_MOBILE_APP_ID, IOS_ACCOUNTS_APP_ID})),
        ClientClassifier(DEFAULT_APPROVED),
    )
    assert lenient.identify(ios_mail).approved
    assert not strict.identify(ios_mail).approved


def test_memo_stays_correct_when_it_is_full() -> None:
    classifier = ClientClassifier(DEFAULT_APPROVED, cache_size=2)
    clients = [parsed(legacy(app)) for app in ("IMAP4", "POP3", "Authenticated SMTP")]
    clients.append(parsed(_IOS_MAIL))
    for _ in range(2):
        names = [classifier.identify(s).name for s in clients]
        assert names == ["IMAP4", "POP3", "Authenticated SMTP", "iOS Mail"]
