"""Alerts to Splunk's HTTP Event Collector (``/services/collector/event``).

A batch is one request: the events as JSON objects one after another, each with its alert's
time, so Splunk indexes the alert at the sign-in's time rather than at arrival. HEC's answer
tells which event it refused (``invalid-event-number``): the events before it were indexed
and the ones after it were not, so they are sent again in a new request.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from typing import Any, Literal

import httpx
import orjson
from pydantic import SecretStr

from pipeline.alerts.formats import document, line
from pipeline.core.timeparse import parse_time
from pipeline.sinks import AlertDict, Refusal, SendError, SinkBase, SinkType, sink_secret
from pipeline.sinks._http import answered, http_client, post


class HecConfig(SinkBase):
    type: Literal["hec"]
    url: str
    """Base URL of the collector, e.g. ``https://splunk.example.com:8088``."""
    sourcetype: str = "signin-risk:alert"
    source: str = "signin-risk"
    index: str = ""
    """Target index; empty: the token's default."""
    ca_file: str = ""
    verify_tls: bool = True


CONFIG_CODES = frozenset({7, 10, 11, 14, 16})
"""400 answers about the token or the request, not an event: incorrect index, data channel
missing or invalid, acknowledgement disabled, query-string token disabled. Every event would
get the same answer, so they are a (transient) configuration error, not refusals."""


class HecSink:
    """One HEC request per batch; see ``send`` for what each answer means."""

    def __init__(self, name: str, config: HecConfig, *, token: SecretStr | None = None) -> None:
        self.name = name
        self.max_batch = config.max_batch
        self._config = config
        secret = (token or sink_secret(name, "token")).get_secret_value()
        if not secret:
            env = f"SIGNIN_RISK_SINK_{name.upper().replace('-', '_')}_TOKEN"
            raise ValueError(f"hec sink {name}: no token (set {env})")
        verify: ssl.SSLContext | bool = False
        if config.verify_tls:
            verify = ssl.create_default_context(cafile=config.ca_file or None)
        self._url = config.url.rstrip("/") + "/services/collector/event"
        self._client = http_client(
            verify, {"Authorization": f"Splunk {secret}", "Content-Type": "application/json"}
        )

    def _event(self, alert: AlertDict) -> bytes:
        fmt = self._config.format
        envelope: dict[str, Any] = {
            "time": parse_time(alert["time"]).timestamp(),
            "source": self._config.source,
            "sourcetype": self._config.sourcetype,
        }
        if self._config.index:
            envelope["index"] = self._config.index
        envelope["event"] = line(alert, fmt) if fmt == "cef" else document(alert, fmt)
        return orjson.dumps(envelope)

    async def send(self, alerts: Sequence[AlertDict]) -> list[Refusal]:
        """Send the batch, and after a refused event the rest of it, until all is indexed.

        400 (an event's data) refuses the event HEC names; without a name, or on 413 (too
        large), the request is halved until the bad event is alone. 401/403/404, the 400s in
        ``CONFIG_CODES``, 429, 5xx and network failures raise with ``done`` = events before
        the failed request."""
        events = [self._event(alert) for alert in alerts]
        refused: list[Refusal] = []
        todo = [(0, len(events))]
        """Ranges of events still to send, the next one last."""
        while todo:
            start, end = todo.pop()
            response = await post(
                self._client,
                "hec",
                self._url,
                done=start,
                refused=refused,
                content=b"\n".join(events[start:end]),
            )
            if response.is_success:
                continue
            answer = _json(response)
            reason = answered("hec", response)
            if response.status_code not in (400, 413) or answer.get("code") in CONFIG_CODES:
                raise SendError(reason, start, refused)
            bad = answer.get("invalid-event-number")
            if type(bad) is int and 0 <= bad < end - start:
                refused.append(Refusal(start + bad, reason))
                if start + bad + 1 < end:
                    todo.append((start + bad + 1, end))
            elif end - start == 1:
                refused.append(Refusal(start, reason))
            else:
                middle = (start + end) // 2
                todo += [(middle, end), (start, middle)]
        return refused

    async def close(self) -> None:
        await self._client.aclose()


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


SINK = SinkType(HecConfig, lambda name, config, _: HecSink(name, config), order=2)
