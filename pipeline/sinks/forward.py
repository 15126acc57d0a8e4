"""``signin-risk forward --sink NAME [--stream alerts|incidents]``: the alerts topic (or the
incidents topic) into one sink, at least once.

Each sink is its own consumer group (``<app_id>-sink-<name>``, ``-incidents`` appended for
the incidents stream), so a slow or broken sink holds back neither detection nor another
sink. Sinks and formats take an incident as they take an alert (``pipeline.alerts``). The
forwarder reads at most ``buffer`` alerts ahead, hands them to the sink in batches, and
commits offsets only once every alert read was delivered or refused for good. A refused
alert (the receiver's 4xx) goes to the sink's dead-letter topic with the reason and its
bytes. A failed send is retried with exponential backoff and jitter; after
``sink_breaker_failures`` failures in a row the circuit opens: nothing is sent for
``sink_breaker_cooldown_s``, then a single alert probes the receiver before full batches
resume. A stop (SIGTERM) cuts every wait short, including the wait for Kafka at start: a
send or commit in flight gets ``FLUSH_S`` to finish, and alerts not committed are simply
read again by the next forwarder.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from kafka.errors import KafkaError as AdminError

from pipeline.alerts.privacy import restrict
from pipeline.core.rejects import Rejected
from pipeline.runtime import metrics
from pipeline.runtime.procs import (
    FLUSH_S,
    Deadline,
    Stopped,
    in_thread,
    pause,
    start_kafka,
    stop_on_signals,
    unless_stopped,
)
from pipeline.runtime.settings import Settings
from pipeline.runtime.topics import TopicSpec, create_topics
from pipeline.sinks import AlertDict, Refusal, SendError, Sink, SinkBase

log = logging.getLogger(__name__)
HOLD_MS = 24 * 3600 * 1000
"""The consumer may go this long between polls: while a receiver is down the forwarder holds
its buffer and stops polling on purpose, and must not be evicted from its group for it."""


def sink_group(settings: Settings, sink: str, stream: str = "alerts") -> str:
    group = f"{settings.app_id}-sink-{sink}"
    return group if stream == "alerts" else f"{group}-{stream}"


def sink_deadletter(settings: Settings, sink: str) -> str:
    return settings.topic(f"deadletter.sink-{sink}")


@dataclass
class Breaker:
    """Consecutive failures open the circuit; after the cooldown one probe may go."""

    failures_to_open: int
    cooldown_s: float
    failures: int = 0
    opened_at: float | None = None

    def state(self, now: float) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if now - self.opened_at >= self.cooldown_s else "open"

    def remaining(self, now: float) -> float:
        """Seconds until an open circuit lets a probe through."""
        if self.opened_at is None:
            return 0.0
        return max(self.cooldown_s - (now - self.opened_at), 0.0)

    def success(self) -> None:
        self.failures, self.opened_at = 0, None

    def failure(self, now: float) -> None:
        self.failures += 1
        if self.failures >= self.failures_to_open:
            self.opened_at = now


@dataclass
class _Pending:
    message: ConsumerRecord[bytes, bytes]
    alert: AlertDict


@dataclass
class _Delivery:
    """One sink's delivery state between the consumer and the receiver."""

    settings: Settings
    sink: Sink
    producer: AIOKafkaProducer
    stopping: asyncio.Event
    breaker: Breaker
    pending: list[_Pending] = field(default_factory=list)
    delay: float = 0.0

    async def dead_letter(
        self, message: ConsumerRecord[bytes, bytes], reason: str, why: str
    ) -> None:
        """Refused alerts and unreadable records alike: reason, source, the bytes."""
        record = Rejected(reason, "", why, message.value or b"").to_json(
            sink=self.sink.name,
            topic=message.topic,
            partition=message.partition,
            offset=message.offset,
            time=datetime.now(UTC).isoformat(),
        )
        sent = self.producer.send_and_wait(
            sink_deadletter(self.settings, self.sink.name), record, key=message.key
        )
        await unless_stopped(sent, self.stopping, FLUSH_S)
        metrics.SINK_DEADLETTERED.labels(self.sink.name).inc()

    async def deliver(self) -> bool:
        """Empty ``pending`` into the sink; False if stopped first (nothing is committed).

        Raises ``Stopped`` when a stop cut a dead letter short."""
        name = self.sink.name
        gauge = metrics.SINK_BUFFER.labels(name)
        while self.pending:
            gauge.set(len(self.pending))
            state = self.breaker.state(time.monotonic())
            metrics.SINK_CIRCUIT_OPEN.labels(name).set(state != "closed")
            if state == "open":
                if not await pause(self.stopping, self.breaker.remaining(time.monotonic())):
                    return False
                continue
            size = 1 if state == "half-open" else self.sink.max_batch
            batch = self.pending[:size]
            started = time.perf_counter()
            error: Exception | None = None
            refused: tuple[Refusal, ...] | list[Refusal] = ()
            try:
                sending = self.sink.send([p.alert for p in batch])
                refused = await unless_stopped(sending, self.stopping, FLUSH_S)
                done = len(batch)
            except Stopped:  # cancelled mid-send: whatever reached the receiver comes again
                return False
            except SendError as exc:
                error, done, refused = exc, exc.done, exc.refused
            except Exception as exc:  # any receiver failure: keep the alerts and retry
                error, done = exc, 0
            for refusal in refused:
                await self.dead_letter(batch[refusal.index].message, "refused", refusal.reason)
            metrics.SINK_SENT.labels(name).inc(done - len(refused))
            del self.pending[:done]
            if error is None:
                metrics.SINK_LATENCY.labels(name).observe(time.perf_counter() - started)
                self.breaker.success()
                self.delay = 0.0
                continue
            metrics.SINK_FAILURES.labels(name).inc()
            self.breaker.failure(time.monotonic())
            self.delay = min(max(self.delay * 2, 0.2), self.settings.sink_backoff_max_s)
            wait = self.delay * random.uniform(0.5, 1.5)
            log.warning("sink %s failed (%s); retrying in %.1f s", name, error, wait)
            if not await pause(self.stopping, wait):
                return False
            metrics.SINK_RETRIES.labels(name).inc()
        gauge.set(0)
        metrics.SINK_CIRCUIT_OPEN.labels(name).set(0)
        return True


def _decode(value: bytes | None) -> AlertDict | str:
    """The alert, or why the record on the alerts topic is not one."""
    try:
        alert = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        return str(exc)
    return alert if isinstance(alert, dict) else "not a JSON object"


def _controls(settings: Settings, config: SinkBase) -> Callable[[AlertDict], AlertDict]:
    fields = frozenset(config.fields) if config.fields is not None else None
    key = settings.pseudonym_key.get_secret_value().encode()
    if config.pseudonymize and not key:
        raise ValueError("pseudonymize needs SIGNIN_RISK_PSEUDONYM_KEY (a secret) to be set")
    return lambda alert: restrict(alert, fields, config.pseudonymize, key)


async def forward(
    settings: Settings,
    sink: Sink,
    config: SinkBase,
    stopping: asyncio.Event | None = None,
    stream: str = "alerts",
) -> None:
    """Deliver the ``stream`` topic (alerts or incidents) to ``sink`` until ``stopping`` (or
    SIGTERM/SIGINT). While Kafka is unreachable at start it retries with backoff."""
    controls = _controls(settings, config)
    if stopping is None:
        stopping = stop_on_signals(f"the forwarder of sink {sink.name}")
    closing = Deadline()
    what = f"the forwarder of sink {sink.name}"
    producer = consumer = None
    try:
        producer = await start_kafka(lambda: _producer(settings), stopping, what)
        if producer is None:
            return
        await _create_deadletter(settings, sink.name, stopping)
        consumer = await start_kafka(
            lambda: _consumer(settings, sink.name, config, stream), stopping, what
        )
        if consumer is None:
            return
        breaker = Breaker(settings.sink_breaker_failures, settings.sink_breaker_cooldown_s)
        delivery = _Delivery(settings, sink, producer, stopping, breaker)
        await _run(consumer, delivery, controls, config.buffer)
    except Stopped:
        pass
    finally:
        if consumer is not None:
            await closing.close(consumer.stop(), "closing the Kafka consumer")
        if producer is not None:
            await closing.close(producer.stop(), "closing the Kafka producer")
        await closing.close(sink.close(), f"closing sink {sink.name}")


async def _run(
    consumer: AIOKafkaConsumer,
    delivery: _Delivery,
    controls: Callable[[AlertDict], AlertDict],
    buffer: int,
) -> None:
    """Read, deliver, commit, until stopped; raises ``Stopped`` from a cut-short step."""
    stopping = delivery.stopping
    while not stopping.is_set():
        batches = await consumer.getmany(timeout_ms=200, max_records=buffer)
        for message in (m for messages in batches.values() for m in messages):
            alert = _decode(message.value)
            if isinstance(alert, str):
                await delivery.dead_letter(message, "invalid-json", alert)
            else:
                delivery.pending.append(_Pending(message, controls(alert)))
        if not batches or not await delivery.deliver():
            continue
        # Delivered: the commit may take FLUSH_S more when a stop comes meanwhile, so the
        # next forwarder does not send these again.
        await unless_stopped(consumer.commit(), stopping, FLUSH_S)


def _producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        acks="all", compression_type=settings.compression_type, **settings.aiokafka_config()
    )


def _consumer(settings: Settings, sink: str, config: SinkBase, stream: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        settings.topic(stream),
        group_id=sink_group(settings, sink, stream),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        rebalance_timeout_ms=int(settings.rebalance_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_interval_s * 1000),
        max_poll_interval_ms=HOLD_MS,
        **settings.aiokafka_config(),
    )


async def _create_deadletter(settings: Settings, sink: str, stopping: asyncio.Event) -> None:
    """Create the sink's dead-letter topic if missing; kafka-python's admin client blocks,
    so it runs in a thread a stop can walk away from."""
    spec = TopicSpec(sink_deadletter(settings, sink), settings.partitions, False)
    try:
        await unless_stopped(in_thread(lambda: create_topics(settings, specs=[spec])), stopping)
    except AdminError as exc:  # e.g. Event Hubs' Kafka endpoint: create the hub beforehand
        log.warning("cannot create %s (%s); it must exist already", spec.name, exc)
