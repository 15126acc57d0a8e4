"""PII controls applied to an alert before it leaves for a sink: a field allow-list and
keyed pseudonyms for user names and addresses.

A pseudonym is an HMAC of the value under a key only the operator holds, so it is stable
(analysts can still count and pivot on a user or an address in the SIEM) but cannot be
reversed or recomputed from a dictionary of known UPNs without the key.

Replacing the fields alone is not enough: rules write the same values into free text (a
summary "detected on the sign-in from 185.220.101.47", an Identity Protection detection id
that is the user's object id), and every SIEM format copies that text (CEF ``msg``, ECS
``message``, OCSF ``message``). So the values in the alert's user and address fields are
collected first and then replaced wherever they occur in any string, with the very
pseudonym their field gets, so a summary still names the same (pseudonymous) user or
address an analyst pivots on. Addresses in text that no field names are hidden too.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # types only: importing the sinks would load every sink module
    from pipeline.sinks import AlertDict, PseudonymField

ALWAYS_KEPT = frozenset({"id", "rule", "severity", "time", "title"})
"""Without these an alert cannot be deduplicated, routed or read."""

_USER_LAST = frozenset({"user", "users", "upn", "upns"})
_USER_TAILS = frozenset(
    {
        ("user", "id"),
        ("user", "ids"),
        ("user", "name"),
        ("user", "names"),
        ("principal", "name"),
        ("principal", "names"),
    }
)
_DISPLAY_NAMES = frozenset({("display", "name"), ("display", "names")})
_IP_LAST = frozenset({"ip", "ips"})
_IP_TAILS = frozenset({("ip", "address"), ("ip", "addresses")})
_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")

_IPV4 = re.compile(r"(?<![0-9A-Za-z.])(?:\d{1,3}\.){3}\d{1,3}(?![0-9A-Za-z]|\.\d)")
_IPV6 = re.compile(
    r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?(?![0-9A-Za-z:]|\.\d)"
)


def pseudonym(key: bytes, value: str) -> str:
    """Case-folded, so ``Alice@Contoso.com`` and ``alice@contoso.com`` stay one person."""
    digest = hmac.new(key, value.casefold().encode(), hashlib.sha256).hexdigest()
    return f"anon-{digest[:24]}"


@functools.lru_cache(maxsize=4096)  # field names are few and recur in every alert
def kind_of(name: str) -> PseudonymField | None:
    """Which value a field holds, judged by its name in any casing (``user_id``,
    ``userPrincipalName``, ``callerIpAddress``), so evidence a future rule adds under a
    new but conventional name is covered without a list to keep in step. A display name
    counts only on its own or as the user's: ``app_display_name`` names an application."""
    words = tuple(w.lower() for w in _WORDS.findall(name))
    if not words:
        return None
    if (
        words[-1] in _USER_LAST
        or words[-2:] in _USER_TAILS
        or words in _DISPLAY_NAMES
        or words[-3:] == ("user", "display", "name")
    ):
        return "user"
    if words[-1] in _IP_LAST or words[-2:] in _IP_TAILS:
        return "ip"
    return None


@functools.lru_cache(maxsize=4096)
def _is_user_agent(name: str) -> bool:
    """Browser versions look like addresses (``Chrome/131.0.0.0``); hiding them would make
    the user agent useless while protecting nothing, so the address scan skips it."""
    return tuple(w.lower() for w in _WORDS.findall(name))[-2:] == ("user", "agent")


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _strings(item)


def _collect(value: Any, kinds: frozenset[PseudonymField]) -> set[str]:
    """Every value held under a field of a chosen kind, at any depth."""
    found: set[str] = set()
    if isinstance(value, dict):
        for name, item in value.items():
            if isinstance(name, str) and kind_of(name) in kinds:
                found.update(s for s in _strings(item) if s.strip())
            else:
                found |= _collect(item, kinds)
    elif isinstance(value, list | tuple):
        for item in value:
            found |= _collect(item, kinds)
    return found


def _known_pattern(values: set[str]) -> re.Pattern[str] | None:
    """One pass over a text for all values, longest first so an address is not replaced
    inside a longer one. Matches stop at letters and digits on either side: ``10.0.0.1``
    is not half of ``10.0.0.12`` (the address scan gives that one its own pseudonym)."""
    unique = {v.casefold(): v for v in values}
    if not unique:
        return None
    alternatives = "|".join(re.escape(v) for v in sorted(unique.values(), key=len, reverse=True))
    return re.compile(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])", re.IGNORECASE)


def _ipv4(match: re.Match[str]) -> bool:
    # Octets with leading zeros are not valid to ipaddress but are still an address to a reader.
    return all(int(octet) <= 255 for octet in match.group().split("."))


def _ipv6(match: re.Match[str]) -> bool:
    text = match.group()
    if not any(c.isalnum() for c in text):
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class _Masker:
    key: bytes
    kinds: frozenset[PseudonymField]
    known: re.Pattern[str] | None

    def hide(self, value: str) -> str:
        return pseudonym(self.key, value)

    def text(self, value: str, scan_addresses: bool) -> str:
        if self.known is not None:
            value = self.known.sub(lambda m: self.hide(m.group()), value)
        if scan_addresses and "ip" in self.kinds:
            value = _IPV4.sub(self._address(_ipv4), value)
            value = _IPV6.sub(self._address(_ipv6), value)
        return value

    def _address(self, valid: Callable[[re.Match[str]], bool]) -> Callable[[re.Match[str]], str]:
        return lambda match: self.hide(match.group()) if valid(match) else match.group()

    def walk(self, value: Any, whole: bool = False, scan_addresses: bool = True) -> Any:
        """``whole``: under a field of a chosen kind, where each string is a value itself."""
        if isinstance(value, str):
            if not value:
                return value
            return self.hide(value) if whole else self.text(value, scan_addresses)
        if isinstance(value, dict):
            return {
                (self.text(name, True) if isinstance(name, str) else name): self.walk(
                    item,
                    whole or (isinstance(name, str) and kind_of(name) in self.kinds),
                    scan_addresses and not (isinstance(name, str) and _is_user_agent(name)),
                )
                for name, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.walk(item, whole, scan_addresses) for item in value]
        return value


def restrict(
    alert: AlertDict,
    fields: frozenset[str] | None,
    pseudonymize: tuple[PseudonymField, ...],
    key: bytes,
) -> AlertDict:
    """The alert as this sink may see it: allowed fields only, chosen values pseudonymised.

    Values are collected before the allow-list applies: a sink that may not see ``ip`` may
    still see a summary that quotes it."""
    masker = None
    if pseudonymize:
        kinds = frozenset(pseudonymize)
        masker = _Masker(key, kinds, _known_pattern(_collect(alert, kinds)))
    if fields is not None:
        alert = {k: v for k, v in alert.items() if k in fields or k in ALWAYS_KEPT}
    if masker is not None:
        alert = masker.walk(alert)
    return alert
