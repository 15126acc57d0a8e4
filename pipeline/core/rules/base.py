"""What a detection rule is: metadata kept as data, settings, a pure check, and its cases."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

if TYPE_CHECKING:
    from pipeline.core.enrich import Enriched
    from pipeline.core.policy import Policy

Severity = Literal["informational", "low", "medium", "high", "critical"]


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
GUID_PATTERN = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def networks(values: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR ranges as networks (host bits allowed: 10.1.2.3/8 is 10.0.0.0/8)."""
    return tuple(ipaddress.ip_network(v, strict=False) for v in values)


def app_ids(values: Iterable[str]) -> frozenset[str]:
    """Application ids, lower-cased as the parser reads them; anything else is refused."""
    for app in values:
        if not re.fullmatch(GUID_PATTERN, app):
            raise ValueError(f"{app!r} is not an application id (a GUID)")
    return frozenset(v.lower() for v in values)


class Exceptions(BaseModel):
    """Who and what one rule leaves alone (the global allow-list silences every rule): a
    user (UPN or object id, case-insensitive), an application (app id) or a source range.
    For an IP-keyed rule an app exception is applied when the sign-in is handed to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    users: frozenset[str] = frozenset()
    apps: frozenset[str] = frozenset()
    ips: tuple[Network, ...] = ()

    @field_validator("users")
    @classmethod
    def _users_lower(cls, value: frozenset[str]) -> frozenset[str]:
        return frozenset(v.lower() for v in value)

    @field_validator("apps")
    @classmethod
    def _app_ids(cls, value: frozenset[str]) -> frozenset[str]:
        return app_ids(value)

    @field_validator("ips", mode="before")
    @classmethod
    def _ips(cls, value: Any) -> Any:
        return networks(value) if isinstance(value, list) else value

    @field_serializer("users", "apps")
    def _sorted(self, value: frozenset[str]) -> list[str]:
        return sorted(value)

    def __bool__(self) -> bool:
        return bool(self.users or self.apps or self.ips)

    def covers(self, users: tuple[str, ...], app_id: str, ip: str) -> bool:
        if self.users and any(u.lower() in self.users for u in users if u):
            return True
        if app_id and app_id in self.apps:
            return True
        if self.ips and ip:
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                return False
            return any(address in network for network in self.ips)
        return False


class RuleSettings(BaseModel):
    """Per-rule policy every rule accepts; a rule may subclass it to add its own knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    severity: Severity | None = None
    """Fixed severity for every alert of the rule, replacing the rule's own choice."""
    exceptions: Exceptions = Exceptions()


class IncidentSettings(RuleSettings):
    """What a rule whose alerts are incidents (one per key while the pattern continues)
    accepts: single-sign-in rules keyed by user, and every stateful rule."""

    suppression_minutes: float = Field(60, ge=0)
    """While a pattern keeps matching within this long of its last match, its incident is
    updated (same alert id) instead of a new alert being raised."""
    max_signin_ids: int = Field(50, ge=1)
    """Sign-in ids an alert lists; ``evidence.signin_count`` has the full count."""


@dataclass(frozen=True, slots=True)
class Finding:
    """What a rule says about one sign-in; the engine turns it into an ``Alert``."""

    severity: Severity
    summary: str
    evidence: Mapping[str, object] = field(default_factory=dict)
    title: str = ""


@dataclass(frozen=True, slots=True)
class Case:
    """A sample for the rule's own tests, in raw Entra field names.

    ``properties`` and ``envelope`` patch a baseline successful interactive sign-in; ``prior``
    are raw records (risk records, earlier sign-ins) processed first; ``policy`` patches the
    default policy.
    """

    name: str
    match: bool
    properties: Mapping[str, Any] = field(default_factory=dict)
    envelope: Mapping[str, Any] = field(default_factory=dict)
    prior: tuple[Mapping[str, Any], ...] = ()
    policy: Mapping[str, Any] = field(default_factory=dict)


Check = Callable[["Enriched", "Policy", Any], Finding | None]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    severity: Severity
    mitre: tuple[str, ...]
    description: str
    next_steps: tuple[str, ...]
    """What an analyst checks and does, in order; every alert of the rule carries them."""
    check: Check
    cases: tuple[Case, ...]
    settings: type[RuleSettings] = RuleSettings
    """An ``IncidentSettings`` makes the rule's alerts one incident per user while its
    findings continue (the stateful rules' suppression), instead of one per sign-in."""


_ORDER: tuple[Severity, ...] = ("informational", "low", "medium", "high", "critical")


def rank_severity(severity: str) -> int:
    return _ORDER.index(severity)


def shift(severity: Severity, steps: int) -> Severity:
    """A severity ``steps`` up (positive) or down the scale, clamped at its ends."""
    index = min(max(_ORDER.index(severity) + steps, 0), len(_ORDER) - 1)
    return _ORDER[index]
