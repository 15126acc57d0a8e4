"""The HTTP sinks against local receivers that check requests like Splunk HEC, Slack, Teams
Workflows and the Logs Ingestion API do: real httpx and the real Azure SDK, nothing mocked."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar

import orjson
import pytest
from azure.core.credentials import AccessToken
from http_receiver import Answer, PrivateCA, Receiver
from pydantic import SecretStr

from pipeline.alerts.formats import document, line
from pipeline.core.policy import Policy
from pipeline.core.records import SEVERITIES
from pipeline.core.scan import scan
from pipeline.core.timeparse import parse_time
from pipeline.sinks import AlertDict, Format, Refusal, SendError
from pipeline.sinks.hec import HecConfig, HecSink
from pipeline.sinks.sentinel import TABLE_COLUMNS, SentinelConfig, SentinelSink
from pipeline.sinks.webhook import WebhookConfig, WebhookSink

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"
HEC_TOKEN = "5f1c2e8a-hec-token-7d43"
WEBHOOK_PATH = "/services/T0001/B0002/s3cr3tW3bh00kP4th?sig=hunter2"
BEARER = "eyJ0eXAi.test-bearer.token"
T = TypeVar("T")


@pytest.fixture(scope="module")
def alerts() -> list[AlertDict]:
    out = BytesIO()
    scan([(SAMPLE.name, SAMPLE.read_bytes())], Policy(), out)
    found = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert len(found) >= 20
    return found


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> PrivateCA:
    return PrivateCA(tmp_path_factory.mktemp("ca"))


def run(sink: Any, work: Callable[[Any], Awaitable[T]]) -> T:
    """``work(sink)`` on a fresh event loop, closing the sink after."""

    async def scenario() -> T:
        try:
            return await work(sink)
        finally:
            await sink.close()

    return asyncio.run(scenario())


def ids(items: Sequence[AlertDict]) -> list[str]:
    return [a["id"] for a in items]


def message_ids(messages: list[Any], alerts: list[AlertDict]) -> list[str]:
    """The alert id each chat message carries, in arrival order."""
    found = []
    for message in messages:
        text = orjson.dumps(message).decode()
        (alert_id,) = [a["id"] for a in alerts if a["id"] in text]
        found.append(alert_id)
    return found


async def send_all(sink: Any, alerts: Sequence[AlertDict]) -> list[Refusal]:
    """Like the forwarder without failures: batches of ``max_batch``, indexes batch-relative
    turned into indexes of ``alerts``."""
    refused: list[Refusal] = []
    for start in range(0, len(alerts), sink.max_batch):
        batch = alerts[start : start + sink.max_batch]
        refused += [Refusal(start + r.index, r.reason) for r in await sink.send(batch)]
    return refused


# -- Splunk HEC ----------------------------------------------------------------------------


@pytest.fixture
def hec(ca: PrivateCA) -> Iterator[Receiver]:
    with Receiver("hec", secret=HEC_TOKEN, ca=ca) as receiver:
        yield receiver


def hec_sink(receiver: Receiver, ca: PrivateCA, **config: Any) -> HecSink:
    settings = {"type": "hec", "url": receiver.url, "ca_file": ca.ca_file, "max_batch": 10}
    return HecSink("splunk", HecConfig(**settings | config), token=SecretStr(HEC_TOKEN))


def test_hec_indexes_every_alert_once_in_order(
    hec: Receiver, ca: PrivateCA, alerts: list[AlertDict], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNIN_RISK_SINK_SPLUNK_TOKEN", HEC_TOKEN)
    config = HecConfig(
        type="hec", url=hec.url, ca_file=ca.ca_file, index="security", sourcetype="sr:alert"
    )
    sink = HecSink("splunk", config)  # the token from the environment

    assert run(sink, lambda s: send_all(s, alerts)) == []
    assert hec.rejected == []
    assert [e["event"]["id"] for e in hec.accepted] == ids(alerts)
    assert hec.requests == -(-len(alerts) // config.max_batch)
    for event, alert in zip(hec.accepted, alerts, strict=True):
        assert event["event"] == alert
        assert event["sourcetype"] == "sr:alert"
        assert event["index"] == "security"
        assert event["source"] == "signin-risk"
        assert event["time"] == pytest.approx(parse_time(alert["time"]).timestamp(), abs=1e-6)


@pytest.mark.parametrize("fmt", ["ocsf", "ecs", "cef"])
def test_hec_event_is_the_alert_in_the_sink_format(
    hec: Receiver, ca: PrivateCA, alerts: list[AlertDict], fmt: Format
) -> None:
    assert run(hec_sink(hec, ca, format=fmt), lambda s: s.send(alerts[:3])) == []
    expected = [line(a, fmt) if fmt == "cef" else document(a, fmt) for a in alerts[:3]]
    assert [e["event"] for e in hec.accepted] == expected


def test_hec_refuses_the_event_it_names_and_indexes_the_rest_once(
    hec: Receiver, ca: PrivateCA, alerts: list[AlertDict]
) -> None:
    batch = alerts[:8]
    hec.refuse_ids = {batch[3]["id"]}
    refused = run(hec_sink(hec, ca), lambda s: s.send(batch))

    assert [r.index for r in refused] == [3]
    assert "400" in refused[0].reason and "Invalid data format" in refused[0].reason
    assert [e["event"]["id"] for e in hec.accepted] == ids(batch[:3] + batch[4:])
    assert hec.requests == 2  # the whole batch, then the events after the refused one


def test_hec_503_reports_what_was_done_and_a_retry_delivers_the_rest(
    hec: Receiver, ca: PrivateCA, alerts: list[AlertDict]
) -> None:
    batch = alerts[:6]
    hec.refuse_ids = {batch[2]["id"]}
    hec.script.extend([None, Answer(503, {"text": "Server is busy", "code": 9})])

    async def scenario(sink: HecSink) -> SendError:
        with pytest.raises(SendError) as failure:
            await sink.send(batch)
        assert await sink.send(batch[failure.value.done :]) == []
        return failure.value

    error = run(hec_sink(hec, ca), scenario)
    assert error.done == 3
    assert [r.index for r in error.refused] == [2]
    assert "503" in str(error) and "Server is busy" in str(error)
    assert [e["event"]["id"] for e in hec.accepted] == ids(batch[:2] + batch[3:])


def test_hec_halves_a_batch_that_is_too_large(
    hec: Receiver, ca: PrivateCA, alerts: list[AlertDict]
) -> None:
    batch = alerts[:10]
    hec.max_body = 3 * max(len(orjson.dumps(a)) for a in batch) + 600
    assert run(hec_sink(hec, ca), lambda s: s.send(batch)) == []
    assert [e["event"]["id"] for e in hec.accepted] == ids(batch)
    assert hec.rejected.count("size") >= 2


def test_hec_connection_refused_is_a_quick_send_error_until_it_is_back(
    hec: Receiver, ca: PrivateCA, alerts: list[AlertDict]
) -> None:
    async def scenario(sink: HecSink) -> tuple[SendError, float]:
        await sink.send(alerts[:1])  # leaves a keep-alive connection in the pool
        hec.stop()
        started = time.monotonic()
        with pytest.raises(SendError) as failure:
            await sink.send(alerts[1:3])
        elapsed = time.monotonic() - started
        hec.start()
        assert await sink.send(alerts[1:3]) == []
        return failure.value, elapsed

    error, elapsed = run(hec_sink(hec, ca), scenario)
    assert elapsed < 2
    assert error.done == 0 and error.refused == ()
    assert "hec unreachable" in str(error)
    assert [e["event"]["id"] for e in hec.accepted] == ids(alerts[:3])


@pytest.mark.parametrize(
    ("splunk_token", "index", "answer", "text"),
    [
        ("another-token", "", "hec answered 403", "Invalid token"),
        (HEC_TOKEN, "not-allowed", "hec answered 400", "Incorrect index"),
    ],
    ids=["bad-token", "index-not-allowed"],
)
def test_hec_configuration_errors_are_send_errors_not_refusals(
    hec: Receiver,
    ca: PrivateCA,
    alerts: list[AlertDict],
    splunk_token: str,
    index: str,
    answer: str,
    text: str,
) -> None:
    hec.secret = splunk_token
    with pytest.raises(SendError) as failure:
        run(hec_sink(hec, ca, index=index), lambda s: s.send(alerts[:5]))
    assert failure.value.done == 0 and failure.value.refused == ()
    assert str(failure.value).startswith(answer) and text in str(failure.value)
    assert HEC_TOKEN not in str(failure.value)
    assert hec.accepted == []


def test_hec_rejects_an_untrusted_certificate(
    hec: Receiver, tmp_path: Path, alerts: list[AlertDict]
) -> None:
    stranger = PrivateCA(tmp_path)
    with pytest.raises(SendError, match=r"hec unreachable.*CERTIFICATE_VERIFY_FAILED"):
        run(hec_sink(hec, stranger), lambda s: s.send(alerts[:1]))
    assert hec.accepted == []


# -- chat webhooks -------------------------------------------------------------------------


@pytest.fixture(params=["slack", "teams"])
def chat(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    with Receiver(request.param, secret=WEBHOOK_PATH) as receiver:
        yield receiver


def webhook_sink(receiver: Receiver, **config: Any) -> WebhookSink:
    settings = {
        "type": "webhook",
        "template": receiver.kind,
        "url": receiver.url + WEBHOOK_PATH,
        "per_minute": 60_000,
        "min_severity": "informational",
    }
    return WebhookSink("chat", WebhookConfig(**settings | config))


def test_webhook_posts_every_alert_in_order_as_a_valid_message(
    chat: Receiver, alerts: list[AlertDict]
) -> None:
    nasty = dict(alerts[0], summary="<!channel> & <http://evil|click>", title="T" * 300)
    nasty["user"] = "<@U0>&" * 400  # longer than a field once escaped
    long = dict(alerts[1], summary="a&b<c>" * 600)
    batch = [nasty, long, *alerts[2:]]
    assert run(webhook_sink(chat), lambda s: send_all(s, batch)) == []
    assert chat.rejected == []
    assert message_ids(chat.accepted, alerts) == ids(alerts)


def test_webhook_skips_alerts_below_min_severity(chat: Receiver, alerts: list[AlertDict]) -> None:
    wanted = [a for a in alerts if SEVERITIES.index(a["severity"]) >= SEVERITIES.index("high")]
    assert 0 < len(wanted) < len(alerts)
    sink = webhook_sink(chat, min_severity="high", max_batch=len(alerts))
    assert run(sink, lambda s: s.send(alerts)) == []
    assert message_ids(chat.accepted, alerts) == ids(wanted)


def test_webhook_paces_posts_to_per_minute(chat: Receiver, alerts: list[AlertDict]) -> None:
    sink = webhook_sink(chat, per_minute=600)  # one post every 0.1 s
    started = time.monotonic()
    run(sink, lambda s: s.send(alerts[:5]))
    assert 0.35 < time.monotonic() - started < 3
    assert len(chat.accepted) == 5


def test_webhook_waits_out_a_short_retry_after(chat: Receiver, alerts: list[AlertDict]) -> None:
    chat.script.extend([None, Answer(429, "rate_limited", {"Retry-After": "1"})])
    started = time.monotonic()
    assert run(webhook_sink(chat), lambda s: s.send(alerts[:3])) == []
    assert time.monotonic() - started >= 0.9
    assert message_ids(chat.accepted, alerts) == ids(alerts[:3])


@pytest.mark.parametrize(
    "answers", [["120"], ["0", "0"]], ids=["long-retry-after", "second-429-in-a-row"]
)
def test_webhook_429_that_persists_is_a_send_error(
    chat: Receiver, alerts: list[AlertDict], answers: list[str]
) -> None:
    chat.script.extend([None] + [Answer(429, "rate_limited", {"Retry-After": a}) for a in answers])
    started = time.monotonic()
    with pytest.raises(SendError, match="webhook answered 429") as failure:
        run(webhook_sink(chat), lambda s: s.send(alerts[:3]))
    assert time.monotonic() - started < 1
    assert failure.value.done == 1
    assert message_ids(chat.accepted, alerts) == ids(alerts[:1])


def test_webhook_503_reports_done_and_a_retry_posts_each_alert_once(
    chat: Receiver, alerts: list[AlertDict], caplog: pytest.LogCaptureFixture
) -> None:
    batch = alerts[:4]
    chat.script.extend([None, None, Answer(503, "service_unavailable")])

    async def scenario(sink: WebhookSink) -> SendError:
        with pytest.raises(SendError) as failure:
            await sink.send(batch)
        assert await sink.send(batch[failure.value.done :]) == []
        return failure.value

    with caplog.at_level(logging.DEBUG):
        error = run(webhook_sink(chat), scenario)
    assert error.done == 2 and "webhook answered 503" in str(error)
    assert message_ids(chat.accepted, alerts) == ids(batch)
    assert "HTTP Request: POST <webhook url>" in caplog.text
    assert "s3cr3t" not in caplog.text and "hunter2" not in caplog.text


def test_webhook_refuses_a_message_the_receiver_rejects(
    chat: Receiver, alerts: list[AlertDict]
) -> None:
    batch = alerts[:4]
    chat.refuse_ids = {batch[1]["id"]}
    refused = run(webhook_sink(chat), lambda s: s.send(batch))
    assert [r.index for r in refused] == [1]
    assert refused[0].reason.startswith("webhook answered 400")
    assert message_ids(chat.accepted, alerts) == ids(batch[:1] + batch[2:])


def test_webhook_revoked_or_unreachable_is_a_send_error_without_the_url(
    chat: Receiver, alerts: list[AlertDict], monkeypatch: pytest.MonkeyPatch
) -> None:
    chat.secret = "/services/T0001/B0002/rotated"  # our URL no longer exists
    monkeypatch.setenv("SIGNIN_RISK_SINK_CHAT_URL", chat.url + WEBHOOK_PATH)
    sink = webhook_sink(chat, url="")  # the URL from the environment
    with pytest.raises(SendError) as revoked:
        run(sink, lambda s: s.send(alerts[:3]))
    assert revoked.value.done == 0 and revoked.value.refused == ()
    assert str(revoked.value).startswith(("webhook answered 404", "webhook answered 401"))

    chat.stop()
    with pytest.raises(SendError, match="webhook unreachable") as down:
        run(webhook_sink(chat), lambda s: s.send(alerts[:3]))
    for error in (revoked.value, down.value):
        assert "s3cr3t" not in str(error) and "hunter2" not in str(error)
        assert chat.url not in str(error)


def test_json_webhook_posts_the_alert_document(alerts: list[AlertDict]) -> None:
    with Receiver("json", secret=WEBHOOK_PATH) as receiver:
        receiver.refuse_ids = {alerts[0]["id"]}
        refused = run(webhook_sink(receiver, template="json"), lambda s: s.send(alerts[:3]))
        assert [r.index for r in refused] == [0] and "422" in refused[0].reason
        assert receiver.accepted == alerts[1:3]

        receiver.secret = "/hooks/rotated"  # answers 404 quoting the path, as some servers do
        with pytest.raises(SendError, match="webhook answered 404") as failure:
            run(webhook_sink(receiver, template="json"), lambda s: s.send(alerts[:1]))
        assert "s3cr3t" not in str(failure.value) and "hunter2" not in str(failure.value)


# -- Sentinel (Logs Ingestion API) -------------------------------------------------------------


class StaticToken:
    """An AsyncTokenCredential with a fixed token, as a managed identity would hand out."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(BEARER, int(time.time()) + 3600)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> StaticToken:
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def ingestion(ca: PrivateCA) -> Iterator[Receiver]:
    with Receiver("sentinel", secret=BEARER, ca=ca, rule_id="dcr-5e1f0c2a7d43") as receiver:
        yield receiver


def sentinel_sink(receiver: Receiver, ca: PrivateCA, credential: StaticToken) -> SentinelSink:
    config = SentinelConfig(type="sentinel", endpoint=receiver.url, rule_id="dcr-5e1f0c2a7d43")
    return SentinelSink("sentinel", config, credential=credential, connection_verify=ca.ca_file)


def test_sentinel_rows_arrive_as_table_columns(
    ingestion: Receiver, ca: PrivateCA, alerts: list[AlertDict]
) -> None:
    credential = StaticToken()
    assert run(sentinel_sink(ingestion, ca, credential), lambda s: s.send(alerts)) == []
    assert ingestion.rejected == [] and ingestion.encodings == ["gzip"]
    assert credential.scopes[0] == ("https://monitor.azure.com/.default",)
    assert [row["AlertId"] for row in ingestion.accepted] == ids(alerts)
    types: dict[str, Any] = {"string": str, "datetime": str, "dynamic": (list, dict)}
    for row, alert in zip(ingestion.accepted, alerts, strict=True):
        assert list(row) == list(TABLE_COLUMNS)
        for column, kind in TABLE_COLUMNS.items():
            assert isinstance(row[column], types[kind]), column
        assert parse_time(row["TimeGenerated"]) == parse_time(alert["time"])
        assert row["MitreTechniques"] == alert["mitre"] and row["Evidence"] == alert["evidence"]
        assert (row["UserPrincipalName"], row["IPAddress"]) == (alert["user"], alert["ip"])


def test_sentinel_400_refuses_the_chunk_and_503_is_a_send_error(
    ingestion: Receiver, ca: PrivateCA, alerts: list[AlertDict]
) -> None:
    batch = alerts[:5]
    ingestion.refuse_ids = {batch[2]["id"]}

    async def scenario(sink: SentinelSink) -> tuple[list[Refusal], SendError]:
        refused = await sink.send(batch)
        ingestion.refuse_ids = set()
        ingestion.down = True
        with pytest.raises(SendError) as failure:
            await sink.send(batch)
        ingestion.down = False
        assert await sink.send(batch) == []
        return refused, failure.value

    refused, error = run(sentinel_sink(ingestion, ca, StaticToken()), scenario)
    assert [r.index for r in refused] == list(range(5))  # one chunk: the service names no row
    assert refused[0].reason == "sentinel answered 400: InvalidContent"
    assert error.done == 0 and error.refused == ()
    assert str(error) == "sentinel answered 503: ServiceUnavailable"
    assert ingestion.requests == 3  # no SDK retries behind the forwarder's back
    assert [row["AlertId"] for row in ingestion.accepted] == ids(batch)


def test_sentinel_bad_token_and_outage_are_send_errors(
    ingestion: Receiver, ca: PrivateCA, alerts: list[AlertDict]
) -> None:
    ingestion.secret = "a-token-for-another-audience"

    async def scenario(sink: SentinelSink) -> tuple[SendError, SendError, float]:
        with pytest.raises(SendError) as rejected:
            await sink.send(alerts[:2])
        ingestion.stop()
        started = time.monotonic()
        with pytest.raises(SendError) as down:
            await sink.send(alerts[:2])
        return rejected.value, down.value, time.monotonic() - started

    rejected, down, elapsed = run(sentinel_sink(ingestion, ca, StaticToken()), scenario)
    assert str(rejected) == "sentinel answered 401: InvalidToken" and rejected.refused == ()
    assert str(down).startswith("sentinel upload failed (ServiceRequestError")
    assert elapsed < 2
    for error in (rejected, down):
        assert BEARER not in str(error)
