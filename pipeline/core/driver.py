"""The one detection driver: records in delivery order through the engine, over whatever
state the caller keeps (``KeyedState``s). ``scan`` runs it over dicts, the worker over Faust
tables; neither re-implements the loop, so they cannot drift apart.

Nothing here knows Kafka or metrics. Whether the IP-keyed rules run inline (``direct``:
``scan``, and a worker that owns every partition) or on observations re-keyed through a
topic is the caller's topology choice; the result is the same alerts.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from pipeline.core.detect import Engine
from pipeline.core.enrich import Enriched, Observation
from pipeline.core.records import Alert, Category, Record
from pipeline.core.risk import UserRisk
from pipeline.core.state import KeyedState, partition_for
from pipeline.core.stateful import RuleStates

Segment = tuple[int, list[Record]]
"""Records of one raw event with the event's enqueue time (epoch ms), in delivery order."""
ByIp = dict[int, list[tuple[int, list[Observation]]]]
"""by-ip partition -> (enqueue time, observations) per raw event, for the IP-keyed rules."""


class Detected(NamedTuple):
    alerts: list[tuple[int, list[Alert]]]
    """(enqueue time, alerts) of each raw event that raised any."""
    enriched: list[Enriched]
    by_ip: ByIp
    """Observations left for the IP-keyed rules; empty when they ran inline."""
    risk_records: list[Category]
    newest: float
    """Newest sign-in event time in the batch (epoch s), 0 without sign-ins."""


class Driver:
    """The detect stages' state and calls. What the calls change is kept until ``flush``,
    which the caller makes once their output is safe (see ``flush``)."""

    def __init__(
        self,
        engine: Engine,
        book: KeyedState[UserRisk],
        users: KeyedState[RuleStates],
        addresses: KeyedState[RuleStates],
        partitions: int,
    ) -> None:
        self.engine, self.book, self.users, self.addresses = engine, book, users, addresses
        self.partitions = partitions

    def segments(self, segments: list[Segment], direct: bool = False) -> Detected:
        """Each record through the user-keyed rules; with ``direct`` the IP-keyed rules
        follow at once, else their observations are handed out by by-ip partition."""
        found_by_event: list[tuple[int, list[Alert]]] = []
        enriched: list[Enriched] = []
        risk_records: list[Category] = []
        rekeyed: ByIp = {}
        process, by_ip = self.engine.process, self.engine.process_by_ip
        for enqueued_ms, records in segments:
            found: list[Alert] = []
            for record in records:
                judged = process(record, self.book, self.users)
                if judged.enriched is None:
                    risk_records.append(record.category)
                else:
                    enriched.append(judged.enriched)
                found += judged.alerts
                if judged.by_ip is None:
                    continue
                if direct:
                    found += by_ip(judged.by_ip, self.addresses)
                    continue
                target = rekeyed.setdefault(partition_for(judged.by_ip.ip, self.partitions), [])
                if not target or target[-1][0] != enqueued_ms:
                    target.append((enqueued_ms, []))
                target[-1][1].append(judged.by_ip)
            if found:
                found_by_event.append((enqueued_ms, found))
        newest = max((e.signin.time.timestamp() for e in enriched), default=0.0)
        return Detected(found_by_event, enriched, rekeyed, risk_records, newest)

    def by_ip(self, batch: list[tuple[int, list[Observation]]]) -> list[tuple[int, list[Alert]]]:
        """Observations handed out by ``segments``, through the IP-keyed rules."""
        process = self.engine.process_by_ip
        found = [(t, [a for o in obs for a in process(o, self.addresses)]) for t, obs in batch]
        return [(t, alerts) for t, alerts in found if alerts]

    def flush(self, users: bool = True, addresses: bool = True) -> None:
        """Write what the calls since the last flush changed, each touched key once: the
        user-keyed state (risk and rule windows), the address-keyed state, or both (the
        worker's detect and by-ip agents each flush their own).

        The worker flushes only once what those calls produced (alerts, re-keyed
        observations) is acknowledged, inside the event being processed (where Faust files
        a table's changelog records). State then never runs ahead of output: a crash in
        between repeats output under the same ids, where state written first would have
        made the redelivered records look already seen and their alerts would be lost.
        """
        for state in self._states(users, addresses):
            state.flush()

    def discard(self, users: bool = True, addresses: bool = True) -> None:
        """Drop what the calls since the last flush changed: a call that failed partway
        must not leave half its effects to the next flush."""
        for state in self._states(users, addresses):
            state.discard()

    def _states(self, users: bool, addresses: bool) -> list[KeyedState[Any]]:
        chosen: list[KeyedState[Any]] = [self.book, self.users] if users else []
        return [*chosen, self.addresses] if addresses else chosen
