"""Alert sinks: where ``signin-risk forward`` delivers the alerts topic.

The forwarder owns the buffer, the retries, the circuit breaker and the dead-letter topic;
a sink only turns a batch of alerts into requests to its receiver and says what happened.
Its offsets are committed only after every alert of a batch was delivered or refused for
good, so every alert arrives at least once and its id lets the receiver drop repeats.

A sink is one module in this package that defines ``SINK``: its config model (its entry in
the policy's ``sinks:`` section, told apart by ``type``), its class, and how to build one
(the module imports a heavy SDK only there, so a syslog forwarder never loads Azure's).
This module holds what they share, and parses the ``sinks:`` section with the union of
every sink's config model.

Secrets never live in the policy: a sink's token or webhook URL comes from the environment
(``SIGNIN_RISK_SINK_<NAME>_TOKEN`` / ``_URL``), so the policy can be committed and reviewed.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Generic,
    Literal,
    Protocol,
    TypeVar,
    Union,
    get_args,
)

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator

from pipeline.core.records import Alert

if TYPE_CHECKING:
    from pipeline.core.policy import Policy
    from pipeline.runtime.settings import Settings

AlertDict = dict[str, Any]
"""An alert as decoded from the alerts topic, after the sink's privacy controls: the JSON
mapping of a ``pipeline.core.records.Alert``, which is what formats, privacy and sinks handle."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """The receiver refused the alert at ``index`` of the batch for good (a 4xx answer):
    sending it again cannot help, so it goes to the sink's dead-letter topic."""

    index: int
    reason: str


class SendError(Exception):
    """A transient failure (connection lost, 5xx, 429, timeout): retry later.

    ``done`` alerts at the head of the batch were already dealt with (delivered, or refused
    and listed in ``refused``), so the retry starts after them and a chat channel does not
    get the same message twice. Any other exception from ``send`` means ``done=0``.
    """

    def __init__(self, message: str, done: int = 0, refused: Sequence[Refusal] = ()) -> None:
        super().__init__(message)
        self.done = done
        self.refused = tuple(refused)


class Sink(Protocol):
    name: str
    max_batch: int
    """Alerts per ``send`` at most."""

    async def send(self, alerts: Sequence[AlertDict]) -> list[Refusal]:
        """Deliver ``alerts`` in order; return the ones refused for good, or raise."""

    async def close(self) -> None: ...


ALERT_FIELDS = frozenset(Alert.__dataclass_fields__)
Format = Literal["native", "ocsf", "ecs", "cef"]
PseudonymField = Literal["user", "ip"]


class SinkBase(BaseModel):
    """What every sink's config takes: format and PII controls (where alerts go, in which
    format, and which of their fields may leave), batch and buffer sizes."""

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
    type: str
    """Which sink; a sink's config narrows it to its own ``Literal`` name."""

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        unknown = sorted(set(value or ()) - ALERT_FIELDS)
        if unknown:
            raise ValueError(f"not alert fields: {', '.join(unknown)}")
        return value


def sink_secret(name: str, kind: str) -> SecretStr:
    """``SIGNIN_RISK_SINK_<NAME>_<KIND>`` from the environment (empty when unset)."""
    key = f"SIGNIN_RISK_SINK_{name.upper().replace('-', '_')}_{kind.upper()}"
    return SecretStr(os.environ.get(key, ""))


C = TypeVar("C", bound=SinkBase)


@dataclass(frozen=True, slots=True)
class SinkType(Generic[C]):
    """A sink module's ``SINK``: the registration the policy and ``forward`` find it by."""

    config: type[C]
    """Its entry in the policy's ``sinks:``; ``type: Literal["<type>"]`` names the type."""
    build: Callable[[str, C, Settings], Sink]
    """(the sink's name in the policy, its config, the settings) -> the sink."""
    order: int
    """Its place among the types where the policy lists them all (the error for an unknown
    ``type``): a new sink takes the next number."""
    builtin: bool = False
    """``--sink <type>`` works without a policy entry, on the config's defaults."""

    @property
    def type(self) -> str:
        (name,) = get_args(self.config.model_fields["type"].annotation)
        return str(name)


def _discover() -> dict[str, SinkType[Any]]:
    found: dict[str, SinkType[Any]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        sink = getattr(module, "SINK", None)
        if not isinstance(sink, SinkType):
            continue
        if sink.type in found:
            raise RuntimeError(f"duplicate sink type {sink.type!r} in {module.__name__}")
        found[sink.type] = sink
    return dict(sorted(found.items(), key=lambda item: item[1].order))


REGISTRY: dict[str, SinkType[Any]] = _discover()
"""Every sink type, by its ``type`` name. The sink modules import this package's names
defined above, so this comes last (as in ``pipeline.core.rules``)."""

if TYPE_CHECKING:
    SinkConfig = SinkBase
else:
    SinkConfig = Annotated[
        Union[tuple(sink.config for sink in REGISTRY.values())],  # noqa: UP007
        Field(discriminator="type"),
    ]

_SINK_NAME = r"[a-z0-9][a-z0-9-]{0,39}"
"""Sink names end up in topic, consumer group and environment variable names."""


def _sink_names(value: dict[str, SinkBase]) -> dict[str, SinkBase]:
    for name in value:
        if not re.fullmatch(_SINK_NAME, name):
            raise ValueError(f"sink name {name!r} must match {_SINK_NAME}")
    return value


Sinks = Annotated[dict[str, SinkConfig], AfterValidator(_sink_names)]
"""The policy's ``sinks:`` section: sink names to configs, each by its ``type``."""


def sink_config(policy: Policy, name: str) -> SinkBase:
    """The config of the sink ``name``: its policy entry, or a built-in type's defaults."""
    if name in policy.sinks:
        return policy.sinks[name]
    if name in REGISTRY and REGISTRY[name].builtin:
        builtin: SinkBase = REGISTRY[name].config.model_validate({"type": name})
        return builtin
    known = ", ".join(sorted(policy.sinks)) or "none"
    raise ValueError(f"sink {name!r} is not in the policy's sinks (configured: {known})")


def build_sink(name: str, config: SinkBase, settings: Settings) -> Sink:
    return REGISTRY[config.type].build(name, config, settings)
