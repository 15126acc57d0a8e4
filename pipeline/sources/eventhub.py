"""``signin-risk bridge``: Event Hubs (native AMQP) into the raw Kafka topic, at least once.

Each event's body goes to ``raw`` unchanged, so ingest and its dead-letter path see exactly
what Event Hubs delivered. A partition's checkpoint moves only after Kafka acknowledged
every event up to it; while Kafka is down the batch is retried and nothing is checkpointed,
so a restart replays at most what was sent but not yet checkpointed (duplicates, never
gaps). Event Hubs partition ``p`` goes to raw partition ``p mod raw_partitions``, which keeps
each partition's order.
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

from pipeline import metrics
from pipeline.procs import stop_on_signals
from pipeline.settings import Settings
from pipeline.sources.checkpoints import checkpoint_store

log = logging.getLogger(__name__)
Client = TypeVar("Client", EventHubConsumerClient, EventHubProducerClient)
RETRY_MAX_S = 30.0
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

    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self._producer = producer
        self._topic = settings.topic("raw")
        self._raw_partitions = settings.raw_partitions
        self.produced: dict[str, int] = {}
        """Partition id -> last sequence number Kafka acknowledged."""
        self.stopping = asyncio.Event()

    async def on_batch(self, context: PartitionContext, events: Sequence[EventData]) -> None:
        if not events:
            return
        partition_id = context.partition_id
        target = int(partition_id) % self._raw_partitions if partition_id.isdigit() else None
        messages = [raw_message(event, partition_id) for event in events]
        delay = 0.5
        while True:
            try:
                await self._produce(messages, target)
                break
            except KafkaError as exc:
                if self.stopping.is_set():
                    raise
                metrics.BRIDGE_RETRIES.inc()
                log.warning(
                    "Kafka did not take %d event(s) of partition %s (%s); retrying in %.1f s",
                    len(events),
                    partition_id,
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, RETRY_MAX_S)
        self.produced[partition_id] = events[-1].sequence_number or 0
        metrics.BRIDGE_EVENTS.inc(len(events))
        metrics.BRIDGE_BYTES.inc(sum(len(value) for _, value, _ in messages))
        await context.update_checkpoint(events[-1])

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


async def _start_producer(settings: Settings, stopping: asyncio.Event) -> AIOKafkaProducer:
    """A started producer; waits (with backoff) while Kafka is unreachable."""
    delay = 0.5
    while True:
        producer = AIOKafkaProducer(
            acks="all",
            linger_ms=5,
            max_request_size=settings.max_event_bytes + 64 * 1024,
            compression_type=settings.compression_type,
            **settings.aiokafka_config(),
        )
        try:
            await producer.start()
            return producer
        except KafkaError as exc:
            await producer.stop()
            if stopping.is_set():
                raise
            log.warning("Kafka unreachable (%s); retrying in %.1f s", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)


async def run_bridge(settings: Settings, stopping: asyncio.Event | None = None) -> None:
    """Read every partition of the hub into the raw topic until ``stopping`` is set (by
    default: SIGTERM or SIGINT)."""
    if stopping is None:
        stopping = stop_on_signals()
    store = checkpoint_store(settings)
    producer = await _start_producer(settings, stopping)
    bridge = Bridge(settings, producer)
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
    started = time.monotonic()
    stop = asyncio.create_task(stopping.wait())
    await asyncio.wait([receiving, stop], return_when=asyncio.FIRST_COMPLETED)
    bridge.stopping.set()
    lag.cancel()
    await client.close()
    receiving.cancel()
    await asyncio.gather(receiving, lag, return_exceptions=True)
    await producer.stop()
    if hasattr(store, "close"):
        await _maybe_await(store.close())
    if receiving.done() and not receiving.cancelled() and receiving.exception():
        raise RuntimeError("the Event Hubs receiver stopped") from receiving.exception()
    log.info("bridge stopped after %.0f s", time.monotonic() - started)


async def _maybe_await(value: Any) -> None:
    if asyncio.iscoroutine(value):
        await value
