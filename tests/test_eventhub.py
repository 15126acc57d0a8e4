"""Event Hubs in and out over real AMQP: the real azure-eventhub SDK against the local peer
(tests/eventhub_peer.py), a real broker, real worker, bridge and forwarder processes."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError
from azure.eventhub import EventData
from eventhub_peer import EventHubPeer
from kafka import KafkaProducer
from pydantic import SecretStr
from test_streaming import SAMPLE, differences, last_versions, metric_sum, reader, scan_alerts

from pipeline.runtime.broker import EmbeddedBroker, free_port
from pipeline.runtime.demo import embedded_settings
from pipeline.runtime.procs import FLUSH_S, spawn, terminate
from pipeline.runtime.settings import Settings
from pipeline.runtime.topics import create_topics
from pipeline.sources.eventhub import Bridge

Spawn = Callable[[str, Settings], subprocess.Popen[bytes]]


@pytest.fixture
def peer() -> Iterator[EventHubPeer]:
    with EventHubPeer(hub="signins", partitions=2) as running:
        yield running


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Spawn]:
    """Starts ``signin-risk <command>`` processes; stops them (cleanly) afterwards."""
    started: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(command: str, settings: Settings) -> subprocess.Popen[bytes]:
        log_path = tmp_path / f"{command}-{len(started)}.log"
        with log_path.open("wb") as log:
            args = ["forward", "--sink", "eventhub"] if command == "forward" else [command]
            port = settings.metrics_port or free_port()
            proc = spawn(args, settings.model_copy(update={"metrics_port": port}), log)
        started.append((command, proc, log_path))
        return proc

    yield start
    for command, proc, log_path in started:
        assert terminate(proc, 30, command) == 0, log_path.read_text()[-3000:]
        assert "Traceback" not in log_path.read_text(), log_path.read_text()[-3000:]


def with_hubs(settings: Settings, peer: EventHubPeer, tmp_path: Path) -> Settings:
    return settings.model_copy(
        update={
            "eventhub_connection_string": SecretStr(peer.connection_string("signins")),
            "alerts_eventhub_connection_string": SecretStr(peer.connection_string("alerts")),
            "eventhub_checkpoint_path": str(tmp_path / "checkpoints.sqlite"),
            "eventhub_load_balancing_interval_s": 1.0,
            "eventhub_max_wait_s": 0.2,
            "eventhub_lag_interval_s": 0.5,
            "metrics_port": 0,
        }
    )


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def read_topic(settings: Settings, topic: str) -> list[Any]:
    """Every message on ``topic`` now (no group)."""
    consumer = reader(settings, topic, idle_ms=1000)
    try:
        return list(consumer)
    finally:
        consumer.close()


def hub_alerts(peer: EventHubPeer) -> list[dict[str, Any]]:
    return [
        orjson.loads(body) for p in peer.partition_ids for _, body, _ in peer.events(p, "alerts")
    ]


def checkpoints(settings: Settings) -> dict[str, int]:
    """Sequence number checkpointed per partition (none before the bridge made its store)."""
    if not Path(settings.eventhub_checkpoint_path).exists():
        return {}
    with sqlite3.connect(settings.eventhub_checkpoint_path) as db:
        try:
            rows = db.execute("SELECT partition_id, sequence_number FROM checkpoint").fetchall()
        except sqlite3.OperationalError:  # created, schema not yet
            return {}
    return dict(rows)


def test_sign_ins_from_event_hubs_become_alerts_on_an_event_hub(
    kafka_settings: Settings, peer: EventHubPeer, services: Spawn, tmp_path: Path
) -> None:
    settings = with_hubs(kafka_settings, peer, tmp_path)
    create_topics(settings)
    envelopes = SAMPLE.read_bytes().splitlines()
    poison = b'{"records": [\xff'
    for i, body in enumerate([*envelopes, poison]):
        peer.append(peer.partition_ids[i % 2], body)
    expected = scan_alerts(SAMPLE)

    services("worker", settings)
    bridge = settings.model_copy(update={"metrics_port": free_port()})
    services("bridge", bridge)
    services("forward", settings)

    topic: dict[str, dict[str, Any]] = {}

    def worker_done() -> bool:
        topic.update(last_versions([m.value for m in read_topic(settings, "alerts")]))
        return not differences(topic, expected)

    wait_for("the worker's alerts to match scan", worker_done, 90)
    wait_for("every alert on the hub", lambda: {a["id"] for a in hub_alerts(peer)} >= set(topic))
    delivered = hub_alerts(peer)
    assert {a["id"] for a in delivered} == set(topic)  # duplicates only by id
    for alert in delivered:  # one user's alerts share a partition key
        assert alert == {**alert, "id": alert["id"]}
    keys = {key for p in peer.partition_ids for _, _, key in peer.events(p, "alerts")}
    assert {a["user_id"] or a["ip"] for a in delivered} == keys

    (dead,) = [orjson.loads(m.value) for m in read_topic(settings, "deadletter")]
    assert dead["reason"] == "invalid-utf8"
    assert base64.b64decode(dead["record"]) == poison
    assert dead["topic"] == settings.topic("raw")
    raw = read_topic(settings, "raw")
    assert sorted(m.value for m in raw) == sorted([*envelopes, poison])  # bodies unchanged
    headers = dict(raw[0].headers)
    assert set(headers) == {
        "eventhub-partition",
        "eventhub-sequence-number",
        "eventhub-offset",
        "eventhub-enqueued-time",
    }
    assert raw[0].key == headers["eventhub-partition"] + b":" + headers["eventhub-sequence-number"]
    assert metric_sum(bridge.metrics_port, "signin_risk_bridge_events_total") == len(raw)
    wait_for(
        "no lag", lambda: metric_sum(bridge.metrics_port, "signin_risk_eventhub_lag_events") == 0
    )


def test_the_bridge_resumes_from_its_checkpoint_after_the_hub_restarts(
    kafka_settings: Settings, peer: EventHubPeer, services: Spawn, tmp_path: Path
) -> None:
    settings = with_hubs(kafka_settings, peer, tmp_path)
    create_topics(settings)
    bodies = [f'{{"records": [], "n": {i}}}'.encode() for i in range(100)]
    for i, body in enumerate(bodies[:50]):
        peer.append(peer.partition_ids[i % 2], body)
    services("bridge", settings)
    wait_for("the first half on raw", lambda: len(read_topic(settings, "raw")) >= 50)
    peer.stop()
    for i, body in enumerate(bodies[50:]):  # enqueued while the service is away
        peer.append(peer.partition_ids[i % 2], body)
    time.sleep(1)
    peer.start()
    wait_for(
        "every event on raw", lambda: {m.value for m in read_topic(settings, "raw")} >= set(bodies)
    )
    raw = [m.value for m in read_topic(settings, "raw")]
    duplicates = len(raw) - len(set(raw))
    assert duplicates <= 50  # only what came before the last checkpoint can repeat
    wait_for("checkpoints at the last event", lambda: checkpoints(settings) == {"0": 49, "1": 49})


def test_the_bridge_stops_checkpointing_while_kafka_is_paused(
    peer: EventHubPeer, services: Spawn, tmp_path: Path
) -> None:
    with EmbeddedBroker() as broker:  # its own broker: this one is frozen for a while
        settings = with_hubs(
            embedded_settings(broker.bootstrap, 0).model_copy(update={"topic_prefix": "paused."}),
            peer,
            tmp_path,
        )
        create_topics(settings)
        bodies = [f'{{"records": [], "n": {i}}}'.encode() for i in range(40)]
        for body in bodies[:20]:
            peer.append("0", body)
        settings = settings.model_copy(update={"metrics_port": free_port()})
        services("bridge", settings)
        wait_for("checkpoint after the first 20", lambda: checkpoints(settings).get("0") == 19)
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGSTOP)
        try:
            for body in bodies[20:]:
                peer.append("0", body)
            time.sleep(3)
            assert checkpoints(settings)["0"] == 19  # nothing acknowledged, nothing checkpointed
        finally:
            os.kill(broker.pid, signal.SIGCONT)
        wait_for("checkpoint after all 40", lambda: checkpoints(settings).get("0") == 39)
        assert {m.value for m in read_topic(settings, "raw")} == set(bodies)
        assert metric_sum(settings.metrics_port, "signin_risk_bridge_events_total") == 40


def test_an_event_hubs_outage_delays_alerts_and_loses_none(
    kafka_settings: Settings, peer: EventHubPeer, services: Spawn, tmp_path: Path
) -> None:
    settings = with_hubs(kafka_settings, peer, tmp_path)
    create_topics(settings)
    ids = [f"alert-{i}" for i in range(40)]

    def alert(alert_id: str) -> bytes:
        return orjson.dumps({"id": alert_id, "user_id": f"user-{alert_id[-1]}", "ip": ""})

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for alert_id in ids[:20]:
        producer.send(settings.topic("alerts"), alert(alert_id), key=alert_id.encode())
    producer.flush()
    settings = settings.model_copy(update={"metrics_port": free_port()})
    services("forward", settings)
    wait_for("the first 20 on the hub", lambda: len({a["id"] for a in hub_alerts(peer)}) >= 20)
    peer.stop()
    for alert_id in ids[20:]:
        producer.send(settings.topic("alerts"), alert(alert_id), key=alert_id.encode())
    producer.flush()
    producer.close()
    time.sleep(3)  # the forwarder keeps failing and retrying meanwhile
    peer.start()
    wait_for("every alert on the hub", lambda: {a["id"] for a in hub_alerts(peer)} == set(ids), 90)
    assert metric_sum(settings.metrics_port, "signin_risk_sink_failures_total") >= 1
    assert metric_sum(settings.metrics_port, "signin_risk_sink_sent_total") >= len(ids)


class _Context:
    """The SDK's partition context as the bridge uses it: an id and the checkpoint call."""

    partition_id = "0"

    def __init__(self) -> None:
        self.checkpoints: list[EventData] = []

    async def update_checkpoint(self, event: EventData) -> None:
        self.checkpoints.append(event)


class _Producer:
    """``send`` as aiokafka's: a future per message, resolved by ``ack`` or failed."""

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.sends = 0
        self.pending: list[asyncio.Future[None]] = []

    async def send(self, topic: str, **_: Any) -> asyncio.Future[None]:
        self.sends += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail:
            future.set_exception(KafkaConnectionError("broker down"))
        else:
            self.pending.append(future)
        return future

    def ack(self) -> None:
        for future in self.pending:
            future.set_result(None)


def _on_batch_until_stopped(
    producer: _Producer, stop_when: Callable[[], bool], after_stop: Callable[[], object] = int
) -> tuple[_Context, float]:
    """Run one batch through ``Bridge.on_batch``, stop once ``stop_when``; (context, seconds
    from the stop to the callback's return)."""

    async def scenario() -> tuple[_Context, float]:
        stopping = asyncio.Event()
        bridge = Bridge(Settings(), producer, stopping)
        context = _Context()
        events = [EventData(b'{"records": []}') for _ in range(3)]
        task = asyncio.create_task(bridge.on_batch(context, events))  # type: ignore[arg-type]
        while not stop_when():
            await asyncio.sleep(0.01)
        stopping.set()
        stopped = time.monotonic()
        after_stop()
        await asyncio.wait_for(task, 5)
        await asyncio.wait_for(bridge.idle(), 0.1)
        return context, time.monotonic() - stopped

    return asyncio.run(scenario())


def test_a_stop_cuts_the_bridges_kafka_backoff_short_and_checkpoints_nothing() -> None:
    producer = _Producer(fail=True)
    context, seconds = _on_batch_until_stopped(producer, lambda: producer.sends >= 6)  # 2 tries
    assert seconds < 0.1 and context.checkpoints == []


def test_a_batch_kafka_never_acknowledges_is_given_up_after_the_flush_grace() -> None:
    producer = _Producer(fail=False)
    context, seconds = _on_batch_until_stopped(producer, lambda: producer.sends == 3)
    assert FLUSH_S <= seconds < FLUSH_S + 0.2 and context.checkpoints == []


def test_a_batch_acknowledged_during_the_stop_is_still_checkpointed() -> None:
    producer = _Producer(fail=False)
    context, seconds = _on_batch_until_stopped(producer, lambda: producer.sends == 3, producer.ack)
    assert seconds < 0.1 and len(context.checkpoints) == 1
