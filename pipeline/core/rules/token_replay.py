"""token-replay: one session used from a second network, or an AiTM kit's sign-in.

(a) Entra gives every sign-in session an id (``sessionId``) that its token refreshes carry.
A session seen in successful sign-ins of one user from two countries, or from a second
autonomous system that is a hosting provider (where AiTM proxies and stolen-cookie replays
run), within ``window_minutes``, was most likely carried off. What does not count: an empty
country or AS (unknown is not a change), the IPv4 and IPv6 addresses of one network (one
AS), Wi-Fi then a mobile carrier in one country (a second AS, but not a hosting one), and
Microsoft's own network (AS 8075) when it serves a Microsoft app (Exchange Online and other
services sign in on the user's behalf from their datacenters).

(b) A single successful sign-in by the OfficeHome app to Exchange Online or Microsoft Graph
whose user agent is a script runtime (axios, node-fetch, undici, python-requests,
Go-http-client): the signature of the 2024-25 AiTM kits (Tycoon 2FA, Mamba 2FA), which
replay the victim's browser sign-in from their own code.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pipeline.core.clientapp import MICROSOFT_APP_IDS, OFFICEHOME_APP_ID, reaches_mail_or_graph
from pipeline.core.outcomes import Outcome
from pipeline.core.rules.windows import (
    Hit,
    Scenario,
    Sighting,
    StatefulRule,
    StatefulSettings,
    admit,
)

MICROSOFT_ASN = 8075
SCRIPT_AGENTS = ("axios", "node-fetch", "undici", "python-requests", "go-http-client")
"""Lower-case tokens of HTTP libraries' default user agents."""
_MAX_ENTRIES = 50
"""Session sightings kept per user: distinct (session, country, AS) within the window, each
[time, session id, country, AS, sign-in id, address] (about 120 bytes)."""
_SUCCESS = Outcome.SUCCESS.value
_REFRESH = 300.0
"""A known sighting's time is moved on at most every 5 minutes (the window is an hour): a
session refreshing its tokens then leaves the state as it was."""

HOSTING_ASNS = frozenset(
    {
        14061,  # DigitalOcean
        16276,  # OVH
        24940,  # Hetzner
        9009,  # M247: VPN exits
        20473,  # Vultr (Choopa)
        63949,  # Linode (Akamai)
        51167,  # Contabo
        36352,  # ColoCrossing
        212238,  # Datacamp (CDN77): VPN exits
        16509,  # Amazon AWS
        14618,  # Amazon AWS
        396982,  # Google Cloud
    }
)
"""Hosting and VPN networks where phishing proxies and replays run and users seldom sit.
Microsoft's AS 8075 is left out: its services sign in on users' behalf."""


class TokenReplaySettings(StatefulSettings):
    window_minutes: float = Field(60, gt=0)
    hosting_asns: frozenset[int] = HOSTING_ASNS
    """A session's second autonomous system counts when it is one of these."""


def wants(obs: Any) -> bool:
    return bool(obs.outcome == _SUCCESS)


def step(
    state: Any, seen: Sighting, settings: TokenReplaySettings, newest: float
) -> tuple[Any, Hit | None]:
    s, obs = seen.signin, seen.obs
    hit = _aitm(seen)
    if not s.session_id or (s.asn == MICROSOFT_ASN and s.app_id in MICROSOFT_APP_IDS):
        return state, hit
    window = settings.window_minutes * 60
    entry = [obs.time, s.session_id, s.location.country, s.asn, obs.id, s.ip]
    entries: list[list[Any]] = [list(e) for e in (state or {}).get("sessions", [])]
    same = [e for e in entries if e[1:4] == entry[1:4]]
    if same:  # this session on this network is known: keep it fresh, nothing new
        if obs.time - same[0][0] < _REFRESH:
            return state, hit  # unchanged, so not written again
        same[0][0] = obs.time
        entries.sort(key=lambda e: e[0])
        return {"sessions": entries}, hit
    admitted = admit(entries, entry, newest, window + settings.lateness_minutes * 60)
    if admitted is None:
        return state, hit
    state = {"sessions": admitted[-_MAX_ENTRIES:]}
    others = [
        e
        for e in admitted
        if e[1] == s.session_id and e is not entry and abs(e[0] - obs.time) <= window
    ]
    moved = [e for e in others if _second_network(e, entry, settings.hosting_asns)]
    if not moved:
        return state, hit
    first = min(moved, key=lambda e: e[0])
    earlier, later = sorted((first, entry), key=lambda e: e[0])
    summary = (
        f"session {s.session_id[:8]}... used from {_network(earlier)} and, "
        f"{abs(later[0] - earlier[0]) / 60:.0f} minutes apart, from {_network(later)}"
    )
    evidence: dict[str, object] = {
        "pattern": "session-replay",
        "session_id": s.session_id,
        "from": {
            "ip": earlier[5],
            "country": earlier[2],
            "asn": earlier[3],
            "signin_id": earlier[4],
        },
        "to": {"ip": later[5], "country": later[2], "asn": later[3], "signin_id": later[4]},
        "window_minutes": settings.window_minutes,
        "app_name": s.app_name,
        "user_agent": s.user_agent,
    }
    ids = (earlier[4], later[4])
    return state, Hit("high", summary, evidence, ids, ids[0], obs)


def _second_network(a: list[Any], b: list[Any], hosting: frozenset[int]) -> bool:
    """Two sightings of one session on networks that one user does not switch between."""
    if a[2] and b[2] and a[2] != b[2]:
        return True
    later = a if a[0] > b[0] else b
    return bool(a[3] and b[3] and a[3] != b[3] and later[3] in hosting)


def _network(entry: list[Any]) -> str:
    return " ".join(p for p in (entry[2], f"AS{entry[3]}" if entry[3] else "") if p) or "?"


def _aitm(seen: Sighting) -> Hit | None:
    s = seen.signin
    if s.app_id != OFFICEHOME_APP_ID or not reaches_mail_or_graph(s):
        return None
    agent = s.user_agent.lower()
    runtime = next((token for token in SCRIPT_AGENTS if token in agent), None)
    if runtime is None:
        return None
    summary = f"OfficeHome signed in to {s.resource_name or s.resource_id} from a {runtime} script"
    evidence: dict[str, object] = {
        "pattern": "aitm-kit",
        "user_agent": s.user_agent,
        "app_name": s.app_name,
        "app_id": s.app_id,
        "resource": s.resource_name or s.resource_id,
        "session_id": s.session_id,
    }
    return Hit("high", summary, evidence, (seen.obs.id,), seen.obs.id, seen.obs)


_SESSION = "7f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f"
_HOME = {
    "sessionId": _SESSION,
    "ipAddress": "198.51.100.23",
    "autonomousSystemNumber": 7922,
    "location": {"city": "Seattle", "countryOrRegion": "US"},
}


def _moved(minute: float, **patch: Any) -> tuple[float, dict[str, Any]]:
    return (minute, {**_HOME, "category": "NonInteractiveUserSignInLogs", **patch})


_AITM = {
    "appId": OFFICEHOME_APP_ID,
    "resourceId": "00000003-0000-0000-c000-000000000000",
    "resourceDisplayName": "Microsoft Graph",
    "userAgent": "axios/1.7.7",
}

RULE = StatefulRule(
    id="token-replay",
    title="Session token replayed (AiTM)",
    severity="high",
    mitre=("T1550.001", "T1557"),
    description=(
        "One sessionId in successful sign-ins of one user from two countries, or from a "
        "second autonomous system on `hosting_asns`, within `window_minutes` (default 60); "
        "or a successful OfficeHome sign-in to Exchange Online or Microsoft Graph from a "
        "script runtime's user agent (axios, node-fetch, undici, python-requests, "
        "Go-http-client), the AiTM kits' signature."
    ),
    next_steps=(
        "Compare the two sign-ins (evidence from / to): a user on a VPN that exits in another "
        "country is the usual innocent reason.",
        "If not the user: revoke the user's sessions at once (the stolen cookie or refresh "
        "token dies with them), reset the password and check MFA methods, inbox rules and "
        "app consents added since.",
        "Look for the phishing mail that led to the first sign-in and block its sender and "
        "URL; require token protection or compliant devices for the apps concerned.",
    ),
    keyed_by="user",
    wants=wants,
    step=step,
    settings=TokenReplaySettings,
    sees_signin=True,
    scenarios=(
        Scenario(
            "one session from the US, then the Netherlands",
            1,
            (
                (0, _HOME),
                _moved(
                    20,
                    ipAddress="145.53.77.61",
                    autonomousSystemNumber=1136,
                    location={"city": "Amsterdam", "countryOrRegion": "NL"},
                ),
            ),
            severity="high",
        ),
        Scenario(
            "one session, then a hosting provider in the same country",
            1,
            ((0, _HOME), _moved(5, ipAddress="167.99.1.2", autonomousSystemNumber=14061)),
        ),
        Scenario(
            "IPv4 then IPv6 of one network",
            0,
            ((0, _HOME), _moved(3, ipAddress="2001:db8:85a3::8a2e:370:7334")),
        ),
        Scenario(
            "Wi-Fi then a mobile carrier in one country",
            0,
            ((0, _HOME), _moved(10, ipAddress="172.56.1.9", autonomousSystemNumber=21928)),
        ),
        Scenario(
            "Exchange Online signing in from Microsoft's network abroad",
            0,
            (
                (0, _HOME),
                _moved(
                    8,
                    appId="00000002-0000-0ff1-ce00-000000000000",
                    ipAddress="40.101.1.1",
                    autonomousSystemNumber=MICROSOFT_ASN,
                    location={"city": "Dublin", "countryOrRegion": "IE"},
                ),
            ),
        ),
        Scenario(
            "unknown country and AS are no change",
            0,
            ((0, _HOME), _moved(4, autonomousSystemNumber=0, location={"countryOrRegion": ""})),
        ),
        Scenario(
            "a failed sign-in from abroad is not a replay",
            0,
            (
                (0, _HOME),
                _moved(6, location={"countryOrRegion": "NL"}, status={"errorCode": 50126}),
            ),
        ),
        Scenario(
            "two countries two hours apart: outside the window",
            0,
            ((0, _HOME), _moved(120, location={"countryOrRegion": "NL"})),
        ),
        Scenario("AiTM kit: OfficeHome to Graph from axios", 1, ((0, _AITM),), severity="high"),
        Scenario(
            "OfficeHome to Graph from a browser",
            0,
            ((0, {**_AITM, "userAgent": "Mozilla/5.0 (Windows NT 10.0) Chrome/131.0"}),),
        ),
    ),
)
