"""What a detection rule is: metadata kept as data, settings, a pure check, and its cases."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from pipeline.core.enrich import Enriched
    from pipeline.core.policy import Policy

Severity = Literal["informational", "low", "medium", "high", "critical"]


class RuleSettings(BaseModel):
    """Per-rule policy every rule accepts; a rule may subclass it to add its own knobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    severity: Severity | None = None
    """Fixed severity for every alert of the rule, replacing the rule's own choice."""


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
    check: Check
    cases: tuple[Case, ...]
    settings: type[RuleSettings] = RuleSettings


_ORDER: tuple[Severity, ...] = ("informational", "low", "medium", "high", "critical")


def rank_severity(severity: str) -> int:
    return _ORDER.index(severity)


def shift(severity: Severity, steps: int) -> Severity:
    """A severity ``steps`` up (positive) or down the scale, clamped at its ends."""
    index = min(max(_ORDER.index(severity) + steps, 0), len(_ORDER) - 1)
    return _ORDER[index]
