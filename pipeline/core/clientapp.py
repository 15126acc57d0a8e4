"""Which client app a sign-in came from: family, name, platform, version, legacy auth.

Decided from several signals in one table (app id, ``clientAppUsed``, user agent, device OS),
first matching row wins. Identity that matters for policy (is this *really* Outlook Mobile?)
rests on the app id Entra issued the token to; a user agent only names clients that have no
app id of their own (native mail over ActiveSync), because credential-stuffing tools send
``Outlook-Android/2.0`` freely.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.core.records import SignIn

OUTLOOK_MOBILE_APP_ID = "27922004-5251-4030-b22d-91ecd9a37ea4"
IOS_ACCOUNTS_APP_ID = "f8d98a96-0999-43f5-8af3-69971c7bb423"
EXCHANGE_ONLINE_RESOURCE_ID = "00000002-0000-0ff1-ce00-000000000000"
MICROSOFT_GRAPH_RESOURCE_ID = "00000003-0000-0000-c000-000000000000"
OFFICEHOME_APP_ID = "4765445b-32c6-49b0-83e6-1d93765276ca"
_MAIL_AND_GRAPH_IDS = frozenset({EXCHANGE_ONLINE_RESOURCE_ID, MICROSOFT_GRAPH_RESOURCE_ID})
_MAIL_AND_GRAPH_NAMES = frozenset({"office 365 exchange online", "microsoft graph"})


def reaches_mail_or_graph(signin: SignIn) -> bool:
    """The sign-in's token is for Exchange Online or Microsoft Graph (mail, files, the
    directory): what a stolen token is wanted for. By name when an export lacks the id."""
    if signin.resource_id:
        return signin.resource_id in _MAIL_AND_GRAPH_IDS
    return signin.resource_name.lower() in _MAIL_AND_GRAPH_NAMES


# clientAppUsed values that mean basic (legacy) authentication, lower-cased.
LEGACY_CLIENT_APPS = frozenset(
    {
        "exchange activesync",
        "imap4",
        "imap",
        "pop3",
        "pop",
        "authenticated smtp",
        "smtp",
        "exchange web services",
        "mapi over http",
        "outlook anywhere (rpc over http)",
        "offline address book",
        "autodiscover",
        "other clients",
        "reporting web services",
        "exchange online powershell",
        "universal outlook",
    }
)

MOBILE_PLATFORMS = frozenset({"ios", "android"})

# Microsoft first-party apps that are not mail clients; on a phone they are "office-mobile".
_OFFICE_APP_IDS = {
    "1fec8e78-bce4-4aaf-ab1b-5451cc387264": "Microsoft Teams",
    "af124e86-4e96-495a-b70a-90f90ab96707": "OneDrive",
    "ab9b8c07-8f02-4f72-87fa-80105867a763": "OneDrive SyncEngine",
    "ecd6b820-32c2-49b6-98a6-444530e5a77a": "Microsoft Edge",
    "e9c51622-460d-4d3d-952d-966a5b1da34c": "Microsoft Edge",
    "d3590ed6-52b3-4102-aeff-aad2292ab01c": "Microsoft Office",
    "4813382a-8fa7-425e-ab75-3b753aab3abb": "Microsoft Authenticator",
    "0ec893e0-5785-4de6-99da-4ed124e5296c": "Office UWP PWA",
    "4e291c71-d680-4d0e-9640-0a3358e31177": "PowerApps",
    "00000006-0000-0ff1-ce00-000000000000": "Microsoft Office 365 Portal",
}

MICROSOFT_APP_IDS = frozenset(
    {
        *_OFFICE_APP_IDS,
        OUTLOOK_MOBILE_APP_ID,
        OFFICEHOME_APP_ID,
        EXCHANGE_ONLINE_RESOURCE_ID,
        MICROSOFT_GRAPH_RESOURCE_ID,
        "00000003-0000-0ff1-ce00-000000000000",  # Office 365 SharePoint Online
        "9199bf20-a13f-4107-85dc-02114787ef48",  # One Outlook Web
        "5e3ce6c0-2b1f-4285-8d4b-75ee78787346",  # Microsoft Teams Web Client
        "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",  # Azure Portal
        "29d9ed98-a469-4536-ade2-f981bc1d605e",  # Microsoft Authentication Broker
    }
)
"""Microsoft's own apps (first-party), whose services may sign in from Microsoft's network."""

_PLATFORM_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bios|iphone|ipad|ipod", re.I), "ios"),
    (re.compile(r"android|samsung", re.I), "android"),
    (re.compile(r"windows", re.I), "windows"),
    (re.compile(r"mac ?os|macintosh|mac os x|darwin", re.I), "macos"),
    (re.compile(r"linux|ubuntu|debian|fedora|centos|chrome ?os|\bcros\b", re.I), "linux"),
)


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    family: str
    name: str
    platform: str
    version: str
    legacy_auth: bool
    mobile: bool
    approved: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "family": self.family,
            "name": self.name,
            "platform": self.platform,
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class _Signals:
    """The lower-cased inputs a row looks at; computed once per distinct client."""

    app_id: str
    client_app: str
    user_agent: str
    platform: str
    workload: bool


@dataclass(frozen=True, slots=True)
class ClientRow:
    """One row of the identity table.

    ``when`` picks the row. ``name`` may be computed from the signals and the sign-in, and
    ``family`` from the platform (office apps are ``office-mobile`` on a phone and
    ``desktop-app`` elsewhere). ``version`` reads the version from the user agent ("" when it
    names none); ``platform`` is used when the device and user agent name none.
    """

    name: str | Callable[[_Signals, SignIn], str]
    family: str | Callable[[str], str]
    when: Callable[[_Signals, SignIn], bool]
    version: Callable[[str], str] | None = None
    platform: str = ""


def _mobile_or_desktop(platform: str) -> str:
    return "office-mobile" if platform in MOBILE_PLATFORMS else "desktop-app"


def _third_party(platform: str) -> str:
    """An app id we do not know: on a phone it may be any mail app, so it stays unknown."""
    return "unknown" if platform in MOBILE_PLATFORMS else "desktop-app"


def _ua(pattern: str) -> Callable[[_Signals, SignIn], bool]:
    """Match a non-browser client by its user agent (a phone's browser may name its maker)."""
    regex = re.compile(pattern, re.I)
    return lambda s, _: s.client_app != "browser" and regex.search(s.user_agent) is not None


def _outlook_name(signals: _Signals, _: SignIn) -> str:
    return {"ios": "Outlook for iOS", "android": "Outlook for Android"}.get(
        signals.platform, "Outlook Mobile"
    )


def _app_name(_: _Signals, signin: SignIn) -> str:
    return signin.app_name or "unknown"


def _first_group(pattern: str) -> Callable[[str], str]:
    """A version reader: the first group of ``pattern`` in the user agent, or ""."""
    regex = re.compile(pattern, re.I)

    def read(user_agent: str) -> str:
        match = regex.search(user_agent)
        return match.group(1) if match else ""

    return read


# Outlook for iOS and Android name themselves ``Outlook-iOS/<token>`` / ``Outlook-Android/<token>``
# (not inside another word, so ``Outlook-iOS-Android/1.0``, Exchange Online's sync service, is
# no build). The token is the app's build when it is all dotted numbers: 4.2450.2, 4.2450, and
# from before the 4.yymm scheme 3.49.0, 2.1.4, 1.0.3. Two tokens are not builds:
#   * the bare ``2.0`` is the protocol string the apps (and credential-stuffing tools) send;
#   * older iOS builds send an internal build, ``709.2189947.prod.iphone``.
# Then the build is read only where the apps put it: alone in the parentheses right after the
# token (``Outlook-iOS/709.2189947.prod.iphone (3.24.0)``), or after the app's bundle id
# (``Outlook-Android/2.0 com.microsoft.office.outlook/4.2403.0``, ``Outlook-iOS/2.0 (iPhone;
# iOS 17.4; com.microsoft.Office.Outlook 4.2418.0)``). Nothing else counts: ``iOS 17.4`` in
# the parentheses is the OS, and a version after another product (``okhttp/3.12.0``) is that
# product's. No build found is "version unknown".
_OUTLOOK_TOKEN = re.compile(r"(?<![\w-])outlook-(?:ios|android)/([^\s;,()]*)", re.I)
_OUTLOOK_PROTOCOL = "2.0"
_DOTTED = re.compile(r"\d+(?:\.\d+)+")
_BUILD_IN_PARENS = re.compile(r"\s*\(\s*(\d+(?:\.\d+)+)\s*\)")
_BUILD_AFTER_BUNDLE_ID = re.compile(
    r"\bcom\.microsoft\.office\.outlook[/ ](\d+(?:\.\d+)+)(?![\w.])", re.I
)


def outlook_build(user_agent: str) -> str:
    """The Outlook for iOS/Android build in ``user_agent``, or "" when it names none."""
    token = _OUTLOOK_TOKEN.search(user_agent)
    if token is None:
        return ""
    build = token.group(1)
    if _DOTTED.fullmatch(build) and build != _OUTLOOK_PROTOCOL:
        return build
    rest = user_agent[token.end() :]
    found = _BUILD_IN_PARENS.match(rest) or _BUILD_AFTER_BUNDLE_ID.search(rest)
    return found.group(1) if found else ""


TABLE: tuple[ClientRow, ...] = (
    ClientRow(
        lambda _, si: si.sp_name or si.app_name or "service principal",
        "service-principal",
        lambda s, _: s.workload,
    ),
    ClientRow(
        _outlook_name,
        "outlook-mobile",
        lambda s, _: s.app_id == OUTLOOK_MOBILE_APP_ID,
        version=outlook_build,
    ),
    ClientRow(
        "iOS Mail",
        "native-mail",
        lambda s, _: s.app_id == IOS_ACCOUNTS_APP_ID,
        version=_first_group(r"\bios/(\d+(?:\.\d+)*)"),
        platform="ios",
    ),
    ClientRow(
        "Gmail",
        "native-mail",
        _ua(r"^android-mail/|\bgmail\b"),
        version=_first_group(r"android-mail/(\d+(?:\.\d+)*)"),
        platform="android",
    ),
    ClientRow(
        "Samsung Email",
        "native-mail",
        _ua(r"samsung-|samsungemail|samsung email"),
        version=_first_group(r"samsung-[\w-]+/(\d+(?:\.\d+)*)"),
        platform="android",
    ),
    ClientRow(
        "iOS Mail",
        "native-mail",
        _ua(r"apple-iphone|apple-ipad|accountsd|dataaccessd|exchangeservicesclient|^ios/"),
        version=_first_group(r"\bios/(\d+(?:\.\d+)*)"),
        platform="ios",
    ),
    ClientRow(
        "Android mail app",
        "native-mail",
        lambda s, _: s.client_app == "exchange activesync" and s.platform == "android",
        platform="android",
    ),
    ClientRow(
        "Outlook user agent (unverified app)",
        "unknown",
        _ua(r"outlook-(ios|android)/"),
        version=outlook_build,
    ),
    ClientRow(
        lambda _, si: si.client_app_used,
        "legacy-protocol",
        lambda s, _: s.client_app in LEGACY_CLIENT_APPS,
    ),
    ClientRow(
        lambda s, _: _OFFICE_APP_IDS[s.app_id],
        _mobile_or_desktop,
        lambda s, _: s.app_id in _OFFICE_APP_IDS,
    ),
    ClientRow(
        lambda _, si: si.device.browser or "browser",
        "browser",
        lambda s, _: s.client_app == "browser",
    ),
    ClientRow(
        _app_name,
        _third_party,
        lambda s, _: s.client_app == "mobile apps and desktop clients",
    ),
    ClientRow(_app_name, "unknown", lambda s, _: True),
)


def platform_of(os_name: str, user_agent: str) -> str:
    """The device's own OS wins; the user agent is the fallback."""
    for text in (os_name, user_agent):
        if text:
            for pattern, platform in _PLATFORM_PATTERNS:
                if pattern.search(text):
                    return platform
    return "other"


class ClientClassifier:
    """Identifies clients for one policy; memoizes, because a tenant has few distinct clients."""

    def __init__(self, approved_app_ids: frozenset[str], cache_size: int = 65536) -> None:
        self._approved = approved_app_ids
        self._cache: dict[tuple[object, ...], ClientIdentity] = {}
        self._cache_size = cache_size

    def identify(self, signin: SignIn) -> ClientIdentity:
        key = (
            signin.category,
            signin.app_id,
            signin.client_app_used,
            signin.user_agent,
            signin.device.os,
            signin.device.browser,
            signin.app_name,
            signin.sp_name,
        )
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            found = self._cache[key] = self._classify(signin)
        return found

    def _classify(self, signin: SignIn) -> ClientIdentity:
        client_app = signin.client_app_used.lower()
        signals = _Signals(
            app_id=signin.app_id,
            client_app=client_app,
            user_agent=signin.user_agent,
            platform=platform_of(signin.device.os, signin.user_agent),
            workload=signin.is_workload,
        )
        row = next(r for r in TABLE if r.when(signals, signin))
        platform = signals.platform if signals.platform != "other" else row.platform or "other"
        family = row.family(platform) if callable(row.family) else row.family
        return ClientIdentity(
            family=family,
            name=row.name(signals, signin) if callable(row.name) else row.name,
            platform=platform,
            version=row.version(signin.user_agent) if row.version else "",
            legacy_auth=client_app in LEGACY_CLIENT_APPS,
            mobile=platform in MOBILE_PLATFORMS,
            approved=signin.app_id in self._approved,
        )


@functools.lru_cache(maxsize=4096)
def version_tuple(version: str) -> tuple[int, ...]:
    """``"4.2450.2"`` → ``(4, 2450, 2)``; comparable with a policy minimum like ``"4.2400"``.

    Trailing zeros are dropped, so ``4.2400`` and ``4.2400.0`` are the same build.
    """
    parts = [int(part) for part in version.split(".") if part.isdigit()]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)
