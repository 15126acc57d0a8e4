"""Offline detection: files in, alerts out, no broker.

The same parse → enrich → detect path as the streaming worker, in event-time order: inputs
are read as they are judged, put back in sign-in time within the policy's lateness (Event
Hubs delivers late batches; ``EventTimeOrder``), with risk records applied to the user's
state in that same order, a detection never before the sign-in it names. Memory follows
the window and the users, not the size of the input.
"""

from __future__ import annotations

import gc
import heapq
import io
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter
from typing import BinaryIO

import orjson

from pipeline.core.codec import RULE_STATES
from pipeline.core.detect import Engine, alert_json
from pipeline.core.driver import Detected, Driver
from pipeline.core.incidents import Tracker
from pipeline.core.parse import DEFAULT_MAX_EVENT_BYTES, parse_stream
from pipeline.core.policy import Policy
from pipeline.core.records import Alert, Record, RiskEvent, SignIn
from pipeline.core.segments import Segment
from pipeline.core.state import KeyedState

Input = tuple[str, bytes | BinaryIO]
"""An input's name (for rejects) and its content, or a stream of it read as it is judged."""


@dataclass(slots=True)
class ScanStats:
    records: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    duplicate_signins: int = 0
    late: int = 0
    """Records that came after a newer one had been judged (``EventTimeOrder``)."""
    late_window_s: float = 0.0
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
            f"records later than the {self.late_window_s / 60:g}-minute reorder window "
            f"(judged as they came): {self.late}",
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
KEEP = 10_000
"""Records the reorder buffer holds at least: an input this small is judged exactly as if it
were sorted whole, in any order (a Graph export lists the newest first)."""
MIN_LATENESS_S = 300.0
"""The reorder window when the policy's rules allow less lateness."""


class EventTimeOrder:
    """Records back in event time, holding only those a later record may still precede.

    A record is held until a record newer than its time plus the window has arrived (the
    policy's lateness, which Event Hubs batches stay within), and at least ``keep`` are held
    so a small input is sorted whole; memory is then bounded by the window and ``keep``,
    not the input. A record that comes after a newer one was handed on is late: it is
    handed on at once, as the worker judges it, and counted. Ties keep delivery order.

    A realtime detection is stamped to the millisecond at its sign-in's moment, which the
    sign-in has to the tenth of a microsecond, so by time alone it comes first: the sign-in
    would take on the user's risk raised by its own detection, and the detection would not
    find its sign-in yet, where the worker sees the sign-in first. A detection whose sign-in
    is still held waits for it and follows it.

    A sign-in id seen again within the window counts as a duplicate (a redelivery repeats a
    record, time and all); older ids are forgotten.
    """

    def __init__(self, window_s: float, keep: int) -> None:
        self.window = timedelta(seconds=window_s)
        self.keep = keep
        self.late = 0
        self.duplicates = 0
        self._held: list[tuple[datetime, int, Record]] = []
        self._arrived = 0
        self._newest: datetime | None = None
        self._released: datetime | None = None
        self._signins_held: dict[str, int] = {}
        self._waiting: dict[str, list[Record]] = {}
        """Sign-in id -> the detections held back until it is handed on."""
        self._seen: dict[str, int] = {}
        self._seen_times: deque[tuple[datetime, str]] = deque()

    def ordered(self, records: Iterable[Record]) -> Iterator[Record]:
        held, push, pop = self._held, heapq.heappush, heapq.heappop
        signins = self._signins_held
        for record in records:
            t = record.time
            if self._newest is None or t > self._newest:
                self._newest = t
            elif self._released is not None and t < self._released:
                self.late += 1
            push(held, (t, self._arrived, record))
            self._arrived += 1
            if isinstance(record, SignIn):
                signins[record.id] = signins.get(record.id, 0) + 1
            horizon = self._newest - self.window
            while len(held) > self.keep and held[0][0] < horizon:
                yield from self._release(pop(held)[2])
        while held:
            yield from self._release(pop(held)[2])

    def _release(self, record: Record) -> Iterator[Record]:
        if self._released is None or record.time > self._released:
            self._released = record.time
        if isinstance(record, SignIn):
            left = self._signins_held.pop(record.id) - 1
            if left:
                self._signins_held[record.id] = left
            self._remember(record)
            yield record
            yield from self._waiting.pop(record.id, ())
        elif (
            isinstance(record, RiskEvent)
            and record.request_id in self._signins_held
            and record.request_id not in self._seen
        ):
            self._waiting.setdefault(record.request_id, []).append(record)
        else:
            yield record

    def _remember(self, signin: SignIn) -> None:
        seen, times = self._seen, self._seen_times
        count = seen.get(signin.id, 0)
        self.duplicates += count > 0
        seen[signin.id] = count + 1
        times.append((signin.time, signin.id))
        horizon = signin.time - self.window
        while times[0][0] < horizon:
            _, old = times.popleft()
            count = seen.pop(old) - 1
            if count:
                seen[old] = count


def window_s(engine: Engine) -> float:
    """The reorder window: the longest lateness any enabled stateful rule allows."""
    rules = engine.user_rules + engine.ip_rules
    return max([MIN_LATENESS_S, *(s.lateness_minutes * 60.0 for _, s in rules)])


def scan(
    inputs: Iterable[Input],
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
    inputs: Iterable[Input],
    policy: Policy,
    stats: ScanStats,
    rejects: BinaryIO | None = None,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> Iterator[Detected]:
    """What the driver makes of ``inputs``, one chunk of records at a time, in event time
    (``EventTimeOrder``): ``scan`` keeps the alerts, ``report`` and ``inventory`` more.
    Inputs are read as they are judged; ``stats`` is filled in as it goes."""
    with _cyclic_gc_paused():
        started = time.perf_counter()
        engine = Engine(policy)
        driver = Driver(engine, KeyedState(RULE_STATES), KeyedState(RULE_STATES), 1)
        order = EventTimeOrder(window_s(engine), KEEP)
        # A repeated sign-in id is counted, not dropped: the worker cannot drop it (two records
        # of one id may sit in two partitions), and need not: a redelivered record gives the
        # same alert ids and the stateful windows admit a (time, id) once.
        chunk: list[Record] = []
        for record in order.ordered(_read(inputs, stats, rejects, max_bytes)):
            chunk.append(record)
            if len(chunk) == _CHUNK:
                yield _judge(driver, chunk, stats)
                chunk = []
        if chunk:
            yield _judge(driver, chunk, stats)
        stats.duplicate_signins, stats.late = order.duplicates, order.late
        stats.late_window_s = order.window.total_seconds()
        stats.seconds = time.perf_counter() - started


def _read(
    inputs: Iterable[Input], stats: ScanStats, rejects: BinaryIO | None, max_bytes: int
) -> Iterator[Record]:
    for source, content in inputs:
        stream = io.BytesIO(content) if isinstance(content, bytes) else content
        for parsed in parse_stream(stream, max_bytes):
            stats.records += len(parsed.records) + len(parsed.rejected)
            stats.categories.update(map(attrgetter("category"), parsed.records))
            for rejected in parsed.rejected:
                stats.rejected[rejected.reason] += 1
                if rejects is not None:
                    rejects.write(rejected.to_json(source=f"{source}:{rejected.line}") + b"\n")
            yield from parsed.records


def _judge(driver: Driver, chunk: list[Record], stats: ScanStats) -> Detected:
    result = driver.segments([Segment(0, chunk)], direct=True)
    driver.flush()
    stats.outlook_version_unknown += sum(
        e.client.family == "outlook-mobile" and not e.client.version for e in result.enriched
    )
    return result
