"""Alerts to a chat webhook (Teams Workflows, Slack incoming webhooks) or any JSON endpoint.

One POST per alert, in order, paced to ``per_minute``: chat webhooks take one message per
request and throttle a burst. The webhook URL is a credential (whoever has it can post), so
it never appears in an error message, and httpx's request log line gets it masked.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from typing import Any, Literal

import httpx
from pydantic import Field

from pipeline.alerts.formats import document
from pipeline.core.records import SEVERITIES
from pipeline.sinks import AlertDict, Refusal, SendError, SinkBase, SinkType, sink_secret
from pipeline.sinks._http import answered, http_client, post


class WebhookConfig(SinkBase):
    type: Literal["webhook"]
    template: Literal["teams", "slack", "json"] = "json"
    """``teams``: an Adaptive Card (Workflows accept only cards); ``slack``: blocks;
    ``json``: the alert in the sink's format."""
    url: str = ""
    """The endpoint; usually a secret, so prefer ``SIGNIN_RISK_SINK_<NAME>_URL``."""
    per_minute: float = Field(30.0, gt=0)
    """Messages per minute at most (Slack allows about one per second per webhook)."""
    min_severity: Literal["informational", "low", "medium", "high", "critical"] = "low"
    """Alerts below this severity are not posted (they still count as delivered)."""


REFUSED = frozenset({400, 413, 422})
"""The message itself is wrong (Slack: invalid_blocks); sending it again cannot help.
401/403/404/410 are not here: they come for every message once a webhook is revoked,
deleted or its channel archived, and dead-lettering the whole stream would hide that."""
RETRY_AFTER_WAIT_MAX_S = 5.0
"""A 429 asking for at most this long is waited out in place (once per alert)."""


class RateLimit:
    """A token bucket holding one token, refilled every ``60 / per_minute`` seconds: no
    burst credit builds up while idle, since chat webhooks throttle bursts."""

    def __init__(self, per_minute: float) -> None:
        self._interval = 60.0 / per_minute
        self._next = 0.0
        """``time.monotonic()`` when the next token is there."""

    async def take(self) -> None:
        now = time.monotonic()
        wait = self._next - now
        self._next = max(now, self._next) + self._interval
        if wait > 0:
            await asyncio.sleep(wait)

    def hold(self, seconds: float) -> None:
        """No token for ``seconds`` (a 429's Retry-After), whoever asks next."""
        self._next = max(self._next, time.monotonic() + seconds)


def retry_after(response: httpx.Response) -> float:
    """Seconds from a Retry-After header (delta or HTTP date), at most an hour; 1 s when
    absent or unreadable."""
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return 1.0
    return min(max(seconds, 0.0), 3600.0) if math.isfinite(seconds) else 1.0


class _MaskUrl(logging.Filter):
    """httpx logs every request's URL at INFO; for a webhook that is the credential."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self._url = httpx.URL(url)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                "<webhook url>" if isinstance(arg, httpx.URL) and arg == self._url else arg
                for arg in record.args
            )
        return True


class WebhookSink:
    """Posts each alert at or above ``min_severity`` as one message; see ``send``."""

    def __init__(self, name: str, config: WebhookConfig) -> None:
        if config.template == "json" and config.format == "cef":
            raise ValueError(f"webhook sink {name}: template json needs a JSON format, not cef")
        self.name = name
        self.max_batch = config.max_batch
        self._config = config
        self._url = sink_secret(name, "url").get_secret_value() or config.url
        if not self._url:
            env = f"SIGNIN_RISK_SINK_{name.upper().replace('-', '_')}_URL"
            raise ValueError(f"webhook sink {name}: no URL (set {env})")
        self._min_rank = SEVERITIES.index(config.min_severity)
        self._limit = RateLimit(config.per_minute)
        self._client = http_client()
        self._mask = _MaskUrl(self._url)
        logging.getLogger("httpx").addFilter(self._mask)

    async def send(self, alerts: Sequence[AlertDict]) -> list[Refusal]:
        """Post in order. A 400/413/422 refuses that alert; any other failure raises with
        ``done`` = alerts before it, so a retry never posts a message twice.

        A 429 holds the rate limit for its Retry-After: a short one (Slack's usual second)
        is waited out and the alert posted again, since a burst is not an outage; a longer
        one, or a second 429 for the same alert, raises so the forwarder backs off and
        counts it (its retry then still waits in ``RateLimit.take``)."""
        refused: list[Refusal] = []
        for index, alert in enumerate(alerts):
            severity = alert.get("severity")
            if severity in SEVERITIES and SEVERITIES.index(severity) < self._min_rank:
                continue
            message = self._message(alert)
            waited = False
            while True:
                await self._limit.take()
                response = await post(
                    self._client, "webhook", self._url, done=index, refused=refused, json=message
                )
                if response.status_code != 429:
                    break
                wait = retry_after(response)
                self._limit.hold(wait)
                if waited or wait > RETRY_AFTER_WAIT_MAX_S:
                    raise SendError(
                        f"webhook answered 429 (retry after {wait:.0f} s)", index, refused
                    )
                waited = True
            if response.is_success:
                continue
            if response.status_code not in REFUSED:
                raise SendError(answered("webhook", response), index, refused)
            refused.append(Refusal(index, answered("webhook", response)))
        return refused

    def _message(self, alert: AlertDict) -> dict[str, Any]:
        if self._config.template == "teams":
            return teams_message(alert)
        if self._config.template == "slack":
            return slack_message(alert)
        return document(alert, self._config.format)

    async def close(self) -> None:
        logging.getLogger("httpx").removeFilter(self._mask)
        await self._client.aclose()


def _facts(alert: AlertDict) -> list[tuple[str, str]]:
    """What an analyst triages on, label and text, empty ones left out."""
    location = alert.get("location") or {}
    client = alert.get("client") or {}
    risk = alert.get("risk") or {}
    place = ", ".join(filter(None, (location.get(k) for k in ("city", "state", "country"))))
    software = " ".join(
        filter(None, (client.get("name") or client.get("family"), client.get("version")))
    )
    if client.get("platform"):
        software += f" on {client['platform']}"
    facts = [
        ("Rule", alert.get("rule")),
        ("Severity", alert.get("severity")),
        ("User", alert.get("user")),
        ("IP", alert.get("ip")),
        ("Location", place),
        ("Client", software),
        ("Time", alert.get("time")),
        ("MITRE", ", ".join(alert.get("mitre") or ())),
        ("Risk", "/".join(filter(None, (risk.get("level"), risk.get("state"))))),
    ]
    return [(label, str(value)) for label, value in facts if value]


def _headline(alert: AlertDict) -> str:
    return f"{str(alert.get('severity', '')).upper()}: {alert.get('title', alert.get('rule'))}"


_CARD_COLOURS = {"critical": "attention", "high": "attention", "medium": "warning", "low": "accent"}


def teams_message(alert: AlertDict) -> dict[str, Any]:
    """The Workflows "post to a channel when a webhook request is received" payload: a message
    with one Adaptive Card (the retired Office 365 connector cards are not accepted)."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": _headline(alert),
            "size": "medium",
            "weight": "bolder",
            "color": _CARD_COLOURS.get(alert.get("severity", ""), "default"),
            "wrap": True,
        },
    ]
    if alert.get("summary"):
        body.append({"type": "TextBlock", "text": alert["summary"], "wrap": True})
    body += [
        {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in _facts(alert)]},
        {
            "type": "TextBlock",
            "text": f"signin-risk alert {alert.get('id')}",
            "isSubtle": True,
            "size": "small",
            "wrap": True,
        },
    ]
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
    }
    attachment = {
        "contentType": "application/vnd.microsoft.card.adaptive",
        "contentUrl": None,
        "content": card,
    }
    return {"type": "message", "attachments": [attachment]}


_MRKDWN_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def _mrkdwn(text: str, limit: int) -> str:
    """``text`` escaped for Slack mrkdwn (``<`` would start a link or a mention), cut to
    ``limit`` characters after escaping but never inside an entity."""
    escaped = text.translate(_MRKDWN_ESCAPES)
    if len(escaped) <= limit:
        return escaped
    pieces: list[str] = []
    room = limit - 1
    for char in text:
        piece = char.translate(_MRKDWN_ESCAPES)
        room -= len(piece)
        if room < 0:
            break
        pieces.append(piece)
    return "".join(pieces) + "…"


def _plain(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_message(alert: AlertDict) -> dict[str, Any]:
    """Blocks within Slack's limits: header ≤150 characters, section text ≤3000, ≤10 fields of
    ≤2000; ``text`` is the notification and screen-reader fallback."""
    section: dict[str, Any] = {"type": "section"}
    if alert.get("summary"):
        section["text"] = {"type": "mrkdwn", "text": _mrkdwn(alert["summary"], 3000)}
    section["fields"] = [
        {"type": "mrkdwn", "text": f"*{label}*\n" + _mrkdwn(value, 2000 - len(label) - 3)}
        for label, value in _facts(alert)
    ]
    footer = f"signin-risk alert {alert.get('id')} · detected {alert.get('detected_at', '')}"
    return {
        "text": _mrkdwn(f"{_headline(alert)} ({alert.get('user', '')})", 3000),
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": _plain(_headline(alert), 150)},
            },
            section,
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _mrkdwn(footer, 2000)}]},
        ],
    }


SINK = SinkType(WebhookConfig, lambda name, config, _: WebhookSink(name, config), order=4)
