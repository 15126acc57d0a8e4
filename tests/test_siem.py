"""``signin-risk forward`` end to end, as deployed: the demo's alerts on the alerts topic of a
real broker, one forwarder process per sink, into a real rsyslog (CEF over TCP), a Splunk
HEC receiver and a Teams webhook; then a receiver outage in the middle of the stream."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from cef import parse_cef
from http_receiver import Receiver
from kafka import KafkaProducer
from rsyslog import Rsyslog
from test_eventhub import wait_for
from test_streaming import SAMPLE, consume, metric_sum

from pipeline.core.policy import Policy
from pipeline.core.scan import scan
from pipeline.runtime.broker import free_port
from pipeline.runtime.procs import spawn, terminate
from pipeline.runtime.settings import Settings
from pipeline.runtime.topics import create_topics
from pipeline.sinks.sentinel import TABLE_COLUMNS, SentinelConfig

HEC_TOKEN = "b2d1f0e4-e2e-hec-token"
WEBHOOK_PATH = "/workflows/8a1f/triggers/manual/paths/invoke?sig=e2e-secret"
CEF_SEVERITY = {"informational": "1", "low": "3", "medium": "5", "high": "8", "critical": "10"}


@pytest.fixture(scope="module")
def alerts() -> list[dict[str, Any]]:
    out = io.BytesIO()
    scan([(str(SAMPLE), SAMPLE.read_bytes())], Policy(), out)
    return [orjson.loads(row) for row in out.getvalue().splitlines()]


def publish(settings: Settings, alerts: list[dict[str, Any]]) -> None:
    """As the worker does: each alert keyed by its id on the alerts topic."""
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for alert in alerts:
        producer.send(settings.topic("alerts"), orjson.dumps(alert), key=alert["id"].encode())
    producer.flush()
    producer.close()


def start_forwarder(
    name: str, settings: Settings, policy: Path, tmp_path: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = tmp_path / f"forward-{name}.log"
    with log_path.open("wb") as log:
        proc = spawn(["forward", "--sink", name, "--policy", str(policy)], settings, log)
    return proc, log_path


def stop_forwarder(proc: subprocess.Popen[bytes], log_path: Path) -> None:
    """A clean exit, no traceback, and no secret in the log."""
    log = log_path.read_text()
    assert terminate(proc, 30, "forwarder") == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert HEC_TOKEN not in log and "e2e-secret" not in log


@pytest.fixture
def rsyslog() -> Iterator[Rsyslog]:
    with Rsyslog() as running:
        yield running


@pytest.fixture
def hec() -> Iterator[Receiver]:
    with Receiver("hec", secret=HEC_TOKEN) as running:
        yield running


@pytest.fixture
def teams() -> Iterator[Receiver]:
    with Receiver("teams", secret=WEBHOOK_PATH) as running:
        yield running


def sinks_for(rsyslog: Rsyslog, hec: Receiver, teams: Receiver) -> dict[str, Any]:
    return {
        "soc-syslog": {"type": "syslog", "port": rsyslog.tcp_port, "format": "cef"},
        "splunk": {"type": "hec", "url": hec.url, "index": "security", "max_batch": 10},
        "soc-teams": {"type": "webhook", "template": "teams", "per_minute": 6000},
    }


def test_forward_delivers_the_demo_alerts_to_rsyslog_hec_and_teams(
    kafka_settings: Settings,
    alerts: list[dict[str, Any]],
    rsyslog: Rsyslog,
    hec: Receiver,
    teams: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump({"sinks": sinks_for(rsyslog, hec, teams)}))
    monkeypatch.setenv("SIGNIN_RISK_SINK_SPLUNK_TOKEN", HEC_TOKEN)
    monkeypatch.setenv("SIGNIN_RISK_SINK_SOC_TEAMS_URL", teams.url + WEBHOOK_PATH)
    create_topics(kafka_settings)
    publish(kafka_settings, alerts)
    procs = {}
    for name in ("soc-syslog", "splunk", "soc-teams"):
        settings = kafka_settings.model_copy(update={"metrics_port": free_port()})
        procs[name] = (settings.metrics_port, *start_forwarder(name, settings, policy, tmp_path))
    try:
        by_id = {a["id"]: a for a in alerts}
        messages = rsyslog.wait_for(len(alerts), timeout=60)
        wait_for("HEC events", lambda: len(hec.accepted) >= len(alerts))
        wait_for("Teams cards", lambda: len(teams.accepted) >= len(alerts))

        for message in messages:
            header, ext = parse_cef(message["msg"])
            alert = by_id[ext["externalId"]]
            assert header[4:] == [alert["rule"], alert["title"], CEF_SEVERITY[alert["severity"]]]
            assert message["msgid"] == alert["rule"]
            assert ext.get("suser", "") == alert["user"]
            assert ext["msg"] == alert["summary"]
        assert sorted(parse_cef(m["msg"])[1]["externalId"] for m in messages) == sorted(by_id)

        assert sorted(e["event"]["id"] for e in hec.accepted) == sorted(by_id)
        assert {e["index"] for e in hec.accepted} == {"security"}
        assert len(teams.accepted) == len(alerts)
        for name, (port, _, _) in procs.items():
            assert metric_sum(port, "signin_risk_sink_sent_total") == len(alerts), name
            assert metric_sum(port, "signin_risk_sink_failures_total") == 0, name
    finally:
        for _, proc, log_path in procs.values():
            stop_forwarder(proc, log_path)


def test_a_hec_outage_mid_stream_loses_no_alert_and_refusals_are_dead_lettered(
    kafka_settings: Settings,
    alerts: list[dict[str, Any]],
    hec: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = tmp_path / "policy.yaml"
    sink = {"type": "hec", "url": hec.url, "max_batch": 5}
    policy.write_text(yaml.safe_dump({"sinks": {"splunk": sink}}))
    monkeypatch.setenv("SIGNIN_RISK_SINK_SPLUNK_TOKEN", HEC_TOKEN)
    settings = kafka_settings.model_copy(
        update={"metrics_port": free_port(), "sink_backoff_max_s": 0.5}
    )
    create_topics(settings)
    refused = alerts[3]["id"]
    hec.refuse_ids = {refused}
    first, second = alerts[:15], alerts[15:]
    publish(settings, first)
    proc, log_path = start_forwarder("splunk", settings, policy, tmp_path)
    try:
        wait_for("the first half", lambda: len(hec.accepted) >= len(first) - 1)
        hec.stop()
        publish(settings, second)
        wait_for(
            "failed sends",
            lambda: metric_sum(settings.metrics_port, "signin_risk_sink_failures_total") >= 3,
        )
        hec.start()
        expected = sorted(a["id"] for a in alerts if a["id"] != refused)
        wait_for("every alert", lambda: set(expected) <= {e["event"]["id"] for e in hec.accepted})
        received = [e["event"]["id"] for e in hec.accepted]
        assert sorted(set(received)) == expected  # none lost; repeats only by id

        dead = consume(settings, "deadletter.sink-splunk", lambda values: len(values) >= 1)
        (record,) = [orjson.loads(v) for v in dead]
        assert record["reason"] == "refused" and orjson.loads(record["record"])["id"] == refused
        assert "400" in record["detail"]
        port = settings.metrics_port
        assert metric_sum(port, "signin_risk_sink_deadlettered_total") == 1
        assert metric_sum(port, "signin_risk_sink_retries_total") >= 3
        assert metric_sum(port, "signin_risk_sink_buffer_alerts") == 0
    finally:
        stop_forwarder(proc, log_path)


def test_the_docs_document_every_sentinel_column() -> None:
    """Whoever creates the custom table follows the docs: they must list every column."""
    readme = (Path(__file__).resolve().parents[1] / "docs" / "forwarding.md").read_text()
    section = readme[readme.index("into a custom table `SigninRiskAlerts_CL`") :][:1500]
    missing = [column for column in TABLE_COLUMNS if f"`{column}`" not in section]
    assert not missing


def test_the_data_collection_rule_declares_every_sentinel_column() -> None:
    """deploy/sentinel/dcr.json is the rule the README points at: its stream and the flow
    into the table carry the columns the sink sends, with their types, in order."""
    dcr = orjson.loads(
        (Path(__file__).resolve().parents[1] / "deploy/sentinel/dcr.json").read_bytes()
    )
    properties = dcr["properties"]
    stream = SentinelConfig.model_fields["stream"].default
    columns = properties["streamDeclarations"][stream]["columns"]
    assert [(c["name"], c["type"]) for c in columns] == list(TABLE_COLUMNS.items())
    (flow,) = properties["dataFlows"]
    assert flow["streams"] == [stream] and flow["outputStream"] == stream
