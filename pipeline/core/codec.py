"""Every form the pipeline's values take outside the process: the bytes it sends between its
stages and keeps in its state tables, and the JSON-ready rows inside them. One module, so
a format is read and written in one place.

- The signins topic: one batch of normalized records per target partition. A Faust event or
  a send per sign-in cannot keep up (a Faust agent forwarding single events does about
  2k/s), so ingest takes many raw events at once and sends one message per target partition
  for all of them. A message is a list of segments (``pipeline.core.segments``), one per
  raw event: the event's timestamp (for end-to-end latency), its raw partition and offset,
  the indexes of the records it carries when it carries only some, and those records as
  orjson arrays of their fields, tagged 0 for a sign-in and 1 for a risk record. Each record
  is serialized once by ingest and decoded once by detect.
- The by-ip topic: observations for the IP-keyed rules, per raw event, each with the
  source and position of its record.
- The state tables (``pipeline.core.state``): ``RULE_STATES`` (user_state, ip_state), each
  value orjson bytes of its JSON-ready dict.
- JSON-ready rows (``dump_*``/``load_*``): an ``Observation`` (in the by-ip topic), a
  ``UserRisk`` (in the user's state), an ``Incident`` (in every stateful rule's state).
  risk-detection keeps its sign-ins in a denser form of its own, as parts shared between
  them (``pipeline.core.rules.risk_detection``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import orjson

from pipeline.core.enrich import Observation
from pipeline.core.ids import Incident
from pipeline.core.records import (
    AuthStep,
    Category,
    Device,
    Location,
    PolicyResult,
    RiskEvent,
    SignIn,
)
from pipeline.core.risk import UserRisk
from pipeline.core.segments import Segment

# The signins topic.

_SIGNIN, _RISK = 0, 1
_S = {name: i for i, name in enumerate(SignIn._fields)}
_R = {name: i for i, name in enumerate(RiskEvent._fields)}


def encode_batch(segments: Sequence[Segment]) -> bytes:
    return join_segments([encode_segment(segment) for segment in segments])


def encode_segment(segment: Segment) -> bytes:
    # orjson leaves NamedTuples to ``default``; ``list`` (C) turns each into its field array.
    enqueued_ms, records, partition, offset, indexes = segment
    rows = [(_SIGNIN if isinstance(r, SignIn) else _RISK, r) for r in records]
    return orjson.dumps((enqueued_ms, partition, offset, indexes, rows), default=list)


def join_segments(encoded: Sequence[bytes]) -> bytes:
    """A batch from separately encoded segments, so ingest can size messages without
    encoding anything twice."""
    return b"[" + b",".join(encoded) + b"]"


def decode_batch(data: bytes) -> list[Segment]:
    return [
        Segment(
            enqueued_ms,
            [_signin(row) if kind == _SIGNIN else _risk(row) for kind, row in rows],
            partition,
            offset,
            indexes,
        )
        for enqueued_ms, partition, offset, indexes, rows in orjson.loads(data)
    ]


def _signin(row: list[Any]) -> SignIn:
    row[_S["time"]] = datetime.fromisoformat(row[_S["time"]])
    row[_S["category"]] = Category(row[_S["category"]])
    row[_S["location"]] = Location._make(row[_S["location"]])
    row[_S["device"]] = Device._make(row[_S["device"]])
    row[_S["ca_policies"]] = tuple(PolicyResult._make(p) for p in row[_S["ca_policies"]])
    row[_S["risk_event_types"]] = tuple(row[_S["risk_event_types"]])
    row[_S["auth_steps"]] = tuple(AuthStep._make(a) for a in row[_S["auth_steps"]])
    return SignIn._make(row)


def _risk(row: list[Any]) -> RiskEvent:
    row[_R["time"]] = datetime.fromisoformat(row[_R["time"]])
    row[_R["category"]] = Category(row[_R["category"]])
    row[_R["location"]] = Location._make(row[_R["location"]])
    row[_R["additional_info"]] = tuple(tuple(pair) for pair in row[_R["additional_info"]])
    return RiskEvent._make(row)


# Observations, and the by-ip topic.


def dump_observation(obs: Observation) -> list[Any]:
    level, state, detections = obs.risk
    return [
        *obs[:6],
        list(obs.location),
        list(obs.client),
        [level, state, list(detections)],
        *obs[9:],
    ]


def load_observation(row: Iterable[Any]) -> Observation:
    values = list(row)
    values[6] = Location._make(values[6])
    values[7] = tuple(values[7])
    level, state, detections = values[8]
    values[8] = (level, state, tuple(detections))
    return Observation._make(values)


Located = tuple[Observation, str, int]
"""An observation with the source and position of its record (``""`` and 0 without one):
what the IP-keyed rules' state records as applied."""


def encode_observations(segments: Sequence[tuple[int, Sequence[Located]]]) -> bytes:
    """The by-IP topic's message: observations for the IP-keyed rules, per raw event."""
    return orjson.dumps(
        [(t, [(source, at, dump_observation(o)) for o, source, at in obs]) for t, obs in segments]
    )


def decode_observations(data: bytes) -> list[tuple[int, list[Located]]]:
    return [
        (t, [(load_observation(o), source, at) for source, at, o in obs])
        for t, obs in orjson.loads(data)
    ]


# Rows of the stored types.


def dump_user_risk(risk: UserRisk) -> list[object]:
    return [risk.level, risk.state, risk.updated.isoformat(), list(risk.detections)]


def load_user_risk(row: list[object]) -> UserRisk:
    level, state, updated, detections = row
    assert isinstance(detections, list)
    return UserRisk(
        str(level), str(state), datetime.fromisoformat(str(updated)), tuple(map(str, detections))
    )


def dump_incident(incident: Incident) -> list[Any]:
    return list(incident)


def load_incident(row: list[Any]) -> Incident:
    """The sign-in ids come back as a list."""
    id_, last, severity, signin_ids, total, emitted = row
    return Incident(id_, last, severity, tuple(signin_ids), total, emitted)


# What the state tables hold per key.

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Codec(Generic[V]):
    """A stored type to the bytes a table holds, and back."""

    dumps: Callable[[V], bytes]
    loads: Callable[[bytes], V]


RULE_STATES: Codec[dict[str, Any]] = Codec(orjson.dumps, orjson.loads)
"""user_state, ip_state: ``pipeline.core.state.RuleStates``, keyed by user id or address."""
