"""The HTTP plumbing the HEC and webhook sinks share: a client with explicit timeouts, and a
POST whose network failures and unwelcome answers become ``SendError`` without the URL
(a webhook URL is a credential)."""

from __future__ import annotations

import ssl
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from pipeline.sinks import Refusal, SendError

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
"""Per request; a receiver slower than this is treated as down and the forwarder retries."""


def http_client(
    verify: ssl.SSLContext | bool = True, headers: Mapping[str, str] | None = None
) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TIMEOUT, verify=verify, headers=headers)


async def post(
    client: httpx.AsyncClient,
    receiver: str,
    url: str,
    *,
    done: int,
    refused: Sequence[Refusal],
    **request: Any,
) -> httpx.Response:
    """POST; a network failure or timeout is a ``SendError`` naming ``receiver``, never
    ``url``, and without its cause attached (tracebacks would show the request)."""
    try:
        return await client.post(url, **request)
    except httpx.TransportError as exc:
        detail = str(exc).replace(url, "<url>")
        message = f"{receiver} unreachable ({type(exc).__name__}{': ' if detail else ''}{detail})"
        raise SendError(message, done, refused) from None


def answered(receiver: str, response: httpx.Response) -> str:
    """``"<receiver> answered <status>: <start of the body>"``, for errors and refusals; a
    body quoting the request's URL or path (some 404 pages do) gets it masked."""
    url = response.request.url
    text = " ".join(response.text.split())
    for secret in (str(url), url.raw_path.decode("ascii"), url.path):
        if len(secret) > 1:  # not a bare "/"
            text = text.replace(secret, "<url>")
    text = text[:200]
    return f"{receiver} answered {response.status_code}{': ' if text else ''}{text}"
