"""Sink settings, the ``sinks:`` section of the policy: where alerts go, in which format,
and which of their fields may leave (PII controls).

Secrets never live here: a sink's token or webhook URL comes from the environment
(``SIGNIN_RISK_SINK_<NAME>_TOKEN`` / ``_URL``), so the policy can be committed and reviewed.
"""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from pipeline.records import Alert as AlertRecord

ALERT_FIELDS = frozenset(AlertRecord.__dataclass_fields__)
Format = Literal["native", "ocsf", "ecs", "cef"]
PseudonymField = Literal["user", "ip"]


class SinkBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Format = "native"
    fields: tuple[str, ...] | None = None
    """Allow-list of alert fields that may leave (top-level names of the alert record);
    ``id``, ``rule``, ``severity``, ``time`` and ``title`` always do. None: every field."""
    pseudonymize: tuple[PseudonymField, ...] = ()
    """Replace these with a keyed hash (``SIGNIN_RISK_PSEUDONYM_KEY``): stable per value,
    so an analyst can still group by user or address without seeing it."""
    max_batch: int = Field(100, ge=1, le=10_000)
    buffer: int = Field(1000, ge=1, le=100_000)
    """Alerts read ahead of delivery at most (the bounded in-memory buffer)."""

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = sorted(set(value or ()) - ALERT_FIELDS)
        if unknown:
            raise ValueError(f"not alert fields: {', '.join(unknown)}")
        return value


class SyslogConfig(SinkBase):
    type: Literal["syslog"]
    format: Format = "cef"
    host: str = "127.0.0.1"
    port: int = Field(514, ge=1, le=65535)
    transport: Literal["tcp", "tls", "udp"] = "tcp"
    ca_file: str = ""
    """CA bundle for ``tls`` (default: the system's)."""
    facility: int = Field(13, ge=0, le=23)
    """13 = log audit (RFC 5424); 10 = authpriv and 16-23 = local0-7 are common choices."""
    app_name: str = "signin-risk"
    hostname: str = ""
    """HOSTNAME field; empty: this machine's name."""


class HecConfig(SinkBase):
    type: Literal["hec"]
    url: str
    """Base URL of the collector, e.g. ``https://splunk.example.com:8088``."""
    sourcetype: str = "signin-risk:alert"
    source: str = "signin-risk"
    index: str = ""
    """Target index; empty: the token's default."""
    ca_file: str = ""
    verify_tls: bool = True


class SentinelConfig(SinkBase):
    type: Literal["sentinel"]
    endpoint: str
    """Data collection endpoint (or the DCR's own logs ingestion endpoint)."""
    rule_id: str
    """The data collection rule's immutable id (``dcr-...``)."""
    stream: str = "Custom-SigninRiskAlerts_CL"


class WebhookConfig(SinkBase):
    type: Literal["webhook"]
    template: Literal["teams", "slack", "json"] = "json"
    """``teams``: an Adaptive Card (Workflows accept only cards); ``slack``: blocks;
    ``json``: the alert in the sink's format."""
    url: str = ""
    """The endpoint; usually a secret, so prefer ``SIGNIN_RISK_SINK_<NAME>_URL``."""
    per_minute: float = Field(30.0, gt=0)
    """Messages per minute at most (Slack allows about one per second per webhook)."""
    min_severity: Literal["informational", "low", "medium", "high", "critical"] = "low"
    """Alerts below this severity are not posted (they still count as delivered)."""


class FileConfig(SinkBase):
    type: Literal["file"]
    path: str
    """Appended to; a log shipper (Azure Monitor Agent, Elastic Agent, a Splunk forwarder)
    tails it. Each line is an RFC 5424 syslog message when ``syslog`` is on."""
    format: Format = "cef"
    syslog: bool = True
    facility: int = Field(13, ge=0, le=23)
    app_name: str = "signin-risk"
    hostname: str = ""
    mode: str | None = Field(None, pattern=r"^0?[0-7]{3}$")
    """Octal mode of the file (alerts carry users and addresses); None:
    ``SIGNIN_RISK_FILE_MODE`` (0600). A shipper running as another user needs e.g. 0640
    and a shared group, not a world-readable file."""

    @property
    def mode_bits(self) -> int | None:
        return None if self.mode is None else int(self.mode, 8)


class EventHubConfig(SinkBase):
    type: Literal["eventhub"]
    max_batch: int = Field(500, ge=1, le=10_000)


SinkConfig = Annotated[
    SyslogConfig | HecConfig | SentinelConfig | WebhookConfig | FileConfig | EventHubConfig,
    Field(discriminator="type"),
]


def sink_secret(name: str, kind: str) -> SecretStr:
    """``SIGNIN_RISK_SINK_<NAME>_<KIND>`` from the environment (empty when unset)."""
    key = f"SIGNIN_RISK_SINK_{name.upper().replace('-', '_')}_{kind.upper()}"
    return SecretStr(os.environ.get(key, ""))
