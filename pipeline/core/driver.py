"""The one detection driver: records in delivery order through the engine, over whatever
state the caller keeps (``KeyedState``s). ``scan`` runs it over dicts, the worker over Faust
tables; neither re-implements the loop, so they cannot drift apart.

Nothing here knows Kafka or metrics. Whether the IP-keyed rules run inline (``direct``:
``scan``, and a worker that owns every partition) or on observations re-keyed through a
topic is the caller's topology choice; the result is the same alerts.

Records with a position (``pipeline.core.segments``) are applied to a key's state at most
once: each key's state records, per source, the position of the last record applied to it
(``MARKS``), and a record at or below it is skipped. After a crash the worker resumes from
its last committed offsets with state that may already hold what followed them; skipping
what it holds makes the redelivered records leave state, and so every later alert, as one
delivery would. What the skipped records raised the first time is already out: state is
written only after its records' output is acknowledged. A source is a raw partition for a
user's state (a user's records reach it in raw order, through whatever hops), and a raw
partition and the signins partition they came through for an address's state (records of
many users meet there, in order only per path).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any, NamedTuple

from pipeline.core.codec import Located
from pipeline.core.detect import Engine
from pipeline.core.enrich import Enriched, Observation
from pipeline.core.records import Alert, Category
from pipeline.core.segments import Segment
from pipeline.core.state import (
    MARKS,
    KeyedState,
    RuleStates,
    partition_for,
    record_key,
    user_risk,
)

ByIp = dict[int, list[tuple[int, list[Located]]]]
"""by-ip partition -> (enqueue time, located observations) per raw event, for the IP-keyed
rules."""


def in_event_time(
    messages: Sequence[Sequence[tuple[int, Sequence[Located]]]],
) -> list[tuple[int, list[Located]]]:
    """Decoded by-ip messages of one take merged into one sequence by event time.

    Each message holds what one detect take sent this partition, spanning that take's time
    range; applied one message after another, an address's failures from the second would
    reach its windows after those from the first had moved past them, where scan sees them
    in event time. Observations of one source keep their order (the positions applied per
    source must rise): the merge is of per-source runs.
    """
    runs: dict[str, list[tuple[int, Located]]] = {}
    for message in messages:
        for t, obs in message:
            for located in obs:
                runs.setdefault(located[1], []).append((t, located))
    merged: list[tuple[int, list[Located]]] = []
    for t, located in heapq.merge(*runs.values(), key=lambda item: item[1][0].time):
        if not merged or merged[-1][0] != t:
            merged.append((t, []))
        merged[-1][1].append(located)
    return merged


def segments_in_event_time(batches: Sequence[tuple[int, Sequence[Segment]]]) -> list[Segment]:
    """Signins batches of one take, (signins partition, segments) each, merged into one
    sequence by the time of each segment's first record (the reason is
    ``in_event_time``'s). A partition's batches stay in their order: its users' records
    must reach their state in delivery order."""
    runs: dict[int, list[Segment]] = {}
    for partition, segments in batches:
        runs.setdefault(partition, []).extend(segments)
    return list(heapq.merge(*runs.values(), key=lambda segment: segment.records[0].time))


class Detected(NamedTuple):
    alerts: list[tuple[int, list[Alert]]]
    """(enqueue time, alerts) of each raw event that raised any."""
    enriched: list[Enriched]
    by_ip: ByIp
    """Observations left for the IP-keyed rules; empty when they ran inline."""
    risk_records: list[Category]
    newest: float
    """Newest sign-in event time in the batch (epoch s), 0 without sign-ins."""


def applied(state: KeyedState[RuleStates], key: str, source: str, position: int) -> bool:
    """Whether ``key``'s state already holds the record at ``position`` of ``source``."""
    value = state.get(key)
    marks = value.get(MARKS) if value else None
    return marks is not None and marks.get(source, -1) >= position


def _mark(state: KeyedState[RuleStates], key: str, source: str, position: int) -> None:
    """Record ``position`` as applied to a key its record changed (a key the record left
    alone needs no mark: no later record was applied to it either, or that one's mark
    covers this). The mark outlives the record's effects: a record that empties a key's
    windows leaves the key holding its mark until the sweep."""
    value = state.get(key) or {}
    marks = value.get(MARKS)
    if marks is None:
        value[MARKS] = marks = {}
    marks[source] = position
    state.put(key, value)


class Driver:
    """The detect stages' state and calls. What the calls change is kept until ``flush``,
    which the caller makes once their output is safe (see ``flush``)."""

    def __init__(
        self,
        engine: Engine,
        users: KeyedState[RuleStates],
        addresses: KeyedState[RuleStates],
        partitions: int,
    ) -> None:
        self.engine, self.users, self.addresses = engine, users, addresses
        self.book = user_risk(users)
        self.partitions = partitions

    def segments(self, segments: Sequence[Segment], direct: bool = False) -> Detected:
        """Each record through the user-keyed rules; with ``direct`` the IP-keyed rules
        follow at once, else their observations are handed out by by-ip partition."""
        found_by_event: list[tuple[int, list[Alert]]] = []
        enriched: list[Enriched] = []
        risk_records: list[Category] = []
        rekeyed: ByIp = {}
        engine, users, book = self.engine, self.users, self.book
        for segment in segments:
            enqueued_ms, records = segment.enqueued_ms, segment.records
            source = str(segment.partition) if segment.partition >= 0 else ""
            found: list[Alert] = []
            for i, record in enumerate(records):
                at = segment.position(i) if source else 0
                key = record_key(record) if source else ""
                if source and applied(users, key, source, at):
                    if not direct:
                        continue  # its observation went to by-ip with its alerts
                    obs = engine.observe(record, book)
                else:
                    judged = engine.process(record, book, users)
                    if source and users.touched(key):
                        _mark(users, key, source, at)
                    if judged.enriched is None:
                        risk_records.append(record.category)
                    else:
                        enriched.append(judged.enriched)
                    found += judged.alerts
                    obs = judged.by_ip
                if obs is None:
                    continue
                # An address's records arrive in raw order only per signins partition.
                via = f"{source}/{partition_for(key, self.partitions)}" if source else ""
                if direct:
                    found += self._by_ip(obs, via, at)
                    continue
                target = rekeyed.setdefault(partition_for(obs.ip, self.partitions), [])
                if not target or target[-1][0] != enqueued_ms:
                    target.append((enqueued_ms, []))
                target[-1][1].append((obs, via, at))
            if found:
                found_by_event.append((enqueued_ms, found))
        newest = max((e.signin.time.timestamp() for e in enriched), default=0.0)
        return Detected(found_by_event, enriched, rekeyed, risk_records, newest)

    def by_ip(self, batch: list[tuple[int, list[Located]]]) -> list[tuple[int, list[Alert]]]:
        """Observations handed out by ``segments``, through the IP-keyed rules."""
        found = [(t, [a for o in obs for a in self._by_ip(*o)]) for t, obs in batch]
        return [(t, alerts) for t, alerts in found if alerts]

    def _by_ip(self, obs: Observation, source: str, at: int) -> list[Alert]:
        addresses = self.addresses
        if source and applied(addresses, obs.ip, source, at):
            return []
        alerts = self.engine.process_by_ip(obs, addresses)
        if source and addresses.touched(obs.ip):
            _mark(addresses, obs.ip, source, at)
        return alerts

    def flush(self, users: bool = True, addresses: bool = True) -> None:
        """Keep what the calls since the last flush changed, each touched key once: the
        user-keyed state (risk and rule windows), the address-keyed state, or both (the
        worker's detect and by-ip agents each flush their own).

        The worker flushes only once what those calls produced (alerts, re-keyed
        observations) is acknowledged, and writes flushed state to its tables only at a
        commit. State then never holds a record whose output could still be lost: a
        record it holds is skipped when delivered again, so its alerts must be out.
        """
        for state in self._states(users, addresses):
            state.flush()

    def discard(self, users: bool = True, addresses: bool = True) -> None:
        """Drop what the calls since the last flush changed: a call that failed partway
        must not leave half its effects to the next flush."""
        for state in self._states(users, addresses):
            state.discard()

    def _states(self, users: bool, addresses: bool) -> list[KeyedState[Any]]:
        chosen: list[KeyedState[Any]] = [self.users] if users else []
        return [*chosen, self.addresses] if addresses else chosen
