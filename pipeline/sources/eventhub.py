"""``signin-risk bridge``: Event Hubs (native AMQP) into the raw Kafka topic, at least once.

Each event's body goes to ``raw`` unchanged, so ingest and its dead-letter path see exactly
what Event Hubs delivered. A partition's checkpoint moves only after Kafka acknowledged
every event up to it; while Kafka is down the batch is retried and nothing is checkpointed,
so a restart replays at most what was sent but not yet checkpointed (duplicates, never
gaps). A stop (SIGTERM) cuts every backoff short: a batch Kafka acknowledges within
``FLUSH_S`` is still checkpointed, any other is left to be read again. Event Hubs
partition ``p`` goes to raw partition ``p mod raw_partitions``, which keeps each
partition's order.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient, PartitionContext
from pydantic import SecretStr

from pipeline.runtime import metrics
from pipeline.runtime.procs import (
    FLUSH_S,
    RETRY_MAX_S,
    Deadline,
    Stopped,
    bounded,
    pause,
    start_kafka,
    stop_on_signals,
    unless_stopped,
)
from pipeline.runtime.settings import Settings
from pipeline.sources.checkpoints import checkpoint_store

log = logging.getLogger(__name__)
Client = TypeVar("Client", EventHubConsumerClient, EventHubProducerClient)
RawMessage = tuple[bytes, bytes, list[tuple[str, bytes]]]
"""Key, value and headers of one event on the raw topic."""


def eventhub_client(
    cls: type[Client], secret: SecretStr, namespace: str, hub: str, **options: Any
) -> Client:
    """A client from a connection string, or from a namespace with Entra ID
    (``DefaultAzureCredential``: managed identity, workload identity, environment, CLI)."""
    conn_str = secret.get_secret_value()
    if conn_str:
        return cls.from_connection_string(conn_str, eventhub_name=hub or None, **options)
    if not namespace or not hub:
        raise ValueError("set a connection string, or a namespace and an event hub name")
    from azure.identity.aio import DefaultAzureCredential

    return cls(namespace, hub, credential=DefaultAzureCredential(), **options)


def starting_position(value: str) -> str | datetime:
    """``earliest`` / ``latest`` / an ISO time, as the SDK spells them."""
    if value == "earliest":
        return "-1"
    if value == "latest":
        return "@latest"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"eventhub_starting_position: {value!r} is not earliest, latest or an ISO time"
        ) from None
    if moment.tzinfo is None:
        raise ValueError(f"eventhub_starting_position: {value!r} needs a time zone")
    return moment


def raw_message(
    event: EventData, partition_id: str
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers of one event on the raw topic."""
    sequence = event.sequence_number
    enqueued = event.enqueued_time
    headers = [
        ("eventhub-partition", partition_id.encode()),
        ("eventhub-sequence-number", str(sequence).encode()),
        ("eventhub-offset", str(event.offset).encode()),
        ("eventhub-enqueued-time", enqueued.isoformat().encode() if enqueued else b""),
    ]
    return f"{partition_id}:{sequence}".encode(), event_body(event), headers


def event_body(event: EventData) -> bytes:
    """The data sections of an event, joined: what the diagnostic setting sent."""
    body: Any = event.body
    return body if isinstance(body, bytes) else b"".join(body)


class Bridge:
    """The per-batch callback and its state: what was produced, per partition."""

    def __init__(
        self, settings: Settings, producer: AIOKafkaProducer, stopping: asyncio.Event
    ) -> None:
        self._producer = producer
        self._topic = settings.topic("raw")
        self._raw_partitions = settings.raw_partitions
        self.produced: dict[str, int] = {}
        """Partition id -> last sequence number Kafka acknowledged."""
        self.stopping = stopping
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def on_batch(self, context: PartitionContext, events: Sequence[EventData]) -> None:
        if not events or self.stopping.is_set():
            return  # not checkpointed: read again after a restart
        self._busy += 1
        self._idle.clear()
        try:
            await self._forward(context, events)
        finally:
            self._busy -= 1
            if not self._busy:
                self._idle.set()

    async def idle(self) -> None:
        """Until no batch is being forwarded: a stop waits for these before closing."""
        await self._idle.wait()

    async def _forward(self, context: PartitionContext, events: Sequence[EventData]) -> None:
        partition_id = context.partition_id
        target = int(partition_id) % self._raw_partitions if partition_id.isdigit() else None
        messages = [raw_message(event, partition_id) for event in events]
        delay = 0.5
        while True:
            try:
                await unless_stopped(self._produce(messages, target), self.stopping, FLUSH_S)
                break
            except Stopped:
                log.info(
                    "stopping: %d event(s) of partition %s not acknowledged, not checkpointed",
                    len(events),
                    partition_id,
                )
                return
            except KafkaError as exc:
                metrics.BRIDGE_RETRIES.inc()
                log.warning(
                    "Kafka did not take %d event(s) of partition %s (%s); retrying in %.1f s",
                    len(events),
                    partition_id,
                    type(exc).__name__,
                    delay,
                )
                if not await pause(self.stopping, delay * random.uniform(0.8, 1.2)):
                    log.info("stopping: partition %s not checkpointed past it", partition_id)
                    return
                delay = min(delay * 2, RETRY_MAX_S)
        self.produced[partition_id] = events[-1].sequence_number or 0
        metrics.BRIDGE_EVENTS.inc(len(events))
        metrics.BRIDGE_BYTES.inc(sum(len(value) for _, value, _ in messages))
        try:  # acknowledged: worth checkpointing even while stopping, if the store answers
            await unless_stopped(context.update_checkpoint(events[-1]), self.stopping, FLUSH_S)
        except Stopped:
            log.warning("checkpoint of partition %s not stored before the stop", partition_id)

    async def _produce(self, messages: list[RawMessage], partition: int | None) -> None:
        """Send all, then wait for every acknowledgement: the checkpoint waits on this."""
        futures = [
            await self._producer.send(
                self._topic, value=value, key=key, headers=headers, partition=partition
            )
            for key, value, headers in messages
        ]
        await asyncio.gather(*futures)


async def _watch_lag(client: EventHubConsumerClient, bridge: Bridge, interval_s: float) -> None:
    """Lag per partition from the hub's own last enqueued sequence number."""
    while True:
        try:
            for partition_id in await client.get_partition_ids():
                props = await client.get_partition_properties(partition_id)
                last = props["last_enqueued_sequence_number"]
                done = bridge.produced.get(partition_id, props["beginning_sequence_number"] - 1)
                metrics.EVENTHUB_LAG.labels(partition_id).set(max(0, last - done))
        except Exception as exc:  # the lag is a metric: a failed poll must not stop the bridge
            log.warning("could not read partition properties: %s", type(exc).__name__)
        await asyncio.sleep(interval_s)


def _producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        acks="all",
        linger_ms=5,
        max_request_size=settings.max_event_bytes + 64 * 1024,
        compression_type=settings.compression_type,
        **settings.aiokafka_config(),
    )


async def run_bridge(settings: Settings, stopping: asyncio.Event | None = None) -> None:
    """Read every partition of the hub into the raw topic until ``stopping`` is set (by
    default: SIGTERM or SIGINT). While Kafka is unreachable at start it retries with
    backoff, before it claims any partition."""
    if stopping is None:
        stopping = stop_on_signals("the bridge")
    started = time.monotonic()
    closing = Deadline()
    store = checkpoint_store(settings)
    producer = None
    try:
        producer = await start_kafka(lambda: _producer(settings), stopping, "the bridge")
        if producer is None:
            log.info("bridge stopped before Kafka was reachable")
        else:
            await _bridge(settings, stopping, store, producer, closing)
    finally:
        if producer is not None:
            await closing.close(producer.stop(), "closing the Kafka producer")
        if hasattr(store, "close"):
            await closing.close(_maybe_await(store.close()), "closing the checkpoint store")
    log.info("bridge stopped after %.0f s", time.monotonic() - started)


async def _bridge(
    settings: Settings,
    stopping: asyncio.Event,
    store: Any,
    producer: AIOKafkaProducer,
    closing: Deadline,
) -> None:
    """Receive until stopped; then let in-flight batches finish and close the hub client."""
    bridge = Bridge(settings, producer, stopping)
    client = eventhub_client(
        EventHubConsumerClient,
        settings.eventhub_connection_string,
        settings.eventhub_namespace,
        settings.eventhub_name,
        consumer_group=settings.eventhub_consumer_group,
        checkpoint_store=store,
        load_balancing_interval=settings.eventhub_load_balancing_interval_s,
    )
    receiving = asyncio.create_task(
        client.receive_batch(
            bridge.on_batch,
            max_batch_size=settings.eventhub_batch_size,
            max_wait_time=settings.eventhub_max_wait_s,
            starting_position=starting_position(settings.eventhub_starting_position),
        )
    )
    lag = asyncio.create_task(_watch_lag(client, bridge, settings.eventhub_lag_interval_s))
    stop = asyncio.create_task(stopping.wait())
    await asyncio.wait([receiving, stop], return_when=asyncio.FIRST_COMPLETED)
    stopping.set()  # also when the receiver ended by itself: batches in flight give up
    stop.cancel()
    lag.cancel()
    await bounded(bridge.idle(), FLUSH_S + 0.2, "batches in flight")
    await closing.close(client.close(), "closing the Event Hubs client")
    receiving.cancel()
    await asyncio.gather(receiving, lag, return_exceptions=True)
    if not receiving.cancelled() and receiving.exception():
        raise RuntimeError("the Event Hubs receiver stopped") from receiving.exception()


async def _maybe_await(value: Any) -> None:
    if asyncio.iscoroutine(value):
        await value
