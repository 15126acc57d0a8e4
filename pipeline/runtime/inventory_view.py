"""The read-only HTTP view of the mail-client inventory, as a function of the request.

The worker serves it on Faust's web server (off unless enabled); what the view answers is
decided here, without a web framework, so it is tested as it is:

- ``GET /inventory``: JSON ``{"rows": [...], "offset", "limit", "total", "next"}``, the
  inventory rows (``pipeline.core.inventory.rows``) by user, paginated with ``offset`` and
  ``limit`` (at most ``MAX_LIMIT``); ``user=UPN-or-id`` keeps one user's rows and
  ``non_compliant=1`` the clients the policy does not allow.
- ``GET /inventory.csv``: the same rows (the same page) as CSV with a header.
- ``HEAD`` answers like ``GET`` without a body; any other method is 405 with ``Allow``.
- With a token configured, a request without ``Authorization: Bearer <token>`` is 401. The
  worker must require one when it binds beyond loopback (``refuse_binding``).
"""

from __future__ import annotations

import csv
import hmac
import io
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from pipeline.core.inventory import FIELDS, State, listing

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
PATHS = ("/inventory", "/inventory.csv")

Mask = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    content_type: str = "application/json"
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _error(status: int, message: str, **headers: str) -> Response:
    return Response(status, body=orjson.dumps({"error": message}), headers=headers)


def refuse_binding(host: str, token: str) -> str | None:
    """Why the view may not listen on ``host``: beyond loopback it needs a token."""
    if token:
        return None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    return None if loopback else f"the inventory view on {host} needs a bearer token"


def handle(
    method: str,
    path: str,
    query: Mapping[str, str],
    authorization: str,
    token: str,
    users: Callable[[], Iterable[tuple[str, State]]],
    mask: Mask = lambda row: row,
) -> Response:
    """The response to one request; ``users`` gives (user id, inventory state) pairs of the
    users this worker holds, ``mask`` pseudonymises a row as the policy says."""
    if method not in ("GET", "HEAD"):
        return _error(405, "read-only: GET only", Allow="GET, HEAD")
    if token and not hmac.compare_digest(authorization.encode(), f"Bearer {token}".encode()):
        return _error(401, "bearer token required", **{"WWW-Authenticate": "Bearer"})
    if path not in PATHS:
        return _error(404, "not found")
    try:
        offset = int(query.get("offset", "0"))
        limit = int(query.get("limit", str(DEFAULT_LIMIT)))
    except ValueError:
        return _error(400, "offset and limit are whole numbers")
    if offset < 0 or not 0 < limit <= MAX_LIMIT:
        return _error(400, f"offset >= 0 and 0 < limit <= {MAX_LIMIT}")
    found = listing(users(), query.get("non_compliant") == "1", query.get("user", ""))
    page = [mask(row) for row in found[offset : offset + limit]]
    if path.endswith(".csv"):
        text = io.StringIO()
        writer = csv.DictWriter(text, FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(page)
        response = Response(200, "text/csv; charset=utf-8", text.getvalue().encode())
    else:
        following = offset + limit if offset + limit < len(found) else None
        body = {"rows": page, "offset": offset, "limit": limit, "total": len(found)}
        response = Response(200, body=orjson.dumps(body | {"next": following}))
    return response if method == "GET" else Response(200, response.content_type)
