"""The mail-client inventory: per user, every mail client the sign-ins show, and whether it
complies with the policy.

Exchange lists one device partnership for all of a mailbox's Outlook for iOS/Android
devices, with no build; the sign-in stream names each client and build. A client is kept
per user as one compact row: Outlook Mobile by platform and build (each build its own row:
the build is what the PIN policy depends on), every other client by family, name and
platform (the newest version seen is kept on the row). Native iOS Mail, Gmail and Samsung
Email, each legacy protocol, desktop Outlook and browsers on Outlook on the web all count:
anything reaching a mail resource of the policy, and the mail-only families wherever they
went.

A pure step over a small JSON-ready state per user, like the stateful rules' states: a dict
in ``scan`` and ``inventory``, a changelogged table in the worker. A user keeps at most
``MAX_CLIENTS`` rows (the least recently seen goes first), under 1 KB.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipeline.core.clientapp import MOBILE_PLATFORMS, version_tuple
from pipeline.core.incidents import States
from pipeline.core.state import Keyed
from pipeline.core.timeparse import format_time

if TYPE_CHECKING:
    from pipeline.core.clientapp import ClientIdentity
    from pipeline.core.enrich import Enriched
    from pipeline.core.policy import Policy

State = dict[str, Any]
"""A user's inventory: ``{"user": UPN, "clients": [row, ...]}``, rows as in ``_ROW``."""

MAX_CLIENTS = 8
MAIL_FAMILIES = frozenset({"outlook-mobile", "native-mail", "legacy-protocol"})
"""Families that are mail clients wherever they sign in to."""
_ROW = ("family", "name", "platform", "version", "first", "last", "count", "ca", "issue")
"""A stored row's fields; times are epoch seconds, ``issue`` is "" when compliant."""
FIELDS = (
    *("user", "user_id", *_ROW[:4], "first_seen", "last_seen", "count"),
    *("last_ca_result", "compliant", "issue"),
)
"""The columns of an inventory row (CSV header, JSON keys)."""


def is_mail_client(e: Enriched, policy: Policy) -> bool:
    s = e.signin
    if s.is_workload or not s.subject_id:
        return False
    return e.client.family in MAIL_FAMILIES or s.resource_id in policy.mail_resources


def issue(client: ClientIdentity, policy: Policy) -> str:
    """Why the client does not comply with the policy, "" when it does: a legacy protocol
    (no MFA possible), a phone client not on the approved list, or an Outlook Mobile build
    older than the policy minimum (an unknown build is not held against it)."""
    if client.legacy_auth:
        return "legacy protocol"
    if client.mobile and not client.approved and client.family != "office-mobile":
        return "not an approved client app"
    if client.family == "outlook-mobile" and client.version and client.platform in MOBILE_PLATFORMS:
        minimum = getattr(policy.outlook_minimum, client.platform)
        if version_tuple(client.version) < version_tuple(minimum):
            return f"build older than {minimum}"
    return ""


def step(state: State | None, e: Enriched, policy: Policy) -> State | None:
    """The user's inventory after sign-in ``e``; None when ``e`` is no mail client's and
    nothing is to be written. ``state`` is not modified."""
    if not is_mail_client(e, policy):
        return None
    s, c = e.signin, e.client
    t = s.time.timestamp()
    version = c.version if c.family == "outlook-mobile" else ""
    rows = [list(r) for r in (state or {}).get("clients", ())]
    row = next(
        (
            r
            for r in rows
            if r[:3] == [c.family, c.name, c.platform]
            and (c.family != "outlook-mobile" or r[3] == version)
        ),
        None,
    )
    if row is None:
        row = [c.family, c.name, c.platform, c.version, t, t, 0, "", ""]
        rows.append(row)
    row[6] += 1
    row[4] = min(row[4], t)
    if t >= row[5]:
        row[5] = t
        row[7] = s.ca_status
        row[3] = c.version or row[3]
    row[8] = issue(c, policy)
    rows.sort(key=lambda r: r[5], reverse=True)
    return {"user": s.upn or (state or {}).get("user", ""), "clients": rows[:MAX_CLIENTS]}


def expired(state: State, before: float) -> bool:
    """No client of the user's was seen since ``before`` (event time): a sweep may drop it."""
    return all(row[5] < before for row in state["clients"])


def rows(user_id: str, state: State) -> list[dict[str, Any]]:
    """The user's clients as inventory rows, most recently seen first."""
    out = []
    for family, name, platform, version, first, last, count, ca, why in state["clients"]:
        out.append(
            {
                "user": state.get("user", ""),
                "user_id": user_id,
                "family": family,
                "name": name,
                "platform": platform,
                "version": version,
                "first_seen": _when(first),
                "last_seen": _when(last),
                "count": count,
                "last_ca_result": ca,
                "compliant": not why,
                "issue": why,
            }
        )
    return out


def build_line(version: str) -> str:
    """``4.2450.2`` → ``4.2450``: the release an Outlook Mobile build belongs to. Outlook
    ships a line a month or so, few enough to be a metric label or a chart's category; a
    version that does not start with two numbers is "unknown", so no user agent text can
    become a label."""
    parts = version.split(".")
    numbered = len(parts) >= 2 and all(p.isdigit() for p in parts[:2])
    return ".".join(parts[:2]) if numbered else "unknown"


def _when(t: float) -> str:
    return format_time(datetime.fromtimestamp(t, UTC))


def observe(users: Keyed[State], e: Enriched, policy: Policy) -> bool:
    """The one call per enriched sign-in, ``scan``'s and the worker's: the user's inventory
    (kept with the user's other state, keyed by user id) after ``e``; whether it changed."""
    key = e.signin.subject_id
    state = step(users.get(key), e, policy)
    if state is None:
        return False
    users.put(key, state)
    return True


class Inventory:
    """Every user's inventory in a dict: ``scan``'s and ``inventory``'s."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.users = States()

    def add(self, e: Enriched) -> None:
        observe(self.users, e, self.policy)

    def rows(self, non_compliant: bool = False) -> list[dict[str, Any]]:
        return listing(self.users.items(), non_compliant)


def listing(
    users: Iterable[tuple[str, State]], non_compliant: bool = False, user: str = ""
) -> list[dict[str, Any]]:
    """The rows of (user id, state) pairs, by user (UPN); with ``non_compliant`` only the
    clients that are not, with ``user`` (a UPN or id, any case) only that user's."""
    wanted = user.casefold()
    chosen = [
        (key, state)
        for key, state in users
        if not wanted or wanted in (key.casefold(), str(state.get("user", "")).casefold())
    ]
    found = [
        row
        for key, state in sorted(chosen, key=lambda kv: (str(kv[1].get("user", "")), kv[0]))
        for row in rows(key, state)
    ]
    return [r for r in found if not r["compliant"]] if non_compliant else found
