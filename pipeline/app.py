"""The Faust application: topics, the user_risk table, and two thin agents around the core.

ingest: raw Event Hubs envelopes -> parse -> one batch per signins partition; rejects ->
deadletter. detect: batches -> risk records update the table, sign-ins are judged -> alerts.
Delivery is at-least-once: Faust flushes the producer (waits for every send in flight to be
acknowledged) before it commits offsets, so a committed offset never runs ahead of what its
events produced. Agents therefore never wait for a broker round trip per event; they only
bound how many sends are unacknowledged (``Outbox``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import faust

from pipeline import metrics
from pipeline.detect import Engine, alert_json
from pipeline.enrich import Enriched
from pipeline.ingest import ingest
from pipeline.parse import Rejected
from pipeline.policy import Policy
from pipeline.records import Alert
from pipeline.risk import RiskBook
from pipeline.settings import Settings
from pipeline.timeparse import format_time
from pipeline.wire import decode_batch

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

    ``records`` counts what the pending sends carry, for the in-flight gauge.
    """

    def __init__(self, limit: int = 512) -> None:
        self._pending: list[Any] = []
        self._records = 0
        self._limit = limit

    async def add(self, future: Any, records: int = 0) -> None:
        self._pending.append(future)
        self._records += records
        metrics.IN_FLIGHT.inc(records)
        if len(self._pending) >= self._limit:
            await self.drain()

    async def drain(self) -> None:
        pending, self._pending = self._pending, []
        await asyncio.gather(*pending)
        metrics.IN_FLIGHT.dec(self._records)
        self._records = 0


def create_app(settings: Settings, policy: Policy) -> faust.App:
    app = faust.App(
        settings.app_id,
        broker=[f"signinrisk://{host.strip()}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        store=settings.store,
        web_enabled=False,
        topic_partitions=settings.partitions,
        topic_allow_declare=False,  # topics are created by `signin-risk topics create`
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_commit_interval=settings.commit_interval_s,
        producer_max_request_size=max(settings.max_event_bytes * 2, 1024 * 1024),
        # Raw events are envelopes of up to 1 MB: a 1 MB fetch (Faust's default) returns a
        # handful, and a broker that holds each fetch for fetch_max_wait caps throughput.
        consumer_max_fetch_size=16 * 1024 * 1024,
    )
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms  # type: ignore[attr-defined]  # read by pipeline.transport

    raw = app.topic(settings.topic("raw"), key_serializer="raw", value_serializer="raw")
    signins = app.topic(
        settings.topic("signins"),
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.partitions,
    )
    alerts = app.topic(settings.topic("alerts"), key_serializer="raw", value_serializer="raw")
    deadletter = app.topic(
        settings.topic("deadletter"), key_serializer="raw", value_serializer="raw"
    )
    user_risk = app.Table("user_risk", default=None, partitions=settings.partitions)
    engine = Engine(policy)

    async def dead_letter(message: Any, rejected: Rejected) -> Any:
        metrics.REJECTED.labels(rejected.reason).inc()
        return await deadletter.send(
            value=rejected.to_json(
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                time=format_time(datetime.now(UTC)),
            )
        )

    @app.agent(raw)
    async def ingest_agent(stream: faust.StreamT[bytes]) -> None:
        outbox = Outbox()
        async for event in stream.events():
            started = time.perf_counter()
            message = event.message
            try:
                result = ingest(
                    event.value,
                    int((message.timestamp or time.time()) * 1000),
                    settings.partitions,
                    settings.max_event_bytes,
                )
            except Exception as exc:  # a bug must cost one event, never the worker
                log.exception(
                    "ingest failed on %s[%s]@%s", message.topic, message.partition, message.offset
                )
                await (await dead_letter(message, _processing_error(exc, event.value)))
                continue
            for partition, batch in result.batches.items():
                future = await signins.send(value=batch, partition=partition)
                await outbox.add(future, result.counts[partition])
            for rejected in result.rejected:
                await outbox.add(await dead_letter(message, rejected))
            metrics.PROCESSING.labels("ingest").observe(time.perf_counter() - started)

    @app.agent(signins)
    async def detect_agent(stream: faust.StreamT[bytes]) -> None:
        book = RiskBook(user_risk)
        outbox = Outbox()
        async for event in stream.events():
            started = time.perf_counter()
            try:
                enqueued_ms, found, enriched = _detect(engine, book, event.value)
            except Exception as exc:  # a bug must cost one batch, never the worker
                log.exception(
                    "detect failed on partition %s@%s",
                    event.message.partition,
                    event.message.offset,
                )
                await (await dead_letter(event.message, _processing_error(exc, event.value)))
                continue
            for alert in found:
                await outbox.add(await alerts.send(key=alert.id.encode(), value=alert_json(alert)))
            if found:
                metrics.END_TO_END.observe(max(0.0, time.time() - enqueued_ms / 1000))
            metrics.observe_signins(enriched)
            metrics.PROCESSING.labels("detect").observe(time.perf_counter() - started)

    return app


def _detect(engine: Engine, book: RiskBook, data: bytes) -> tuple[int, list[Alert], list[Enriched]]:
    """One signins batch through the core, in delivery order; the same calls as ``scan``."""
    enqueued_ms, records = decode_batch(data)
    found: list[Alert] = []
    enriched: list[Enriched] = []
    for record in records:
        judged, alerts = engine.process(record, book)
        if judged is None:
            metrics.RISK_RECORDS.labels(record.category.value).inc()
            continue
        enriched.append(judged)
        for alert in alerts:
            metrics.ALERTS.labels(alert.rule, alert.severity).inc()
        found += alerts
    return enqueued_ms, found, enriched


def _processing_error(exc: Exception, raw: bytes) -> Rejected:
    return Rejected("processing-error", type(exc).__name__, str(exc)[:500], raw)
