"""The syslog sink against a real rsyslogd (tests/rsyslog.py) over TCP, TLS and UDP.

What rsyslog's RFC 5424 parser makes of each message is checked field by field, so a
header a receiver cannot parse, a framing error or a lost reconnect fails here. Each test
sends under its own APP-NAME and reads back only its own messages from the shared receiver.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import socket
import ssl
import time
import uuid
from collections.abc import Awaitable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import orjson
import pytest
from cef import parse_cef
from rsyslog import Rsyslog
from tlsca import CertificateAuthority

import pipeline.sinks.syslog as syslog_module
from pipeline.alerts.formats.common import PRODUCT_VERSION, epoch_ms
from pipeline.core.policy import Policy
from pipeline.core.scan import scan
from pipeline.sinks import AlertDict, Format, Refusal, SendError
from pipeline.sinks.syslog import SyslogConfig, SyslogSink

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"
SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "informational": 6}
CEF_SEVERITY = {"informational": "1", "low": "3", "medium": "5", "high": "8", "critical": "10"}
_SD = re.compile(r'\[signinrisk@32473((?: \w+="(?:[^"\\]|\\.)*")*)\]')
_PARAM = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 10) -> T:
    """Run one test coroutine with a hard deadline, so a hang fails instead of blocking."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


@pytest.fixture(scope="module")
def receiver() -> Iterator[Rsyslog]:
    instance = Rsyslog().start()
    try:
        yield instance
    finally:
        pid = instance.pid  # the last one: tests restart it
        instance.close()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.fixture(scope="module")
def sample_alerts() -> list[AlertDict]:
    out = io.BytesIO()
    scan([(str(SAMPLE), SAMPLE.read_bytes())], Policy(), out)
    alerts = [orjson.loads(row) for row in out.getvalue().splitlines()]
    assert len(alerts) > 30
    return alerts


@pytest.fixture
def app() -> str:
    """This test's APP-NAME, which tells its messages apart in the shared receiver."""
    return f"t-{uuid.uuid4().hex[:12]}"


def config(
    receiver: Rsyslog,
    app: str,
    transport: Literal["tcp", "tls", "udp"] = "tcp",
    fmt: Format = "cef",
    **extra: Any,
) -> SyslogConfig:
    port = {"tcp": receiver.tcp_port, "tls": receiver.tls_port, "udp": receiver.udp_port}
    return SyslogConfig(
        type="syslog",
        transport=transport,
        format=fmt,
        port=port[transport],
        app_name=app,
        **extra,
    )


def received(receiver: Rsyslog, app: str, count: int) -> list[dict[str, Any]]:
    """This test's messages, exactly ``count`` of them."""
    mine = receiver.wait_for(count, lambda message: message["app_name"] == app)
    assert len(mine) == count
    return mine


async def send_all(sink: SyslogSink, alerts: Sequence[AlertDict]) -> list[Refusal]:
    try:
        return await sink.send(alerts)
    finally:
        await sink.close()


def structured_data(sd: str) -> dict[str, str]:
    match = _SD.fullmatch(sd)
    assert match, sd
    return {k: re.sub(r"\\(.)", r"\1", v) for k, v in _PARAM.findall(match.group(1))}


def check_header(message: dict[str, Any], alert: AlertDict, facility: int, app: str) -> None:
    """The RFC 5424 header as rsyslog parsed it (version 1: not a fallback to RFC 3164)."""
    assert message["version"] == "1"
    assert int(message["facility"]) == facility
    assert int(message["severity"]) == SYSLOG_SEVERITY[alert["severity"]]
    assert int(message["pri"]) == facility * 8 + SYSLOG_SEVERITY[alert["severity"]]
    assert datetime.fromisoformat(message["timestamp"]) == datetime.fromisoformat(alert["time"])
    assert message["hostname"] == "sensor-1.example.com"
    assert message["app_name"] == app
    assert message["procid"] == str(os.getpid())
    assert message["msgid"] == alert["rule"]
    assert structured_data(message["sd"]) == {
        "id": alert["id"],
        "rule": alert["rule"],
        "severity": alert["severity"],
    }


def check_cef(text: str, alert: AlertDict) -> None:
    header, ext = parse_cef(text)
    assert header == [
        "0",
        "signin-risk",
        "signin-risk",
        PRODUCT_VERSION,
        alert["rule"],
        alert["title"],
        CEF_SEVERITY[alert["severity"]],
    ]
    assert ext["externalId"] == alert["id"]
    assert ext["cat"] == alert["rule"]
    assert ext["msg"] == alert["summary"]
    assert ext["rt"] == str(epoch_ms(alert["time"]))
    assert ext.get("suser") == (alert["user"] or None)
    source_key = "c6a2" if ":" in alert["ip"] else "src"
    assert ext.get(source_key) == (alert["ip"] or None)


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_every_sample_alert_arrives_in_cef(
    receiver: Rsyslog, app: str, sample_alerts: list[AlertDict], transport: Literal["tcp", "tls"]
) -> None:
    # tls: the server certificate is verified against the test CA, for 127.0.0.1 (an IP SAN).
    host = "sensor-1.example.com"
    cfg = config(receiver, app, transport, facility=16, hostname=host, ca_file=receiver.ca_file)
    assert run(send_all(SyslogSink("siem", cfg), sample_alerts)) == []
    messages = received(receiver, app, len(sample_alerts))
    assert {m["input"] for m in messages} == {transport}
    # One connection: the order is kept.
    assert [structured_data(m["sd"])["id"] for m in messages] == [a["id"] for a in sample_alerts]
    assert {a["severity"] for a in sample_alerts} >= {"low", "medium", "high"}
    for message, alert in zip(messages, sample_alerts, strict=True):
        check_header(message, alert, 16, app)
        assert not message["msg"].startswith("\ufeff")  # no BOM: CEF starts MSG
        check_cef(message["msg"], alert)


def test_udp_json_round_trips_with_every_severity(
    receiver: Rsyslog, app: str, sample_alerts: list[AlertDict]
) -> None:
    alerts = [
        {**sample_alerts[n], "id": f"udp-{severity}", "severity": severity}
        for n, severity in enumerate(SYSLOG_SEVERITY)
    ] + sample_alerts[5:]
    cfg = config(receiver, app, "udp", "native", hostname="sensor-1.example.com")
    assert run(send_all(SyslogSink("siem", cfg), alerts)) == []
    by_id = {structured_data(m["sd"])["id"]: m for m in received(receiver, app, len(alerts))}
    for alert in alerts:
        message = by_id[alert["id"]]
        assert message["input"] == "udp"
        check_header(message, alert, 13, app)
        assert orjson.loads(message["msg"]) == alert


def odd_alert(alert: AlertDict) -> AlertDict:
    """Newlines, CEF and SD specials, non-ASCII (so a byte count is not a character count)
    and a size above rsyslog's default 8k limit."""
    return {
        **alert,
        "id": 'odd-"id"]\\x',
        "user": "zoë.müller@contoso.com",
        "title": "a|b\\c",
        "summary": "first line\nsecond=line\r\n" + "ünïcödé " * 1500,
    }


@pytest.mark.parametrize("fmt", ["cef", "native"])
def test_a_message_with_newlines_stays_one_message(
    receiver: Rsyslog, app: str, sample_alerts: list[AlertDict], fmt: Format
) -> None:
    alerts = [sample_alerts[0], odd_alert(sample_alerts[1]), sample_alerts[2]]
    cfg = config(receiver, app, "tcp", fmt, hostname="sensor-1.example.com")
    sink = SyslogSink("siem", cfg)
    assert len(sink.encode(alerts[1])) > 8192
    assert run(send_all(sink, alerts)) == []
    messages = received(receiver, app, 3)
    for message, alert in zip(messages, alerts, strict=True):
        check_header(message, alert, 13, app)
        if fmt == "cef":
            check_cef(message["msg"], alert)
        else:
            assert orjson.loads(message["msg"]) == alert


def test_octet_counting_keeps_a_raw_newline_inside_the_message(
    receiver: Rsyslog, app: str, sample_alerts: list[AlertDict], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both formats escape newlines; a line-framed sink would still split this MSG in two.
    monkeypatch.setattr(syslog_module, "line", lambda alert, fmt: f"one\ntwo {alert['id']}")
    cfg = config(receiver, app, "tcp", hostname="sensor-1.example.com")
    assert run(send_all(SyslogSink("siem", cfg), sample_alerts[:2])) == []
    messages = received(receiver, app, 2)
    assert [m["msg"] for m in messages] == [f"one\ntwo {a['id']}" for a in sample_alerts[:2]]


def test_header_fields_are_cut_to_what_rfc_5424_allows(
    receiver: Rsyslog, sample_alerts: list[AlertDict]
) -> None:
    app = f"t {uuid.uuid4().hex} éx" + "y" * 60
    alert = {
        **sample_alerts[0],
        "rule": "rule with spaces-" + "r" * 40,
        "time": "2026-11-20T10:20:00.1234567+02:00",  # Entra writes 7 fraction digits
    }
    cfg = config(receiver, app, "tcp", hostname="host name é")
    assert run(send_all(SyslogSink("siem", cfg), [alert])) == []
    expected_app = app.replace(" ", "_").replace("é", "_")[:48]
    (message,) = received(receiver, expected_app, 1)
    assert message["version"] == "1"
    assert message["hostname"] == "host_name__"
    assert message["msgid"] == ("rule_with_spaces-" + "r" * 40)[:32]
    assert datetime.fromisoformat(message["timestamp"]) == datetime(
        2026, 11, 20, 8, 20, 0, 123456, tzinfo=UTC
    )
    assert structured_data(message["sd"])["rule"] == alert["rule"]


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_receiver_restart_between_batches(
    receiver: Rsyslog, app: str, sample_alerts: list[AlertDict], transport: Literal["tcp", "tls"]
) -> None:
    cfg = config(receiver, app, transport, ca_file=receiver.ca_file)

    async def scenario() -> None:
        sink = SyslogSink("siem", cfg)
        try:
            assert await sink.send(sample_alerts[:3]) == []
            received(receiver, app, 3)
            # Synchronous: the event loop does not run between the restart and the next send,
            # so the closed connection must be seen on the socket itself.
            receiver.restart()
            assert await sink.send(sample_alerts[3:6]) == []
        finally:
            await sink.close()

    run(scenario())
    ids = [structured_data(m["sd"])["id"] for m in received(receiver, app, 6)]
    assert ids == [a["id"] for a in sample_alerts[:6]]


def test_receiver_down_fails_the_send_and_recovers(
    receiver: Rsyslog, app: str, sample_alerts: list[AlertDict]
) -> None:
    cfg = config(receiver, app, "tcp")

    async def scenario() -> None:
        sink = SyslogSink("siem", cfg)
        try:
            assert await sink.send(sample_alerts[:2]) == []
            received(receiver, app, 2)
            receiver.stop()
            try:
                started = time.monotonic()
                with pytest.raises(SendError) as failed:
                    await sink.send(sample_alerts[2:4])
                assert failed.value.done == 0
                assert time.monotonic() - started < 1
            finally:
                receiver.start()
            assert await sink.send(sample_alerts[2:4]) == []
        finally:
            await sink.close()

    run(scenario())
    ids = [structured_data(m["sd"])["id"] for m in received(receiver, app, 4)]
    assert ids == [a["id"] for a in sample_alerts[:4]]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_no_receiver_is_a_prompt_send_error(
    sample_alerts: list[AlertDict], transport: Literal["tcp", "tls"]
) -> None:
    cfg = SyslogConfig(type="syslog", transport=transport, port=closed_port())
    started = time.monotonic()
    with pytest.raises(SendError, match=r"127\.0\.0\.1"):
        run(send_all(SyslogSink("siem", cfg), sample_alerts[:1]))
    assert time.monotonic() - started < 1


def test_tls_with_the_wrong_ca_is_a_send_error(
    receiver: Rsyslog, app: str, sample_alerts: list[AlertDict]
) -> None:
    other = CertificateAuthority("some other CA")
    context = ssl.create_default_context(cadata=other.pem().decode())
    sink = SyslogSink("siem", config(receiver, app, "tls"), ssl_context=context)
    with pytest.raises(SendError, match="certificate verify failed"):
        run(send_all(sink, sample_alerts[:1]))
    time.sleep(0.1)
    assert not [m for m in receiver.lines() if m["app_name"] == app]


def test_a_silent_tls_peer_times_out(sample_alerts: list[AlertDict]) -> None:
    # Accepts TCP connections (the kernel's backlog) but never answers the handshake.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        cfg = SyslogConfig(type="syslog", transport="tls", port=listener.getsockname()[1])
        started = time.monotonic()
        with pytest.raises(SendError):
            run(send_all(SyslogSink("siem", cfg, timeout=0.3), sample_alerts[:1]))
        assert 0.3 <= time.monotonic() - started < 2


def test_udp_refuses_a_message_above_the_datagram_limit(
    receiver: Rsyslog, app: str, sample_alerts: list[AlertDict]
) -> None:
    sink = SyslogSink("siem", config(receiver, app, "udp", "native"))
    limit = 65_507

    def sized(alert: AlertDict, size: int) -> AlertDict:
        padded = {**alert, "summary": ""}
        padded["summary"] = "x" * (size - len(sink.encode(padded)))
        assert len(sink.encode(padded)) == size
        return padded

    alerts = [
        sample_alerts[0],
        sized(sample_alerts[1], limit + 1),
        sized(sample_alerts[2], limit),
        sample_alerts[3],
    ]
    refusals = run(send_all(sink, alerts))
    assert refusals == [Refusal(1, "too large for UDP")]
    messages = received(receiver, app, 3)
    assert sorted(orjson.loads(m["msg"])["id"] for m in messages) == sorted(
        a["id"] for a in (alerts[0], alerts[2], alerts[3])
    )
    (largest,) = [m for m in messages if structured_data(m["sd"])["id"] == alerts[2]["id"]]
    assert orjson.loads(largest["msg"]) == alerts[2]


def test_udp_port_unreachable_fails_a_later_send(sample_alerts: list[AlertDict]) -> None:
    cfg = SyslogConfig(type="syslog", transport="udp", port=closed_port(), format="native")

    async def scenario() -> None:
        sink = SyslogSink("siem", cfg)
        try:
            assert await sink.send(sample_alerts[:1]) == []  # no way to know yet
            await asyncio.sleep(0.05)  # the ICMP answer comes back
            with pytest.raises(SendError, match="refused"):
                await sink.send(sample_alerts[1:2])
        finally:
            await sink.close()

    run(scenario())
