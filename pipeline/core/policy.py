"""The detection policy (``config/policy.yaml``): what is approved, what is tuned, what is trusted.

Validated on load: a bad file fails with the file, the key and the reason on one line,
before any record is read. Rules get their own settings models, so a rule's knobs are
validated with the same precision as the top level.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_serializer,
    field_validator,
    model_validator,
)

from pipeline.core.clientapp import EXCHANGE_ONLINE_RESOURCE_ID, OUTLOOK_MOBILE_APP_ID
from pipeline.core.incidents import IncidentPolicy
from pipeline.core.rules import REGISTRY, RuleSettings
from pipeline.core.rules.base import GUID_PATTERN, Network, networks
from pipeline.sinks import Sinks


class PolicyError(ValueError):
    """A policy file that cannot be used; the message is one line naming file, key and reason."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, data: Any) -> Any:
        """A section whose entries are all commented out reads as null: treat it as absent."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


class ApprovedClient(_Model):
    app_id: str = Field(pattern=GUID_PATTERN)
    name: str = ""

    @field_validator("app_id")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class Allowlist(_Model):
    """Trusted users, addresses and places; a sign-in matching any of them raises no alert."""

    users: frozenset[str] = frozenset()
    ips: tuple[Network, ...] = ()
    named_networks: dict[str, tuple[Network, ...]] = Field(default_factory=dict)
    countries: frozenset[str] = frozenset()

    @field_serializer("users", "countries")
    def _sorted(self, value: frozenset[str]) -> list[str]:
        return sorted(value)

    @field_validator("users")
    @classmethod
    def _users_lower(cls, value: frozenset[str]) -> frozenset[str]:
        return frozenset(v.lower() for v in value)

    @field_validator("countries")
    @classmethod
    def _countries(cls, value: frozenset[str]) -> frozenset[str]:
        for country in value:
            if len(country) != 2 or not country.isalpha():
                raise ValueError(f"{country!r} is not a two-letter country code")
        return frozenset(v.upper() for v in value)

    @field_validator("ips", mode="before")
    @classmethod
    def _ips(cls, value: Any) -> Any:
        return networks(value) if isinstance(value, list) else value

    @field_validator("named_networks", mode="before")
    @classmethod
    def _named(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: networks(v) if isinstance(v, list) else v for k, v in value.items()}
        return value

    def all_networks(self) -> tuple[Network, ...]:
        return self.ips + tuple(n for nets in self.named_networks.values() for n in nets)


_VERSION = r"^\d+(\.\d+)+$"


class OutlookMinimum(_Model):
    """Oldest Outlook Mobile build allowed per platform; older builds skip device PIN policy."""

    ios: str = Field("4.2400", pattern=_VERSION)
    android: str = Field("4.2400", pattern=_VERSION)


def _rule_field(rule_id: str) -> str:
    return rule_id.replace("-", "_")


_RuleSettingsById: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "RuleSettingsById",
    __config__=ConfigDict(extra="forbid", frozen=True, populate_by_name=True),
    **{
        _rule_field(rule.id): (rule.settings, Field(default_factory=rule.settings, alias=rule.id))
        for rule in REGISTRY.values()
    },
)


class Policy(_Model):
    approved_clients: tuple[ApprovedClient, ...] = (
        ApprovedClient(app_id=OUTLOOK_MOBILE_APP_ID, name="Outlook Mobile"),
    )
    mail_resources: frozenset[str] = frozenset({EXCHANGE_ONLINE_RESOURCE_ID})
    risk_threshold: Literal["low", "medium", "high"] = "medium"
    outlook_minimum: OutlookMinimum = OutlookMinimum()
    allowlist: Allowlist = Allowlist()
    rules: _RuleSettingsById = Field(default_factory=_RuleSettingsById)
    incidents: IncidentPolicy = IncidentPolicy()
    """How alerts group into incidents per user or source address (``pipeline.core.incidents``)."""
    sinks: Sinks = Field(default_factory=dict)
    """Where ``signin-risk forward --sink NAME`` delivers alerts, keyed by NAME."""

    @field_serializer("mail_resources")
    def _sorted(self, value: frozenset[str]) -> list[str]:
        return sorted(value)

    @field_validator("mail_resources")
    @classmethod
    def _resources_lower(cls, value: frozenset[str]) -> frozenset[str]:
        return frozenset(v.lower() for v in value)

    @property
    def approved_app_ids(self) -> frozenset[str]:
        return frozenset(c.app_id for c in self.approved_clients)

    def rule(self, rule_id: str) -> RuleSettings:
        settings = getattr(self.rules, _rule_field(rule_id))
        assert isinstance(settings, RuleSettings)
        return settings

    def effective(self) -> dict[str, Any]:
        """The policy with defaults filled in, as YAML-ready data (``check-config``)."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True)
        return data


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    loc = first["loc"]
    if first["type"] == "extra_forbidden" and len(loc) == 2 and loc[0] == "rules":
        return f"{key}: {_unknown_rule(str(loc[1]))}{more}"
    return f"{key}: {first['msg']}{more}"


def _unknown_rule(name: str) -> str:
    """A misspelt rule id would otherwise read as "extra inputs are not permitted"."""
    close = difflib.get_close_matches(name, REGISTRY, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown rule id; {hint}valid ids: {', '.join(sorted(REGISTRY))}"


def policy_from_data(data: Any, source: str = "<policy>") -> Policy:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: (top level): expected a mapping, got {type(data).__name__}")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(f"{source}: {_describe(exc)}") from None


def load_policy(path: str | Path | None) -> Policy:
    """The policy in ``path``, or the built-in defaults when ``path`` is None."""
    if path is None:
        return Policy()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{path}: (file): not UTF-8 (byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        raise PolicyError(
            f"{path}: {where}: invalid YAML: {getattr(exc, 'problem', exc)}"
        ) from None
    return policy_from_data(data, str(path))
