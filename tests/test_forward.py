"""The forwarder on the real broker: offsets move only after every alert read was delivered
or dead-lettered; failures back off, open the circuit, and lose nothing."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import orjson
import pytest
from _pytest.logging import LogCaptureFixture
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import REGISTRY
from pydantic import SecretStr
from test_streaming import consume

from pipeline.runtime.broker import free_port
from pipeline.runtime.procs import FLUSH_S, STOP_WITHIN_S
from pipeline.runtime.settings import Settings
from pipeline.runtime.topics import create_topics
from pipeline.sinks import AlertDict, Refusal, SendError, SinkBase
from pipeline.sinks.forward import Breaker, forward, sink_deadletter, sink_group
from pipeline.sinks.syslog import SyslogConfig


class FlakySink:
    """Fails its first ``failures`` sends, like a receiver that is down for a while; refuses
    for good any alert whose id starts with ``bad``; may fail halfway through a batch."""

    max_batch = 7

    def __init__(self, name: str = "test", failures: int = 0, fail_after: int = 0) -> None:
        self.name = name
        self.failures = failures
        self.fail_after = fail_after
        self.batches: list[int] = []
        self.delivered: list[str] = []
        self.seen: list[AlertDict] = []

    async def send(self, alerts: Sequence[AlertDict]) -> list[Refusal]:
        self.batches.append(len(alerts))
        refused = [
            Refusal(i, "400 bad event") for i, a in enumerate(alerts) if a["id"][:3] == "bad"
        ]
        if self.failures:
            self.failures -= 1
            done = min(self.fail_after, len(alerts))
            self._take(alerts[:done], refused)
            raise SendError(
                "receiver down", done=done, refused=[r for r in refused if r.index < done]
            )
        self._take(alerts, refused)
        return refused

    def _take(self, alerts: Sequence[AlertDict], refused: list[Refusal]) -> None:
        bad = {r.index for r in refused}
        self.delivered += [a["id"] for i, a in enumerate(alerts) if i not in bad]
        self.seen += alerts

    async def close(self) -> None:
        pass


CONFIG = SyslogConfig(type="syslog")


def produce(settings: Settings, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for value in values:
        producer.send(settings.topic("alerts"), value, key=b"k")
    producer.flush()
    producer.close()


def produce_alerts(settings: Settings, ids: list[str], **fields: object) -> None:
    produce(settings, [orjson.dumps({"id": alert_id, **fields}) for alert_id in ids])


def run_until(
    settings: Settings,
    sink: FlakySink,
    done: int,
    timeout_s: float = 30,
    config: SinkBase = CONFIG,
    stream: str = "alerts",
) -> None:
    """Forward until ``done`` alerts were delivered (or the timeout), then stop cleanly."""

    async def main() -> None:
        stopping = asyncio.Event()
        task = asyncio.create_task(forward(settings, sink, config, stopping, stream))
        deadline = asyncio.get_running_loop().time() + timeout_s
        while len(sink.delivered) < done and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # let the commit of the last batch happen
        stopping.set()
        await task

    asyncio.run(main())


def sample(metric: str, sink: str) -> float:
    return REGISTRY.get_sample_value(metric, {"sink": sink}) or 0.0


def test_the_incidents_stream_is_forwarded_in_a_group_of_its_own(kafka_settings: Settings) -> None:
    """One sink may take both streams: each has its own consumer group, so delivering the
    incidents commits nothing of the alerts."""
    create_topics(kafka_settings)
    produce_alerts(kafka_settings, ["alert-1", "alert-2"])
    producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap)
    for incident_id in ("incident-1", "incident-2", "incident-3"):
        value = orjson.dumps({"id": incident_id, "rule": "incident", "alert_ids": ["alert-1"]})
        producer.send(kafka_settings.topic("incidents"), value, key=incident_id.encode())
    producer.flush()
    producer.close()
    incidents = FlakySink("both")
    run_until(kafka_settings, incidents, 3, stream="incidents")
    assert sorted(incidents.delivered) == ["incident-1", "incident-2", "incident-3"]
    alerts = FlakySink("both")
    run_until(kafka_settings, alerts, 2)
    assert sorted(alerts.delivered) == ["alert-1", "alert-2"]
    assert sink_group(kafka_settings, "both", "incidents") != sink_group(kafka_settings, "both")


def test_an_outage_delays_alerts_and_loses_none(kafka_settings: Settings) -> None:
    create_topics(kafka_settings)
    ids = [f"alert-{i}" for i in range(30)]
    produce_alerts(kafka_settings, ids)
    sink = FlakySink("outage", failures=3)
    run_until(kafka_settings, sink, len(ids))
    assert sorted(sink.delivered) == sorted(ids)
    assert sample("signin_risk_sink_failures_total", "outage") == 3
    assert sample("signin_risk_sink_retries_total", "outage") == 3
    assert sample("signin_risk_sink_sent_total", "outage") == 30
    assert sample("signin_risk_sink_buffer_alerts", "outage") == 0

    produce_alerts(kafka_settings, ["late-1", "late-2"])
    restarted = FlakySink("outage")
    run_until(kafka_settings, restarted, 2)
    assert sorted(restarted.delivered) == ["late-1", "late-2"]  # committed ones are not sent again


def test_a_send_that_failed_halfway_resumes_after_what_was_delivered(
    kafka_settings: Settings,
) -> None:
    """A chat channel must not get the head of a batch twice because its tail failed."""
    create_topics(kafka_settings)
    ids = [f"alert-{i:02}" for i in range(14)]
    produce_alerts(kafka_settings, ids)
    sink = FlakySink("halfway", failures=2, fail_after=3)
    run_until(kafka_settings, sink, len(ids))
    assert sink.delivered == ids  # in order, each once


def test_alerts_of_a_send_that_never_succeeded_are_read_again(kafka_settings: Settings) -> None:
    create_topics(kafka_settings)
    produce_alerts(kafka_settings, ["a", "b", "c"])
    down = FlakySink("down", failures=10**6)
    run_until(kafka_settings, down, 1, timeout_s=4)  # stops while still failing
    assert down.delivered == [] and len(down.batches) >= 2
    back = FlakySink("down")
    run_until(kafka_settings, back, 3)
    assert sorted(back.delivered) == ["a", "b", "c"]


def test_refused_and_unreadable_alerts_go_to_the_sinks_deadletter_topic(
    kafka_settings: Settings,
) -> None:
    create_topics(kafka_settings)
    produce_alerts(kafka_settings, ["ok-1", "bad-1", "ok-2"])
    produce(kafka_settings, [b"{not json", b"[1, 2]"])
    produce_alerts(kafka_settings, ["ok-3"])
    sink = FlakySink("refusing")
    run_until(kafka_settings, sink, 3)
    assert sink.delivered == ["ok-1", "ok-2", "ok-3"]

    topic = "deadletter.sink-refusing"
    assert sink_deadletter(kafka_settings, "refusing") == kafka_settings.topic(topic)
    dead = [orjson.loads(v) for v in consume(kafka_settings, topic, lambda v: len(v) >= 3)]
    by_reason = sorted((d["reason"], d["record"]) for d in dead)
    assert by_reason == [
        ("invalid-json", "[1, 2]"),
        ("invalid-json", "{not json"),
        ("refused", '{"id":"bad-1"}'),
    ]
    refused = next(d for d in dead if d["reason"] == "refused")
    assert refused["detail"] == "400 bad event" and refused["sink"] == "refusing"
    assert refused["topic"] == kafka_settings.topic("alerts") and refused["offset"] == 1
    assert sample("signin_risk_sink_deadlettered_total", "refusing") == 3
    assert sample("signin_risk_sink_sent_total", "refusing") == 3


def test_the_circuit_opens_after_repeated_failures_and_probes_with_one_alert(
    kafka_settings: Settings,
) -> None:
    settings = kafka_settings.model_copy(
        update={"sink_breaker_failures": 2, "sink_breaker_cooldown_s": 1.0}
    )
    create_topics(settings)
    ids = [f"alert-{i}" for i in range(20)]
    produce_alerts(settings, ids)
    sink = FlakySink("breaker", failures=3)
    run_until(settings, sink, len(ids))
    assert sorted(sink.delivered) == sorted(ids)
    # two full batches fail, the circuit opens; its probes are single alerts until one passes
    assert sink.batches[:5] == [7, 7, 1, 1, 7]


def test_a_sink_sees_only_allowed_fields_and_pseudonyms(kafka_settings: Settings) -> None:
    settings = kafka_settings.model_copy(update={"pseudonym_key": SecretStr("k" * 32)})
    create_topics(settings)
    produce_alerts(
        settings,
        ["a-1"],
        rule="password-spray",
        severity="high",
        time="2026-11-20T08:00:00Z",
        title="Password spray",
        user="",
        ip="203.0.113.9",
        summary="secret summary",
        evidence={"users": ["Alice@Contoso.com"]},
    )
    config = SyslogConfig(type="syslog", fields=("ip", "evidence"), pseudonymize=("user", "ip"))
    sink = FlakySink("private")
    run_until(settings, sink, 1, config=config)
    (seen,) = sink.seen
    assert set(seen) == {"id", "rule", "severity", "time", "title", "ip", "evidence"}
    assert seen["ip"].startswith("anon-") and seen["ip"] != "203.0.113.9"
    assert seen["evidence"]["users"][0].startswith("anon-")


def test_pseudonyms_without_a_key_stop_the_forwarder_at_start(kafka_settings: Settings) -> None:
    config = SyslogConfig(type="syslog", pseudonymize=("user",))
    with pytest.raises(ValueError, match="SIGNIN_RISK_PSEUDONYM_KEY"):
        asyncio.run(forward(kafka_settings, FlakySink(), config, asyncio.Event()))


def test_breaker_states_follow_failures_and_time() -> None:
    breaker = Breaker(failures_to_open=3, cooldown_s=10)
    for now in (0.0, 1.0):
        breaker.failure(now)
        assert breaker.state(now) == "closed"
    breaker.failure(2.0)
    assert breaker.state(2.0) == "open" and breaker.remaining(5.0) == 7.0
    assert breaker.state(12.0) == "half-open"
    breaker.failure(12.0)  # the probe failed: open again for a full cooldown
    assert breaker.state(13.0) == "open" and breaker.remaining(13.0) == 9.0
    breaker.success()
    assert breaker.state(13.0) == "closed" and breaker.remaining(13.0) == 0.0


def _stop_after(
    settings: Settings, sink: FlakySink, ready: Callable[[], bool], timeout_s: float = 30
) -> float:
    """Forward until ``ready``, then stop: seconds from the stop to ``forward`` returning."""

    async def main() -> float:
        stopping = asyncio.Event()
        task = asyncio.create_task(forward(settings, sink, CONFIG, stopping))
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert not task.done(), task
            assert time.monotonic() < deadline, "never ready"
            await asyncio.sleep(0.02)
        stopping.set()
        stopped = time.monotonic()
        await asyncio.wait_for(task, STOP_WITHIN_S)
        return time.monotonic() - stopped

    return asyncio.run(main())


def test_a_forwarder_waiting_for_a_dead_broker_stops_at_once(caplog: LogCaptureFixture) -> None:
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{free_port()}", metrics_port=0)
    retries = lambda: "retrying in 1.0 s" in caplog.text  # noqa: E731 - in its second backoff
    seconds = _stop_after(settings, FlakySink("dead-broker"), retries)
    assert seconds < 0.2


class HangingSink(FlakySink):
    """A receiver that accepts the connection and never answers."""

    def __init__(self) -> None:
        super().__init__("hanging")
        self.started = asyncio.Event()

    async def send(self, alerts: Sequence[AlertDict]) -> list[Refusal]:
        self.started.set()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")


def test_a_send_that_never_returns_is_abandoned_on_stop_uncommitted(
    kafka_settings: Settings,
) -> None:
    create_topics(kafka_settings)
    produce_alerts(kafka_settings, ["a", "b"])
    hanging = HangingSink()
    seconds = _stop_after(kafka_settings, hanging, hanging.started.is_set)
    assert FLUSH_S <= seconds < FLUSH_S + 1.0
    group = KafkaConsumer(
        bootstrap_servers=kafka_settings.kafka_bootstrap,
        group_id=sink_group(kafka_settings, "hanging"),
        enable_auto_commit=False,
    )
    try:
        partitions = [TopicPartition(kafka_settings.topic("alerts"), p) for p in range(4)]
        assert [group.committed(tp) for tp in partitions] == [None] * 4  # read again later
    finally:
        group.close()


def test_a_syslog_forwarder_loads_no_azure_sdk() -> None:
    """Every sink module is imported with the policy, so the ones for Azure import its SDKs
    only when their sink is built: a syslog forwarder never loads them."""
    code = (
        "import sys\n"
        "import pipeline.cli, pipeline.sinks.forward\n"
        "from pipeline.core.policy import policy_from_data\n"
        "from pipeline.runtime.settings import Settings\n"
        "from pipeline.sinks import build_sink, sink_config\n"
        "policy = policy_from_data({'sinks': {'siem': {'type': 'syslog'}}})\n"
        "build_sink('siem', sink_config(policy, 'siem'), Settings())\n"
        "print(sorted(name for name in sys.modules if name.split('.')[0] == 'azure'))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
