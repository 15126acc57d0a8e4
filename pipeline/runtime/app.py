"""The Faust application: topics, the state tables, and thin agents around the core.

ingest: raw Event Hubs envelopes -> parse -> one batch per signins partition; rejects ->
deadletter. detect: batches -> risk records update the table, sign-ins are judged -> alerts
(each with its incident; the incident's new versions -> incidents), sign-ins -> the users'
mail-client inventory. by-ip: observations re-keyed by source address -> the IP-keyed rules
-> alerts and the address's incident. With ``inventory_view`` the worker serves the
inventory it holds, read-only, over HTTP.
A worker that owns every partition (the usual single-worker deployment) skips both re-key
hops and judges each take of raw events where it parsed them: the hops re-encode, send,
fetch and decode every sign-in, which cost more than detection itself.
Delivery is at-least-once: Faust flushes the producer (waits for every send in flight to be
acknowledged) before it commits offsets, so a committed offset never runs ahead of what its
events produced. Agents therefore never wait for a broker round trip per event; they only
bound how many sends are unacknowledged (``Outbox``). State is written once per commit
interval, and an event is acknowledged only once the state it changed is written
(``Judge.hold``), so its offset is never committed before that state.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import faust
import orjson
from aiohttp import web
from faust.streams import _current_event
from mode import Service

from pipeline.alerts.privacy import restrict
from pipeline.core.codec import (
    RULE_STATES,
    decode_batch,
    decode_observations,
    encode_observations,
)
from pipeline.core.detect import Engine
from pipeline.core.driver import Driver, in_event_time, segments_in_event_time
from pipeline.core.enrich import Enriched
from pipeline.core.ingest import Received, ingest, receive
from pipeline.core.ledger import Expiry, Ledger, expiry, inventories
from pipeline.core.policy import Policy
from pipeline.core.records import Alert
from pipeline.core.rejects import Rejected, processing_error
from pipeline.core.state import KeyedState, RuleStates, partition_for
from pipeline.core.stateful import expire
from pipeline.core.timeparse import format_time
from pipeline.runtime import metrics
from pipeline.runtime.inventory_view import handle, refuse_binding
from pipeline.runtime.settings import Settings
from pipeline.runtime.topics import TABLES

NOISY_LOGGERS = ("faust", "aiokafka", "mode", "kafka")
log = logging.getLogger(__name__)


def quiet_libraries() -> None:
    """Faust and aiokafka log on every send at DEBUG/INFO; that costs throughput and hides ours."""
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _credentials(settings: Settings) -> Any:
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            mechanism=settings.sasl_mechanism,
            ssl_context=settings.ssl_context(),
        )
    context = settings.ssl_context()
    return faust.SSLCredentials(context) if context is not None else None


class Outbox:
    """Sends in flight, awaited in bulk: backpressure without a round trip per event.

    The in-flight gauge counts the records that unacknowledged sends carry; each send
    takes its records off the gauge when the broker acknowledges it.
    """

    def __init__(self, limit: int = 512) -> None:
        self._pending: list[asyncio.Future[Any]] = []
        self._limit = limit

    async def add(self, future: asyncio.Future[Any], records: int = 0) -> None:
        if records:
            metrics.IN_FLIGHT.inc(records)
            future.add_done_callback(lambda _: metrics.IN_FLIGHT.dec(records))
        self._pending.append(future)
        if len(self._pending) >= self._limit:
            await self.drain()

    async def drain(self) -> None:
        """Wait until every send so far is acknowledged (state is written only after)."""
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)


class KeyedTable(faust.Table[Any, Any]):
    """A table whose changelog partition follows the key, not the event being processed.

    It is the partition ingest routes the key's records to, so the detect agent writes
    where Faust would anyway, and a lone worker judging raw events directly still files
    each key in its own partition: a worker joining later recovers exactly its keys.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sent: list[asyncio.Future[Any]] = []

    def partition_for_key(self, key: Any) -> int:
        return partition_for(key, self.partitions or self.app.conf.topic_partitions)

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        sent = super().send_changelog(*args, **kwargs)
        self._sent.append(sent)
        return sent

    def take_sent(self) -> list[asyncio.Future[Any]]:
        """The changelog sends since the last call, each done once the broker has it."""
        sent, self._sent = self._sent, []
        return sent

    def __setitem__(self, key: Any, value: Any) -> None:
        # Faust's RocksDB store files a value under the partition of the event being
        # processed, and the agents write state after a take of many events: the write
        # runs as if inside an event of the key's own partition.
        filed = _Filed(self.partition_for_key(key))
        token = _current_event.set(weakref.ref(filed))  # type: ignore[arg-type]
        try:
            super().__setitem__(key, value)
        finally:
            _current_event.reset(token)


class _Filed:
    """What Faust's stores read of the current event: its message's partition."""

    __slots__ = ("__weakref__", "message")

    def __init__(self, partition: int) -> None:
        self.message = SimpleNamespace(partition=partition)


def create_app(settings: Settings, policy: Policy) -> faust.App:
    """The worker's app; ValueError when the settings ask for an inventory view it may not
    serve."""
    view = settings.inventory_view and settings.stage != "ingest"
    if view:
        _check_view(settings)
    app = faust.App(
        settings.group_id,
        broker=[f"signinrisk://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        store=settings.store,
        datadir=settings.data_dir,
        # Faust starts the web server registered below (the inventory view) after table
        # recovery; its own aiohttp views (tables, router, stats) are never built.
        web_enabled=view,
        topic_partitions=settings.partitions,
        topic_allow_declare=False,  # topics are created by `signin-risk topics create`
        # Faust's leader election needs a topic of its own that no broker without
        # auto-creation has; nothing here runs on the leader only.
        topic_disable_leader=True,
        Table=KeyedTable,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_commit_interval=settings.commit_interval_s,
        # Signins batches may exceed max_batch_bytes by one record; dead letters are capped.
        producer_max_request_size=max(
            settings.max_batch_bytes * 2, settings.max_deadletter_bytes + 64 * 1024
        ),
        # Raw events are envelopes of up to 1 MB: a 1 MB fetch (Faust's default) returns a
        # handful, and a broker that holds each fetch for fetch_max_wait caps throughput.
        consumer_max_fetch_size=16 * 1024 * 1024,
        # Event Hubs' Kafka endpoint closes idle connections at 240 s: its profile sets 180 s.
        consumer_connections_max_idle_ms=settings.connections_max_idle_ms,
        producer_connections_max_idle_ms=settings.connections_max_idle_ms,
        consumer_metadata_max_age_ms=settings.metadata_max_age_ms,
        producer_metadata_max_age_ms=settings.metadata_max_age_ms,
        producer_compression_type=settings.compression_type,
    )
    # Read by pipeline.runtime.transport.
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms  # type: ignore[attr-defined]
    app.verify_log_end = settings.verify_log_end  # type: ignore[attr-defined]

    raw = app.topic(settings.topic("raw"), key_serializer="raw", value_serializer="raw")
    signins = app.topic(
        settings.topic("signins"),
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )
    alerts = app.topic(settings.topic("alerts"), key_serializer="raw", value_serializer="raw")
    incidents = app.topic(settings.topic("incidents"), key_serializer="raw", value_serializer="raw")
    deadletter = app.topic(
        settings.topic("deadletter"), key_serializer="raw", value_serializer="raw"
    )

    async def dead_letter(message: Any, rejected: Rejected) -> Any:
        """Send a reject to the dead-letter topic. A send that fails is logged and counted,
        never raised: the agent must go on (and commit) past input it cannot keep."""
        metrics.REJECTED.labels(rejected.reason).inc()
        where = _where(message)
        if rejected.reason == "processing-error":
            log.error("processing error on %s: %s", where, rejected.describe())
        letter = rejected.to_json(
            settings.max_deadletter_bytes,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            time=format_time(datetime.now(UTC)),
        )
        try:
            sent = await deadletter.send(value=letter)
        except Exception as exc:
            _dead_letter_failed(where, rejected, exc)
            return _done()
        return asyncio.ensure_future(_settled(sent, where, rejected))

    judge: Judge | None = None
    if settings.stage in ("all", "detect"):
        engine = Engine(policy)
        by_ip = app.topic(
            settings.topic("by-ip"),
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.partitions,
        )
        # Values are the bytes pipeline.core.codec makes, read and written through KeyedState.
        tables = {
            name: app.Table(name, default=None, value_type=bytes, partitions=settings.partitions)
            for name in TABLES
        }
        stale = expiry(policy, engine.retention_s, settings.inventory_retention_days * 86400)
        users, addresses = (
            Sweeper(KeyedState(RULE_STATES, tables[name], deferred=True), engine, settings, stale)
            for name in TABLES
        )
        driver = Driver(engine, users.state, addresses.state, settings.partitions)
        ledger = Ledger(policy, users.state, addresses.state)
        kept = cast("Iterable[KeyedTable]", tables.values())
        judge = Judge(app, driver, ledger, users, addresses, alerts, incidents, kept)
        _publish_timer(app, judge, settings.commit_interval_s)
        app.publish_state = judge.publish  # type: ignore[attr-defined]  # read by transport
        _detect_agent(app, judge, signins, by_ip, dead_letter, settings)
        _by_ip_agent(app, judge, by_ip, dead_letter, settings)
        if view:
            app.web_server(_InventoryServer(app, settings, tables["user_state"]))
    if settings.stage in ("all", "ingest"):
        _ingest_agent(app, settings, raw, signins, dead_letter, judge)
    work = {settings.topic(name) for name in ("raw", "signins", "by-ip")}
    _lag_timer(app, frozenset(work))
    return app


def _lag_timer(
    app: faust.App, work: frozenset[str], interval_s: float = 5.0, stall_s: float = 15.0
) -> None:
    """Consumer lag of the topics this worker consumes for work, as Kafka lag exporters count
    it (log end minus committed), so a dashboard shows it without one; KEDA scales on the
    broker's own view. Table changelogs are left out: a worker reads them only to recover
    and never commits them, so their "lag" never drains and would alarm an idle pipeline. And the
    partitions of each topic this worker owns: fewer signins partitions than there are
    means it shares the group, and ingest re-keys through the hops.

    A partition that lags with no event of it in progress and no commit for ``stall_s``
    is read again from its committed offset. After a rebalance Faust can take a newly
    assigned partition's first records from the fetcher and never deliver them (seen with
    the embedded broker in about half the SIGKILL test's runs): without this the records would
    wait for the next rebalance. Redelivery is safe, as state is idempotent."""
    known: set[str] = set()
    stalls = Stalls(stall_s)
    for topic in work:  # 0 from the start, so a rate over it is defined before any reread
        metrics.PARTITION_REREADS.labels(topic)

    def observe_partitions() -> None:
        owned: dict[str, int] = {}
        for tp in app.assignor.assigned_actives():
            owned[tp.topic] = owned.get(tp.topic, 0) + 1
        # 0, not absent, for a subscribed topic of which this worker owns nothing (yet or
        # any more): a second worker may get no partition of a topic at all.
        known.update(name for channel in app.topics for name in channel.topics)
        known.update(owned)
        for topic in known:
            metrics.PARTITIONS_ASSIGNED.labels(topic).set(owned.get(topic, 0))

    @app.on_partitions_assigned.connect
    def on_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        observe_partitions()  # at once, not up to interval_s after a rebalance

    async def reread_stalled(tp: Any, end: int, committed: int, idle: bool) -> None:
        stalled_s = stalls.due(tp, end, committed, idle, time.monotonic())
        if stalled_s is None:
            return
        log.warning(
            "%s[%d] lags by %d with nothing in progress for %.0f s: reading it again from %d",
            tp.topic,
            tp.partition,
            end - committed,
            stalled_s,
            committed,
        )
        metrics.PARTITION_REREADS.labels(tp.topic).inc()
        await app.consumer.seek(tp, committed)

    @app.timer(interval_s)  # type: ignore[untyped-decorator]
    async def observe_lag() -> None:
        observe_partitions()
        consumer = app.consumer
        lag: dict[str, int] = {}
        busy = {m.tp for m in consumer._unacked_messages}  # type: ignore[attr-defined]
        for tp in consumer.assignment():
            if tp.topic not in work:
                continue
            end = consumer.highwater(tp)
            if end is None:  # not fetched from yet
                continue
            # Faust keeps no public view of what it committed.
            committed = consumer._committed_offset.get(tp) or 0  # type: ignore[attr-defined]
            lag[tp.topic] = lag.get(tp.topic, 0) + max(end - committed, 0)
            await reread_stalled(tp, end, committed, not app.rebalancing and tp not in busy)
        for topic, value in lag.items():
            metrics.CONSUMER_LAG.labels(topic).set(value)


class Stalls:
    """Which lagging partitions to read again: those with nothing in progress whose
    committed offset has not moved for ``stall_s`` (see ``_lag_timer``)."""

    def __init__(self, stall_s: float) -> None:
        self._stall_s = stall_s
        self._since: dict[Any, tuple[int, float]] = {}  # partition -> (committed, since)

    def due(self, tp: Any, end: int, committed: int, idle: bool, now: float) -> float | None:
        """How long ``tp`` has been stuck when it is due to be read again, else None. A
        partition read again is given another ``stall_s`` before the next time."""
        if not idle or committed >= end:
            self._since.pop(tp, None)
            return None
        seen = self._since.get(tp)
        if seen is None or seen[0] != committed:
            self._since[tp] = (committed, now)
            return None
        if now - seen[1] < self._stall_s:
            return None
        self._since[tp] = (committed, now)
        return now - seen[1]


DeadLetter = Callable[[Any, Rejected], Awaitable[Any]]


Settled = list[tuple[int, list[tuple[Alert, bytes, bytes | None]]]]
"""Per raw event (enqueue time): each alert, as sent, and its incident's new version."""


class Judge:
    """Detection as the agents run it: the driver, the ledger of incidents and inventory
    kept in the same state, the sweepers, and the alerts and incidents topics.

    The tables are written once per commit interval, not per take: in a busy tenant a user
    is touched by most takes, and each write is a changelog record of the user's whole
    state. An event stays unacknowledged (Faust commits no offset at or beyond it) until
    the state its take flushed is written and the broker has it (``hold``, then
    ``publish``): a crash loses only state whose events are redelivered, and the
    idempotent positions (``pipeline.core.driver``) keep state ahead of offsets harmless.
    """

    def __init__(
        self,
        app: faust.App,
        driver: Driver,
        ledger: Ledger,
        users: Sweeper,
        addresses: Sweeper,
        alerts: Any,
        incidents: Any,
        tables: Iterable[KeyedTable],
    ) -> None:
        self.app, self.driver, self.ledger = app, driver, ledger
        self.users, self.addresses = users, addresses
        self.alerts, self.incidents = alerts, incidents
        self._tables = list(tables)
        self._held: list[Any] = []
        self._publishing = asyncio.Lock()  # acknowledgements in the order events were held

    async def hold(self, events: Sequence[Any]) -> None:
        """Keep a finished take's events unacknowledged until ``publish``. Every take of a
        stage that keeps state is held, failed ones too: Faust commits the first run of
        acknowledged offsets, so an acknowledgement must never overtake a held event's."""
        for event in events:
            event.message.incref()  # take_events' own ack then leaves one reference
            self._held.append(event.message)
        if self.app.rebalancing:  # revocation waits for every event to be acknowledged
            await self.publish()

    async def publish(self) -> None:
        """Write every key the takes since the last call changed, once, and acknowledge
        their events when the broker has those changelog records (Faust's flush before a
        commit gives up on its buffer after 0.1 s without a send, so it is not relied on)."""
        async with self._publishing:
            self.users.state.write()
            self.addresses.state.write()
            held, self._held = self._held, []
            sent = [future for table in self._tables for future in table.take_sent()]
            try:
                await asyncio.gather(*sent)
            except BaseException:
                self._held[:0] = held  # acknowledged by a later publish, or redelivered
                raise
            consumer = self.app.consumer
            for message in held:
                message.ack(consumer)

    def settle(
        self,
        found: list[tuple[int, list[Alert]]],
        enriched: Sequence[Enriched] = (),
        users: bool = True,
        addresses: bool = True,
    ) -> Settled:
        """A take's alerts into their incidents and its sign-ins into the inventory, in the
        state the take's flush writes (only the tables this stage flushes: see
        ``Ledger.track``). Part of judging the take: a failure here discards it too."""
        self.ledger.observe(enriched)
        track = self.ledger.track
        return [(t, [(a, *track(a, users, addresses)) for a in alerts]) for t, alerts in found]

    async def send(self, outbox: Outbox, settled: Settled) -> None:
        for enqueued_ms, found in settled:
            for alert, document, incident in found:
                metrics.ALERTS.labels(
                    alert.tenant_id or "unknown", alert.rule, alert.severity
                ).inc()
                await outbox.add(await self.alerts.send(key=alert.id.encode(), value=document))
                if incident is not None:
                    await self._send_incident(outbox, incident)
            metrics.END_TO_END.observe(max(0.0, time.time() - enqueued_ms / 1000))

    async def _send_incident(self, outbox: Outbox, incident: bytes) -> None:
        version = orjson.loads(incident)
        metrics.INCIDENTS.labels(version["kind"], version["severity"]).inc()
        key = str(version["id"]).encode()
        await outbox.add(await self.incidents.send(key=key, value=incident))


def _publish_timer(app: faust.App, judge: Judge, interval_s: float) -> None:
    @app.timer(interval_s)  # type: ignore[untyped-decorator]
    async def publish_state() -> None:
        await judge.publish()


def _can_judge_directly(app: faust.App, settings: Settings) -> bool:
    """This worker owns every signins partition, and what earlier takes re-keyed through
    the hop topics has been judged and committed. Going direct before that would judge
    newer sign-ins first: their addresses' windows would then move past the older failures
    still in by-ip, which would come too late to count (a restart lost whole sprays so)."""
    signins, hops = settings.topic("signins"), {settings.topic("signins"), settings.topic("by-ip")}
    mine = [tp for tp in app.assignor.assigned_actives() if tp.topic in hops]
    if len({tp.partition for tp in mine if tp.topic == signins}) != settings.partitions:
        return False
    consumer = app.consumer
    for tp in mine:
        end = consumer.highwater(tp)
        committed = consumer._committed_offset.get(tp) or 0  # type: ignore[attr-defined]
        if end is None or end > committed:
            return False
    return True


def _ingest_agent(
    app: faust.App,
    settings: Settings,
    raw: Any,
    signins: Any,
    dead_letter: DeadLetter,
    direct: Judge | None,
) -> None:
    everything = frozenset(range(settings.partitions))

    @app.agent(raw)
    async def ingest_agent(stream: faust.StreamT[bytes]) -> None:
        outbox = Outbox()
        # Many raw events per take: sends per second, not records, are what an agent pays.
        # take_events acks a take's events only after this body finished with them.
        takes = cast("faust.Stream[bytes]", stream).take_events(
            settings.batch_events, settings.batch_wait_s
        )
        async for events in takes:
            started = time.perf_counter()
            arrived = [(event.value, _enqueued_ms(event.message)) for event in events]
            origins = [(event.message.partition, event.message.offset) for event in events]
            # Checked per take: a worker joining the group ends the shortcut at once.
            if direct is not None and _can_judge_directly(app, settings):
                received = receive(arrived, settings.max_event_bytes, origins)
                rejected = received.rejected
                metrics.PROCESSING.labels("ingest").observe(time.perf_counter() - started)
                await _judge_directly(direct, outbox, received, events, everything, dead_letter)
            else:
                result = ingest(
                    arrived,
                    settings.partitions,
                    settings.max_event_bytes,
                    settings.max_batch_bytes,
                    origins,
                )
                rejected = result.rejected
                for batch in result.batches:
                    future = await signins.send(value=batch.data, partition=batch.partition)
                    await outbox.add(future, batch.records)
                metrics.PROCESSING.labels("ingest").observe(time.perf_counter() - started)
            for index, reject in rejected:
                await outbox.add(await dead_letter(events[index].message, reject))
            if direct is not None:  # state's, whether judged here or re-keyed
                await direct.hold(events)


async def _judge_directly(
    judge: Judge,
    outbox: Outbox,
    received: Received,
    events: Sequence[Any],
    partitions: frozenset[int],
    dead_letter: DeadLetter,
) -> None:
    """Both stages of detection on a take of raw events, without the re-key hops."""
    started = time.perf_counter()
    try:
        # Raw partitions interleave in a take as they were fetched: judged in event time
        # across them (each partition's order kept), as detect judges its batches.
        by_partition = [(segment.partition, [segment]) for segment in received.segments]
        result = judge.driver.segments(segments_in_event_time(by_partition), direct=True)
        settled = judge.settle(result.alerts, result.enriched)
    except Exception as exc:  # a bug must cost one take, never the worker
        judge.driver.discard()
        log.error("detect failed on a take of %d raw events: %s", len(events), type(exc).__name__)
        for index in received.sources:
            message = events[index].message
            await outbox.add(await dead_letter(message, processing_error(exc, events[index].value)))
        return
    await judge.send(outbox, settled)
    await outbox.drain()
    judge.driver.flush()
    judge.users.maybe_sweep(partitions, result.newest)
    judge.addresses.maybe_sweep(partitions, result.newest)
    metrics.observe_signins(result.enriched, result.risk_records)
    metrics.PROCESSING.labels("detect").observe(time.perf_counter() - started)


class Sweeper:
    """Drops idle keys from a stateful table, a partition at a time.

    Touched keys expire as they are touched; this catches keys never seen again. It deletes
    only keys of the partitions this worker processes (a table also holds standby copies of
    other workers' partitions, which are theirs to sweep).
    """

    def __init__(
        self,
        state: KeyedState[RuleStates],
        engine: Engine,
        settings: Settings,
        entries: Expiry,
    ) -> None:
        self.state, self._partitions = state, settings.partitions
        self._retention_s = engine.retention_s
        self._entries = entries
        """For the newest event time: the ``@`` entries (incident, inventory) that expire."""
        self._interval_s = settings.sweep_interval_s
        self._last: dict[int, float] = {}

    def maybe_sweep(self, partitions: frozenset[int], newest_event_s: float) -> None:
        now = time.monotonic()
        due = {p for p in partitions if now - self._last.get(p, now - 1e9) >= self._interval_s}
        if not due:
            return
        self._last.update(dict.fromkeys(due, now))
        mine = [k for k in self.state.stored_keys() if partition_for(k, self._partitions) in due]
        before = newest_event_s - self._retention_s
        dropped = expire(self.state, mine, before, self._entries(newest_event_s))
        metrics.STATE_KEYS_EXPIRED.inc(dropped)


def _detect_agent(
    app: faust.App,
    judge: Judge,
    signins: Any,
    by_ip: Any,
    dead_letter: DeadLetter,
    settings: Settings,
) -> None:
    @app.agent(signins)
    async def detect_agent(stream: faust.StreamT[bytes]) -> None:
        outbox = Outbox()
        # A take's batches (one per signins partition, each spanning the raw take's time
        # range) are judged as one sequence in event time, so that the by-ip messages this
        # sends are in event time too (see pipeline.core.driver.segments_in_event_time).
        takes = cast("faust.Stream[bytes]", stream).take_events(
            settings.batch_events, settings.batch_wait_s
        )
        async for events in takes:
            started = time.perf_counter()
            try:
                batches = [(e.message.partition, decode_batch(e.value)) for e in events]
                result = judge.driver.segments(segments_in_event_time(batches))
                settled = judge.settle(result.alerts, result.enriched, addresses=False)
            except Exception as exc:  # a bug must cost one take, never the worker
                judge.driver.discard(addresses=False)
                for event in events:
                    await outbox.add(
                        await dead_letter(event.message, processing_error(exc, event.value))
                    )
                await judge.hold(events)
                continue
            for partition, segments in result.by_ip.items():
                data = encode_observations(segments)
                await outbox.add(await by_ip.send(value=data, partition=partition))
            await judge.send(outbox, settled)
            await outbox.drain()
            judge.driver.flush(addresses=False)
            mine = frozenset(event.message.partition for event in events)
            judge.users.maybe_sweep(mine, result.newest)
            await judge.hold(events)
            metrics.observe_signins(result.enriched, result.risk_records)
            metrics.PROCESSING.labels("detect").observe(time.perf_counter() - started)


def _by_ip_agent(
    app: faust.App, judge: Judge, by_ip: Any, dead_letter: DeadLetter, settings: Settings
) -> None:
    """The IP-keyed rules (password spray) over observations re-keyed by source address."""

    @app.agent(by_ip)
    async def by_ip_agent(stream: faust.StreamT[bytes]) -> None:
        outbox = Outbox()
        takes = cast("faust.Stream[bytes]", stream).take_events(
            settings.batch_events, settings.batch_wait_s
        )
        async for events in takes:
            started = time.perf_counter()
            try:
                batch = in_event_time([decode_observations(event.value) for event in events])
                settled = judge.settle(judge.driver.by_ip(batch), users=False)
            except Exception as exc:  # a bug must cost one take, never the worker
                judge.driver.discard(users=False)
                for event in events:
                    await outbox.add(
                        await dead_letter(event.message, processing_error(exc, event.value))
                    )
                await judge.hold(events)
                continue
            await judge.send(outbox, settled)
            await outbox.drain()
            judge.driver.flush(users=False)
            newest = max((o.time for _, located in batch for o, _, _ in located), default=0.0)
            mine = frozenset(event.message.partition for event in events)
            judge.addresses.maybe_sweep(mine, newest)
            await judge.hold(events)
            metrics.PROCESSING.labels("by-ip").observe(time.perf_counter() - started)


def _dead_letter_failed(where: str, rejected: Rejected, exc: BaseException) -> None:
    metrics.DEADLETTER_FAILURES.inc()
    log.error(
        "dead letter for %s not sent (%s): %s", where, type(exc).__name__, rejected.describe()
    )


async def _settled(sent: Awaitable[Any], where: str, rejected: Rejected) -> None:
    """A dead letter's acknowledgement; its failure is reported, not raised."""
    try:
        await sent
    except Exception as exc:
        _dead_letter_failed(where, rejected, exc)


def _done() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


def _enqueued_ms(message: Any) -> int:
    return int((message.timestamp or time.time()) * 1000)


def _where(message: Any) -> str:
    return f"{message.topic}[{message.partition}]@{message.offset}"


def _check_view(settings: Settings) -> None:
    """Refuse an inventory view that would expose users: beyond loopback without a token,
    or pseudonyms without their key."""
    token = settings.inventory_view_token.get_secret_value()
    refused = refuse_binding(settings.inventory_view_host, token)
    if refused:
        raise ValueError(f"{refused} (set SIGNIN_RISK_INVENTORY_VIEW_TOKEN)")
    if settings.inventory_view_pseudonymize and not settings.pseudonym_key.get_secret_value():
        raise ValueError(
            "SIGNIN_RISK_INVENTORY_VIEW_PSEUDONYMIZE needs SIGNIN_RISK_PSEUDONYM_KEY (a secret)"
        )


class _InventoryServer(Service):
    """The read-only inventory view (``pipeline.runtime.inventory_view``) as the worker's
    web server: aiohttp on the worker's event loop, so a request reads the table between
    takes, never half a take's state (written once per commit interval). Faust
    starts it once the tables are recovered. It answers from the users of the partitions
    this worker processes; with several workers each serves its own users."""

    def __init__(self, app: faust.App, settings: Settings, table: Any) -> None:
        super().__init__()
        self._app, self._settings, self._table = app, settings, table
        self._runner: web.AppRunner | None = None
        kinds = tuple(k for k in settings.inventory_view_pseudonymize.split(",") if k)
        key = settings.pseudonym_key.get_secret_value().encode()
        self._mask: Callable[[dict[str, Any]], dict[str, Any]] = (
            (lambda row: restrict(row, None, kinds, key))  # type: ignore[arg-type]
            if kinds
            else (lambda row: row)
        )

    async def on_start(self) -> None:
        server = web.Application()
        server.router.add_route("*", "/{path:.*}", self._answer)
        self._runner = web.AppRunner(server, access_log=None)
        await self._runner.setup()
        host, port = self._settings.inventory_view_host, self._settings.inventory_view_port
        await web.TCPSite(self._runner, host, port).start()
        log.warning("inventory view on http://%s:%d/inventory", host, port)

    async def on_stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _answer(self, request: web.Request) -> web.Response:
        # The table is read here, between the agents' steps; decoding and listing every
        # user's state (seconds for 100,000 users) runs in a thread, so detection goes on.
        signins, partitions = self._settings.topic("signins"), self._settings.partitions
        mine = {tp.partition for tp in self._app.assignor.assigned_actives() if tp.topic == signins}
        stored = list(self._table.items())

        def users() -> Iterator[tuple[str, Any]]:
            return inventories(
                (key, RULE_STATES.loads(value))
                for key, value in stored
                if value and partition_for(key, partitions) in mine
            )

        answer = await asyncio.to_thread(
            handle,
            request.method,
            request.path,
            request.query,
            request.headers.get("Authorization", ""),
            self._settings.inventory_view_token.get_secret_value(),
            users,
            self._mask,
        )
        headers = {"Content-Type": answer.content_type, **answer.headers}
        return web.Response(status=answer.status, body=answer.body, headers=headers)
