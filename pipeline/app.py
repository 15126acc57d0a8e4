"""The Faust application: topics, the user_risk table, and two thin agents around the core.

ingest: raw Event Hubs envelopes -> parse -> one batch per signins partition; rejects ->
deadletter. detect: batches -> risk records update the table, sign-ins are judged -> alerts.
Each agent awaits the broker's acknowledgement of everything an event produced before it
takes the next one, so a committed offset never runs ahead of its outputs (at-least-once).
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
            metrics.IN_FLIGHT.inc(result.records)
            pending = [
                await signins.send(value=batch, partition=partition)
                for partition, batch in result.batches.items()
            ]
            pending += [await dead_letter(message, rejected) for rejected in result.rejected]
            await asyncio.gather(*pending)
            metrics.IN_FLIGHT.dec(result.records)
            metrics.PROCESSING.labels("ingest").observe(time.perf_counter() - started)

    @app.agent(signins)
    async def detect_agent(stream: faust.StreamT[bytes]) -> None:
        book = RiskBook(user_risk)
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
            pending = [
                await alerts.send(key=alert.id.encode(), value=alert_json(alert)) for alert in found
            ]
            if pending:
                await asyncio.gather(*pending)
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
