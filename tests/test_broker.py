"""The embedded broker starts, answers Kafka requests, and leaves no process behind."""

from __future__ import annotations

import asyncio
import os
from typing import Any
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

import pipeline.runtime.broker
from pipeline.runtime.broker import BrokerError, EmbeddedBroker
from pipeline.runtime.transport import confirmed_log_ends


def _advertised(bootstrap: str) -> list[str]:
    """The brokers a metadata round trip to ``bootstrap`` reports."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    try:
        return [f"{b['host']}:{b['port']}" for b in admin.describe_cluster()["brokers"]]
    finally:
        admin.close()


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_two_brokers_run_side_by_side_and_stop_without_trace() -> None:
    with EmbeddedBroker() as first:
        second = EmbeddedBroker().start()
        try:
            assert first.bootstrap != second.bootstrap
            assert _advertised(first.bootstrap) == [first.bootstrap]
            assert _advertised(second.bootstrap) == [second.bootstrap]
        finally:
            second_pid = second.pid
            second.stop()
        assert second_pid is not None and _gone(second_pid)
        assert first.running
        first_pid = first.pid
    assert first_pid is not None and _gone(first_pid)
    assert first.pid is None


def test_a_taken_port_is_not_mistaken_for_readiness(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tansu panics on a taken port, while the port's owner answers Kafka requests."""
    with EmbeddedBroker() as holder:
        taken = int(holder.bootstrap.rsplit(":", 1)[1])
        ports = iter([taken])
        real_free_port = pipeline.runtime.broker.free_port

        def first_taken(host: str = "127.0.0.1") -> int:
            return next(ports, None) or real_free_port(host)

        monkeypatch.setattr(pipeline.runtime.broker, "free_port", first_taken)
        with EmbeddedBroker() as retried:
            assert retried.bootstrap != holder.bootstrap
            assert _advertised(retried.bootstrap) == [retried.bootstrap]
        assert holder.running


def test_stop_is_idempotent_and_bootstrap_needs_a_running_broker() -> None:
    broker = EmbeddedBroker()
    broker.stop()  # never started
    broker.start()
    pid = broker.pid
    broker.stop()
    broker.stop()
    assert pid is not None and _gone(pid)
    assert not broker.running
    with pytest.raises(BrokerError, match="not running"):
        _ = broker.bootstrap


def test_start_failure_names_the_cause_and_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline.runtime.broker, "broker_binary", lambda: "/bin/false")
    broker: Any = EmbeddedBroker(startup_timeout=5)
    with pytest.raises(BrokerError, match=r"(?s)3 attempt\(s\).*exited with code 1"):
        broker.start()
    assert broker.pid is None


def test_log_ends_are_confirmed_by_a_fetch(broker: EmbeddedBroker) -> None:
    """Tansu 0.6 answers ListOffsets(latest) with the last batch's base offset + 1, so Faust
    recovered tables without their last changelog batch; ``verify_log_end`` fetches instead."""
    topic = f"log-end-{uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=200)
    for value in (b"a", b"b", b"c"):  # one record batch, offsets 0-2
        producer.send(topic, value)
    producer.flush()
    producer.close()
    tp = TopicPartition(topic, 0)

    async def ends() -> tuple[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)
        await consumer.start()
        try:
            claimed = await consumer.end_offsets([tp])
            return claimed[tp], (await confirmed_log_ends(consumer, claimed))[tp]
        finally:
            await consumer.stop()

    claimed, confirmed = asyncio.run(ends())
    assert confirmed == 3
    # When this fails the broker reports log ends correctly, and verify_log_end can go.
    assert claimed == 1
