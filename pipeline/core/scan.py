"""Offline detection: files in, alerts out, no broker.

The same parse → enrich → detect path as the streaming worker, in event-time order: all
inputs are parsed first, then sorted by sign-in time (Event Hubs delivers late batches),
with risk records applied to the user's state in that same order, a detection never
before the sign-in it names.
"""

from __future__ import annotations

import gc
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from operator import attrgetter
from typing import BinaryIO

import orjson

from pipeline.core.codec import RULE_STATES
from pipeline.core.detect import Engine, alert_json
from pipeline.core.driver import Detected, Driver
from pipeline.core.incidents import Tracker
from pipeline.core.parse import DEFAULT_MAX_EVENT_BYTES, parse_file
from pipeline.core.policy import Policy
from pipeline.core.records import Alert, Record, RiskEvent, SignIn
from pipeline.core.segments import Segment
from pipeline.core.state import KeyedState


@dataclass(slots=True)
class ScanStats:
    records: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    duplicate_signins: int = 0
    outlook_version_unknown: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        rate = self.records / self.seconds if self.seconds else 0.0
        lines = [
            f"records read: {self.records} ({rate:,.0f} records/s)",
            "by category: " + (_counts(self.categories) or "none"),
            "rejected: " + (_counts(self.rejected) or "none"),
            "alerts: " + (_counts(self.alerts) or "none"),
            f"duplicate sign-ins (same id delivered again): {self.duplicate_signins}",
            f"Outlook Mobile sign-ins with unknown build: {self.outlook_version_unknown}",
        ]
        return "\n".join(lines)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counter.items()))


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Records hold no reference cycles, so reference counting frees all garbage; the cyclic
    collector would only rescan the growing set of live records (half of scan's time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_CHUNK = 4096
"""Records per driver call: state is written back once a call, as the worker does a take."""


def _in_event_time(records: list[Record]) -> list[Record]:
    """``records`` in event time, each detection no earlier than the sign-in it names.

    A realtime detection is stamped to the millisecond at its sign-in's moment, which the
    sign-in has to the tenth of a microsecond, so by time alone it comes first: the sign-in
    would take on the user's risk raised by its own detection, and the detection would not
    find its sign-in yet, where the worker sees the sign-in first. Moving the few such
    detections after sorting keeps the sort itself on a C key (a Python key cost 4%).
    """
    records.sort(key=attrgetter("time"))  # stable: delivery order breaks ties
    detections = [
        (i, r) for i, r in enumerate(records) if isinstance(r, RiskEvent) and r.request_id
    ]
    if not detections:
        return records
    wanted = {r.request_id for _, r in detections}
    signed_in: dict[str, int] = {}
    for i, r in enumerate(records):
        if isinstance(r, SignIn) and r.id in wanted:
            signed_in.setdefault(r.id, i)
    after: dict[int, list[Record]] = {}
    for i, detection in detections:
        j = signed_in.get(detection.request_id, -1)
        if j > i:
            after.setdefault(j, []).append(detection)
    if not after:
        return records
    moved = {id(r) for group in after.values() for r in group}
    out: list[Record] = []
    for i, r in enumerate(records):
        if id(r) not in moved:
            out.append(r)
        out += after.get(i, ())
    return out


def scan(
    inputs: Iterable[tuple[str, bytes]],
    policy: Policy,
    out: BinaryIO,
    rejects: BinaryIO | None = None,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    incidents: BinaryIO | None = None,
) -> ScanStats:
    """Detect over ``inputs`` (name, content) and write one alert JSON per line to ``out``:
    the last version of each alert, in the order the alerts were first raised. With
    ``incidents``, each alert carries its ``incident_id`` and the last version of each
    incident is written there, one per line."""
    stats = ScanStats()
    found: dict[str, Alert] = {}
    """Alert id -> its last version; an incident's alert is updated while it continues."""
    tracker = Tracker(policy.incidents) if incidents is not None else None
    incident_of: dict[str, str] = {}
    for result in detect(inputs, policy, stats, rejects, max_bytes):
        for _, alerts in result.alerts:
            for alert in alerts:
                found[alert.id] = alert
                if tracker is not None:
                    incident_of[alert.id] = tracker.add(asdict(alert))
    for alert in found.values():
        stats.alerts[alert.rule] += 1
        if tracker is None:
            out.write(alert_json(alert) + b"\n")
        else:
            out.write(orjson.dumps(asdict(alert) | {"incident_id": incident_of[alert.id]}) + b"\n")
    if tracker is not None and incidents is not None:
        for incident in tracker.incidents.values():
            incidents.write(orjson.dumps(incident) + b"\n")
    return stats


def detect(
    inputs: Iterable[tuple[str, bytes]],
    policy: Policy,
    stats: ScanStats,
    rejects: BinaryIO | None = None,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[Detected]:
    """What the driver makes of ``inputs``, one chunk of records at a time, in event time:
    ``scan`` keeps the alerts, ``report`` and ``inventory`` more. ``stats`` is filled in as
    it goes; ``progress`` is told (records done, records in all) after each chunk."""
    with _cyclic_gc_paused():
        started = time.perf_counter()
        records: list[Record] = []
        for source, data in inputs:
            parsed = parse_file(data, max_bytes)
            records.extend(parsed.records)
            for rejected in parsed.rejected:
                stats.rejected[rejected.reason] += 1
                if rejects is not None:
                    rejects.write(rejected.to_json(source=f"{source}:{rejected.line}") + b"\n")
        records = _in_event_time(records)

        driver = Driver(Engine(policy), KeyedState(RULE_STATES), KeyedState(RULE_STATES), 1)
        seen_signins: set[str] = set()
        stats.categories.update(map(attrgetter("category"), records))
        # A repeated sign-in id is counted, not dropped: the worker cannot drop it (two records
        # of one id may sit in two partitions), and need not: a redelivered record gives the
        # same alert ids and the stateful windows admit a (time, id) once.
        for record in records:
            if isinstance(record, SignIn):
                if record.id in seen_signins:
                    stats.duplicate_signins += 1
                seen_signins.add(record.id)
        for start in range(0, len(records), _CHUNK):
            result = driver.segments([Segment(0, records[start : start + _CHUNK])], direct=True)
            driver.flush()
            stats.outlook_version_unknown += sum(
                e.client.family == "outlook-mobile" and not e.client.version
                for e in result.enriched
            )
            yield result
            if progress is not None:
                progress(min(start + _CHUNK, len(records)), len(records))
        stats.records = len(records) + sum(stats.rejected.values())
        stats.seconds = time.perf_counter() - started
