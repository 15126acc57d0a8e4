"""Bridge throughput: Event Hubs events/s and sign-ins/s from the AMQP peer into Kafka.

The peer is the repository's test peer (``tests/eventhub_peer.py``, the Event Hubs subset
the SDK uses over real AMQP); the bridge runs in this process against an embedded broker.
Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY
from pydantic import SecretStr

from pipeline.runtime.broker import EmbeddedBroker
from pipeline.runtime.demo import embedded_settings
from pipeline.runtime.topics import create_topics
from pipeline.sources.eventhub import run_bridge
from tools.synth import bench_envelope

TESTS = Path(__file__).resolve().parents[1] / "tests"
PER_ENVELOPE = 20


def _peer_class() -> Any:
    if not (TESTS / "eventhub_peer.py").is_file():
        return None
    sys.path.insert(0, str(TESTS))
    return importlib.import_module("eventhub_peer").EventHubPeer


def _bridged() -> float:
    return REGISTRY.get_sample_value("signin_risk_bridge_events_total") or 0.0


def run_bridge_bench(events: int, partitions: int = 4) -> str:
    peer_class = _peer_class()
    if peer_class is None:
        return "bridge: skipped (tests/eventhub_peer.py, the local Event Hubs peer, not found)"
    envelopes = [bench_envelope(PER_ENVELOPE, seed) for seed in range(min(events, 50))]
    with (
        EmbeddedBroker() as broker,
        peer_class(hub="signins", partitions=partitions) as peer,
        tempfile.TemporaryDirectory() as tmp,
    ):
        for i in range(events):
            peer.append(peer.partition_ids[i % partitions], envelopes[i % len(envelopes)])
        settings = embedded_settings(broker.bootstrap, 0).model_copy(
            update={
                "topic_prefix": "bridgebench.",
                "eventhub_connection_string": SecretStr(peer.connection_string("signins")),
                "eventhub_checkpoint_path": str(Path(tmp) / "checkpoints.sqlite"),
                "eventhub_load_balancing_interval_s": 1.0,
                "eventhub_max_wait_s": 0.2,
            }
        )
        create_topics(settings)
        seconds = asyncio.run(_timed(settings, events))
    eps = events / seconds
    return "\n".join(
        [
            f"bridge: {events} events of {PER_ENVELOPE} sign-ins (~100 KB) from {partitions} "
            f"partitions of the local AMQP peer into Kafka, checkpointed: {eps:,.0f} events/s",
            f"bench bridge_eps={eps:.0f} bridge_rps={eps * PER_ENVELOPE:.0f}",
        ]
    )


async def _timed(settings: Any, events: int) -> float:
    """Seconds from the first event bridged to the last (connecting is not throughput)."""
    stopping = asyncio.Event()
    start = _bridged()
    task = asyncio.create_task(run_bridge(settings, stopping))
    while _bridged() == start:
        await asyncio.sleep(0.01)
    first, at_first = time.perf_counter(), _bridged()
    while _bridged() < start + events:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - first
    stopping.set()
    await task
    return elapsed * events / (start + events - at_first)
