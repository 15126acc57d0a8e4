"""``signin-risk forward --sink NAME``: the alerts topic into one sink, at least once.

Each sink is its own consumer group (``<app_id>-sink-<name>``), so a slow or broken sink
holds back neither detection nor another sink. Offsets are committed only after a flush
succeeded; a failed flush is retried with exponential backoff and jitter, keeping the
alerts, until it succeeds or the forwarder is stopped (then they are read again on start).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from aiokafka import AIOKafkaConsumer

from pipeline import metrics
from pipeline.procs import stop_on_signals
from pipeline.settings import Settings
from pipeline.sinks import Sink

log = logging.getLogger(__name__)
BACKOFF_MAX_S = 30.0


def sink_group(settings: Settings, sink: str) -> str:
    return f"{settings.app_id}-sink-{sink}"


async def _flush(sink: Sink, stopping: asyncio.Event) -> bool:
    """Flush until it succeeds (True) or the forwarder stops first (False)."""
    delay = 0.2
    while True:
        started = time.perf_counter()
        try:
            await sink.flush()
        except Exception as exc:  # any receiver failure: keep the alerts and retry
            metrics.SINK_FAILURES.labels(sink.name).inc()
            log.warning("sink %s failed (%s); retrying in %.1f s", sink.name, exc, delay)
            try:
                await asyncio.wait_for(stopping.wait(), delay * random.uniform(0.5, 1.5))
                return False
            except TimeoutError:
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
        metrics.SINK_LATENCY.labels(sink.name).observe(time.perf_counter() - started)
        return True


async def forward(settings: Settings, sink: Sink, stopping: asyncio.Event | None = None) -> None:
    """Deliver the alerts topic to ``sink`` until ``stopping`` (or SIGTERM/SIGINT)."""
    if stopping is None:
        stopping = stop_on_signals()
    consumer = AIOKafkaConsumer(
        settings.topic("alerts"),
        group_id=sink_group(settings, sink.name),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=int(settings.session_timeout_s * 1000),
        rebalance_timeout_ms=int(settings.rebalance_timeout_s * 1000),
        heartbeat_interval_ms=int(settings.heartbeat_interval_s * 1000),
        **settings.aiokafka_config(),
    )
    await consumer.start()
    try:
        while not stopping.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=sink.max_batch)
            alerts = [m.value for messages in batches.values() for m in messages]
            if not alerts:
                continue
            for alert in alerts:
                sink.add(alert)
            if not await _flush(sink, stopping):
                break
            metrics.SINK_SENT.labels(sink.name).inc(len(alerts))
            await consumer.commit()
    finally:
        await consumer.stop()
        await sink.close()
