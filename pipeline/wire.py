"""The signins topic's message format: one batch of normalized records per target partition.

A Faust event or a send per sign-in cannot keep up (a Faust agent forwarding single events
does about 2k/s), so ingest takes many raw events at once and sends one message per target
partition for all of them. A message is a list of segments, one per raw event, each with that
event's timestamp (for end-to-end latency) and its records as orjson arrays of their fields,
tagged 0 for a sign-in and 1 for a risk record. Each record is serialized once by ingest and
decoded once by detect.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from pipeline.records import (
    AuthStep,
    Category,
    Device,
    Location,
    PolicyResult,
    Record,
    RiskEvent,
    SignIn,
)
from pipeline.rules.windows import Observation

_SIGNIN, _RISK = 0, 1
_S = {name: i for i, name in enumerate(SignIn._fields)}
_R = {name: i for i, name in enumerate(RiskEvent._fields)}


def partition_for(key: str, partitions: int) -> int:
    """Stable across processes and restarts (unlike ``hash``), so a user's records always
    meet the same partition of the tables."""
    return zlib.crc32(key.encode()) % partitions


def record_key(record: Record) -> str:
    """Whose history a record belongs to: the user (or workload); else the record itself."""
    if isinstance(record, SignIn):
        return record.subject_id or record.id
    return record.user_id or record.id


Segment = tuple[int, Sequence[Record]]
"""Records of one raw event, with the event's enqueue time in epoch milliseconds."""


def encode_batch(segments: Sequence[Segment]) -> bytes:
    return join_segments([encode_segment(*segment) for segment in segments])


def encode_segment(enqueued_ms: int, records: Sequence[Record]) -> bytes:
    # orjson leaves NamedTuples to ``default``; ``list`` (C) turns each into its field array.
    return orjson.dumps(
        (enqueued_ms, [(_SIGNIN if isinstance(r, SignIn) else _RISK, r) for r in records]),
        default=list,
    )


def join_segments(encoded: Sequence[bytes]) -> bytes:
    """A batch from separately encoded segments, so ingest can size messages without
    encoding anything twice."""
    return b"[" + b",".join(encoded) + b"]"


def decode_batch(data: bytes) -> list[tuple[int, list[Record]]]:
    return [
        (enqueued_ms, [_signin(row) if kind == _SIGNIN else _risk(row) for kind, row in rows])
        for enqueued_ms, rows in orjson.loads(data)
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


def encode_observations(segments: Sequence[tuple[int, Sequence[Observation]]]) -> bytes:
    """The by-IP topic's message: observations for the IP-keyed rules, per raw event."""
    return orjson.dumps([(t, [o.encode() for o in obs]) for t, obs in segments])


def decode_observations(data: bytes) -> list[tuple[int, list[Observation]]]:
    return [(t, [Observation.decode(o) for o in obs]) for t, obs in orjson.loads(data)]
