"""Local HTTP(S) receivers that check requests the way the real services do, for the sink
tests: Splunk HEC, Slack and Teams (Workflows) webhooks, a plain JSON webhook, and the Azure
Monitor Logs Ingestion API behind Sentinel.

A ``Receiver`` serves in a thread (keep-alive, like the services) and is scripted per test:
``script`` queues answers for the next requests (None: answer normally), ``down`` answers
503, ``refuse_ids`` refuses any event or message that carries one of those alert ids, and
``stop()``/``start()`` closes and reopens the same port so connections are refused meanwhile.
A request the service would reject gets the service's 4xx answer and its reason is kept in
``rejected``; what the service would accept is appended to ``accepted`` (HEC events, chat
messages, table rows) in arrival order.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import json
import re
import socket
import ssl
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from tlsca import CertificateAuthority

Kind = Literal["hec", "slack", "teams", "json", "sentinel"]
MAX_INGESTION_BYTES = 1024 * 1024  # Logs Ingestion API: 1 MB per call


@dataclass
class Answer:
    status: int
    body: Any = None
    """bytes or str as is, anything else as JSON."""
    headers: dict[str, str] = field(default_factory=dict)


class PrivateCA:
    """A throwaway CA and a server certificate it signed for 127.0.0.1 and localhost."""

    def __init__(self, directory: Path) -> None:
        ca_file, self._chain = CertificateAuthority().write_server_files(directory)
        self.ca_file = str(ca_file)

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self._chain)
        return context


class Receiver:
    """One service on 127.0.0.1; HTTPS when given a ``ca``.

    ``secret`` is what the service authenticates: the HEC token, the Bearer token for the
    Logs Ingestion API, or a webhook's path (with its query string), which is its credential.
    """

    def __init__(
        self,
        kind: Kind,
        *,
        secret: str,
        ca: PrivateCA | None = None,
        indexes: frozenset[str] = frozenset({"main", "security"}),
        max_body: int = 0,
        rule_id: str = "dcr-00000000000000000000000000000000",
        stream: str = "Custom-SigninRiskAlerts_CL",
    ) -> None:
        self.kind = kind
        self.secret = secret
        self.indexes = indexes
        """HEC: indexes the token may write to."""
        self.max_body = max_body
        """Bodies larger than this are answered 413 (0: the service's own limit)."""
        self.rule_id = rule_id
        self.stream = stream
        self.script: deque[Answer | None] = deque()
        self.down = False
        self.refuse_ids: set[str] = set()
        self.accepted: list[Any] = []
        self.rejected: list[str] = []
        self.requests = 0
        self.encodings: list[str] = []
        """Content-Encoding of each request ("" for none)."""
        self._tls = ca.server_context() if ca is not None else None
        self._lock = threading.Lock()
        self._port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self._port}"

    def start(self) -> Receiver:
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.receiver = self
        if self._tls is not None:
            server.socket = self._tls.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the port and every open connection: clients get ECONNREFUSED until start."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.close_connections()
        assert self._thread is not None
        self._thread.join()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Answer:
        with self._lock:
            self.requests += 1
            self.encodings.append(headers.get("content-encoding", ""))
            scripted = self.script.popleft() if self.script else None
            if scripted is not None:
                return scripted
            if self.down:
                return Answer(503, _DOWN[self.kind])
            if method != "POST":
                return Answer(405, "method not allowed")
            handler = getattr(self, f"_{self.kind}")
            answer: Answer = handler(target, headers, body)
            return answer

    def _refused(self, item: Any) -> bool:
        text = json.dumps(item)
        return any(alert_id in text for alert_id in self.refuse_ids)

    def _reject(self, answer: Answer, why: str) -> Answer:
        self.rejected.append(why)
        return answer

    # -- Splunk HTTP Event Collector ------------------------------------------------------

    def _hec(self, target: str, headers: dict[str, str], body: bytes) -> Answer:
        path = urlsplit(target).path.rstrip("/")
        if path not in ("/services/collector", "/services/collector/event"):
            return self._reject(_splunk(404, 404, "The requested URL was not found"), "path")
        authorization = headers.get("authorization", "")
        if not authorization:
            return self._reject(_splunk(401, 2, "Token is required"), "no token")
        scheme, _, token = authorization.partition(" ")
        if scheme != "Splunk" or not token:
            return self._reject(_splunk(401, 3, "Invalid authorization"), "scheme")
        if token != self.secret:
            return self._reject(_splunk(403, 4, "Invalid token"), "token")
        if self.max_body and len(body) > self.max_body:
            return self._reject(_splunk(413, 413, "Content too large"), "size")
        text = body.decode("utf-8", "replace")
        decoder = json.JSONDecoder()
        position, number = 0, 0
        while True:
            while position < len(text) and text[position].isspace():
                position += 1
            if position == len(text):
                break
            try:
                event, position = decoder.raw_decode(text, position)
            except ValueError:
                event = None
            problem = _hec_problem(event, self.indexes)
            if problem is None and self._refused(event):
                problem = (6, "Invalid data format")
            if problem is not None:
                code, message = problem
                self.rejected.append(f"event {number}: {message}")
                return _splunk(400, code, message, number)
            self.accepted.append(event)  # HEC indexes the events before a bad one
            number += 1
        if number == 0:
            return self._reject(_splunk(400, 5, "No data"), "no data")
        return _splunk(200, 0, "Success")

    # -- chat webhooks ---------------------------------------------------------------------

    def _webhook_json(
        self, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[Any, Answer | None]:
        """The JSON body of a webhook POST, or the answer for a wrong URL or body."""
        if target != self.secret:
            # Slack and Teams answer a code; some servers quote the path, a credential here
            status, text = _WRONG_WEBHOOK.get(self.kind, (404, f"no webhook at {target}"))
            return None, self._reject(Answer(status, text), "webhook url")
        if not headers.get("content-type", "").startswith("application/json"):
            return None, self._reject(Answer(400, "invalid_payload"), "content type")
        try:
            return json.loads(body), None
        except ValueError:
            return None, self._reject(Answer(400, "invalid_payload"), "not JSON")

    def _slack(self, target: str, headers: dict[str, str], body: bytes) -> Answer:
        message, answer = self._webhook_json(target, headers, body)
        if answer is not None:
            return answer
        problem = _slack_problem(message)
        if problem is None and self._refused(message):
            problem = "refused by test"
        if problem is not None:
            return self._reject(Answer(400, "invalid_blocks"), problem)
        self.accepted.append(message)
        return Answer(200, "ok")

    def _teams(self, target: str, headers: dict[str, str], body: bytes) -> Answer:
        message, answer = self._webhook_json(target, headers, body)
        if answer is not None:
            return answer
        problem = _teams_problem(message)
        if problem is None and self._refused(message):
            problem = "refused by test"
        if problem is not None:
            error = {"error": {"code": "InvalidRequestContent", "message": problem}}
            return self._reject(Answer(400, error), problem)
        self.accepted.append(message)
        return Answer(202)

    def _json(self, target: str, headers: dict[str, str], body: bytes) -> Answer:
        message, answer = self._webhook_json(target, headers, body)
        if answer is not None:
            return answer
        if not isinstance(message, dict):
            return self._reject(Answer(400, "expected a JSON object"), "not an object")
        if self._refused(message):
            return self._reject(Answer(422, "refused by test"), "refused by test")
        self.accepted.append(message)
        return Answer(200)

    # -- Azure Monitor Logs Ingestion API ---------------------------------------------------

    def _sentinel(self, target: str, headers: dict[str, str], body: bytes) -> Answer:
        url = urlsplit(target)
        match = re.fullmatch(r"/dataCollectionRules/([^/]+)/streams/([^/]+)", url.path)
        if not parse_qs(url.query).get("api-version"):
            return self._reject(_ingestion_error(400, "MissingApiVersionParameter"), "api-version")
        if headers.get("authorization") != f"Bearer {self.secret}":
            return self._reject(_ingestion_error(401, "InvalidToken"), "token")
        if match is None or match.groups() != (self.rule_id, self.stream):
            return self._reject(_ingestion_error(404, "NotFound"), f"path {url.path}")
        if headers.get("content-encoding") == "gzip":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError):
                return self._reject(_ingestion_error(400, "InvalidContentEncoding"), "gzip")
        if len(body) > (self.max_body or MAX_INGESTION_BYTES):
            return self._reject(_ingestion_error(413, "ContentLengthLimitExceeded"), "size")
        if not headers.get("content-type", "").startswith("application/json"):
            return self._reject(_ingestion_error(415, "UnsupportedMediaType"), "content type")
        try:
            rows = json.loads(body)
        except ValueError:
            return self._reject(_ingestion_error(400, "InvalidContent"), "not JSON")
        problem = _rows_problem(rows)
        if problem is None and self._refused(rows):
            problem = "refused by test"
        if problem is not None:
            return self._reject(_ingestion_error(400, "InvalidContent"), problem)
        self.accepted.extend(rows)
        return Answer(204)


_DOWN: dict[Kind, Any] = {
    "hec": {"text": "Server is busy", "code": 9},
    "slack": "service_unavailable",
    "teams": {"error": {"code": "ServiceUnavailable", "message": "try again later"}},
    "json": "service unavailable",
    "sentinel": {"error": {"code": "ServiceUnavailable", "message": "try again later"}},
}
_WRONG_WEBHOOK: dict[Kind, tuple[int, Any]] = {
    "slack": (404, "no_service"),
    "teams": (401, {"error": {"code": "DirectApiAuthorizationRequired", "message": "no sig"}}),
}


def _splunk(status: int, code: int, text: str, invalid_event: int | None = None) -> Answer:
    body: dict[str, Any] = {"text": text, "code": code}
    if invalid_event is not None:
        body["invalid-event-number"] = invalid_event
    return Answer(status, body)


def _ingestion_error(status: int, code: str) -> Answer:
    return Answer(status, {"error": {"code": code, "message": f"test receiver: {code}"}})


def _hec_problem(event: Any, indexes: frozenset[str]) -> tuple[int, str] | None:
    if not isinstance(event, dict):
        return 6, "Invalid data format"
    if "event" not in event:
        return 12, "Event field is required"
    if event["event"] in ("", {}, None):
        return 13, "Event field cannot be blank"
    if "time" in event and (type(event["time"]) not in (int, float)):
        return 6, "Invalid data format"
    if not isinstance(event.get("sourcetype"), str) or not event["sourcetype"]:
        return 6, "Invalid data format"  # stricter than HEC: ours always names its sourcetype
    if "index" in event and event["index"] not in indexes:
        return 7, "Incorrect index"
    return None


_MRKDWN_RAW = re.compile(r"[<>]|&(?!amp;|lt;|gt;)")


def _slack_problem(message: Any) -> str | None:
    """Why Slack would answer invalid_blocks (or we would have sent unescaped mrkdwn)."""
    if not isinstance(message, dict) or not isinstance(message.get("text"), str):
        return "no text"
    blocks = message.get("blocks")
    if not isinstance(blocks, list) or not 0 < len(blocks) <= 50:
        return "blocks"
    texts = [message["text"]]
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            text = block.get("text", {})
            if text.get("type") != "plain_text" or not 0 < len(text.get("text", "")) <= 150:
                return "header"
        elif kind == "section":
            text, fields = block.get("text"), block.get("fields", [])
            if text is None and not fields:
                return "section needs text or fields"
            if text is not None:
                if text.get("type") != "mrkdwn" or not 0 < len(text.get("text", "")) <= 3000:
                    return "section text"
                texts.append(text["text"])
            if len(fields) > 10:
                return "more than 10 fields"
            for item in fields:
                if item.get("type") != "mrkdwn" or not 0 < len(item.get("text", "")) <= 2000:
                    return "field"
                texts.append(item["text"])
        elif kind == "context":
            elements = block.get("elements", [])
            if not 0 < len(elements) <= 10:
                return "context elements"
            for item in elements:
                if item.get("type") != "mrkdwn" or not 0 < len(item.get("text", "")) <= 3000:
                    return "context element"
                texts.append(item["text"])
        else:
            return f"block type {kind}"
    if any(_MRKDWN_RAW.search(text) for text in texts):
        return "unescaped mrkdwn"
    return None


def _teams_problem(message: Any) -> str | None:
    """Why a Workflows "post to a channel" flow would reject the request."""
    if not isinstance(message, dict) or message.get("type") != "message":
        return "type is not message"
    attachments = message.get("attachments")
    if not isinstance(attachments, list) or len(attachments) != 1:
        return "needs exactly one attachment"
    attachment = attachments[0]
    if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
        return "contentType"
    card = attachment.get("content")
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
        return "content is not an AdaptiveCard"
    if not re.fullmatch(r"1\.[0-6]", str(card.get("version", ""))):
        return "version"
    body = card.get("body")
    if not isinstance(body, list) or not body:
        return "empty body"
    for element in body:
        kind = element.get("type")
        if kind == "TextBlock" and not isinstance(element.get("text"), str):
            return "TextBlock text"
        if kind == "FactSet" and not all(
            isinstance(f.get("title"), str) and isinstance(f.get("value"), str)
            for f in element.get("facts", [])
        ):
            return "FactSet facts"
        if kind not in ("TextBlock", "FactSet", "ColumnSet", "Container"):
            return f"element {kind}"
    return None


def _rows_problem(rows: Any) -> str | None:
    if not isinstance(rows, list) or not rows:
        return "body is not a JSON array of rows"
    for row in rows:
        if not isinstance(row, dict):
            return "row is not an object"
        try:
            dt.datetime.fromisoformat(row["TimeGenerated"])
        except (KeyError, TypeError, ValueError):
            return "TimeGenerated missing or not a datetime"
    return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            for connection in self._open:
                with contextlib.suppress(OSError):  # the client hung up already
                    connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up or refused our certificate is not the test's business."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server: _Server

    def setup(self) -> None:
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        super().setup()

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            self.send_error(411)  # the services take chunked bodies; this receiver does not
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        answer = self.server.receiver.answer(self.command, self.path, headers, body)
        if isinstance(answer.body, bytes):
            payload, kind = answer.body, "application/octet-stream"
        elif isinstance(answer.body, str):
            payload, kind = answer.body.encode(), "text/plain; charset=utf-8"
        elif answer.body is None:
            payload, kind = b"", ""
        else:
            payload, kind = json.dumps(answer.body).encode(), "application/json; charset=utf-8"
        self.send_response(answer.status)
        if kind:
            self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads ``accepted`` and ``rejected`` instead."""
