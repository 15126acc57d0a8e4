"""The forwarder on the real broker: offsets move only after a sink's flush succeeded."""

from __future__ import annotations

import asyncio

import orjson
from kafka import KafkaProducer

from pipeline.forward import forward
from pipeline.settings import Settings
from pipeline.topics import create_topics


class FlakySink:
    """Fails its first ``failures`` flushes, like a receiver that is down for a while."""

    name = "test"
    max_batch = 7

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.flushes = 0
        self.delivered: list[str] = []
        self._pending: list[bytes] = []

    def add(self, alert: bytes) -> None:
        self._pending.append(alert)

    async def flush(self) -> None:
        self.flushes += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("receiver down")
        self.delivered += [orjson.loads(a)["id"] for a in self._pending]
        self._pending.clear()

    async def close(self) -> None:
        pass


def produce_alerts(settings: Settings, ids: list[str]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for alert_id in ids:
        producer.send(
            settings.topic("alerts"), orjson.dumps({"id": alert_id}), key=alert_id.encode()
        )
    producer.flush()
    producer.close()


def run_until(settings: Settings, sink: FlakySink, done: int, timeout_s: float = 30) -> None:
    """Forward until ``done`` alerts were delivered (or the timeout), then stop cleanly."""

    async def main() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(forward(settings, sink, stopping))
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(sink.delivered) < done and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        stopping.set()
        await task

    asyncio.run(main())


def test_an_outage_delays_alerts_and_loses_none(kafka_settings: Settings) -> None:
    create_topics(kafka_settings)
    ids = [f"alert-{i}" for i in range(30)]
    produce_alerts(kafka_settings, ids)
    sink = FlakySink(failures=3)
    run_until(kafka_settings, sink, len(ids))
    assert sorted(sink.delivered) == sorted(ids)
    assert sink.flushes >= 3 + len(ids) // FlakySink.max_batch

    produce_alerts(kafka_settings, ["late-1", "late-2"])
    restarted = FlakySink()
    run_until(kafka_settings, restarted, 2)
    assert sorted(restarted.delivered) == ["late-1", "late-2"]  # committed ones are not sent again


def test_alerts_of_a_flush_that_never_succeeded_are_read_again(kafka_settings: Settings) -> None:
    create_topics(kafka_settings)
    produce_alerts(kafka_settings, ["a", "b", "c"])
    down = FlakySink(failures=10**6)
    run_until(kafka_settings, down, 1, timeout_s=4)  # stops while still failing
    assert down.delivered == [] and down.flushes >= 2
    back = FlakySink()
    run_until(kafka_settings, back, 3)
    assert sorted(back.delivered) == ["a", "b", "c"]
