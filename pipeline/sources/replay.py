"""Replay exported sign-in logs into the raw topic, shaped like Event Hubs deliveries.

One Kafka message is one Event Hubs event, so envelopes are preserved:

- JSON lines (what Event Hubs captures and ``make sample`` write): every non-empty line is
  sent byte for byte as one message, without being parsed. Bad lines (invalid JSON, invalid
  UTF-8, over ``max_event_bytes``) are sent too: dead-lettering them is the worker's job, so
  a replay exercises the same path as a real delivery.
- One JSON document (pretty-printed or not): an envelope or a record is sent as one compact
  message; a top-level array of records, or a container too big for one event (an
  envelope, a Graph page, a Logs query API result: ``parse.container_items``), is cut into
  envelopes ``{"records": [...]}`` of at most 50 records and ``max_event_bytes``.
- The Log Analytics portal's CSV export: its rows, read as ``scan`` reads them, are sent as
  JSON objects (column -> cell) in such envelopes; the worker reads each as a table row.

The topic must exist (``pipeline.runtime.topics.create_topics``): producing to a missing topic makes
brokers create it with their own default partition count, Tansu even when asked not to.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import itertools
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, NamedTuple

import orjson
from kafka import KafkaProducer
from kafka.errors import MessageSizeTooLargeError

from pipeline.core.parse import container_items, csv_rows, looks_like_csv
from pipeline.runtime.procs import FLUSH_S
from pipeline.runtime.progress import bar as progress_bar
from pipeline.runtime.progress import input_bytes
from pipeline.runtime.settings import Settings
from pipeline.runtime.topics import admin_client
from pipeline.sources.inputs import InputError, expand, open_input, size

log = logging.getLogger(__name__)

ENVELOPE_RECORDS = 50
"""Records per envelope when a document is cut up (diagnostic settings send batches too)."""
REQUEST_OVERHEAD = 64 * 1024
"""Producer request room above ``max_event_bytes``, so slightly oversized lines still go."""
_CATEGORY = b'"category"'
_ENVELOPE_HEAD = b'{"records":['
_ENVELOPE_TAIL = b"]}"


@dataclass(frozen=True)
class ReplayStats:
    messages: int
    """Messages produced (one per Event Hubs event)."""
    records_estimate: int
    """Sign-in/risk records in them: exact for documents, counted cheaply for JSON lines."""
    bytes: int
    seconds: float
    skipped: int = 0
    """Messages the producer refused as too large to send at all (logged with file:line)."""

    @property
    def records_per_second(self) -> float:
        return self.records_estimate / self.seconds if self.seconds > 0 else 0.0


class ReplayError(RuntimeError):
    """The replay could not run or not every message was delivered."""


class Message(NamedTuple):
    value: bytes
    records: int
    where: str
    """``file:line`` for log messages."""


def replay(
    paths: Sequence[str],
    settings: Settings,
    rate: float | None = None,
    progress: bool = True,
) -> ReplayStats:
    """Produce ``paths`` (``-`` is stdin) to the raw topic; return once all are acknowledged.

    ``rate`` limits throughput to that many *records* per second, as estimated per message
    (see ``records_in_line``), averaged from the start: a pause never leads to a burst
    larger than what was missed. Raises ``ReplayError`` if the topic is missing or any
    message failed; ``InputError`` before sending anything if a path is missing.
    Directories stand for the files below them; gzip is decompressed.
    A ``KeyboardInterrupt`` (a stop signal) leaves at once, giving what was already sent
    ``FLUSH_S`` to be acknowledged.
    """
    if rate is not None and rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    paths = expand(paths)  # InputError, an OSError, for a missing one
    topic = settings.topic("raw")
    _require_topic(settings, topic)
    producer = KafkaProducer(
        bootstrap_servers=[h.strip() for h in settings.kafka_bootstrap.split(",")],
        client_id=f"{settings.app_id}-replay",
        linger_ms=5,
        acks="all",
        max_request_size=settings.max_event_bytes + REQUEST_OVERHEAD,
        compression_type=settings.compression_type,
        **settings.kafka_client_config(),
    )
    failures: list[BaseException] = []
    sizes = {p: size(p) or 0 for p in paths}
    bar = progress_bar(f"replay {topic}", input_bytes(paths), progress)
    messages = records = sent_bytes = skipped = 0
    start = time.monotonic()
    close_s = 10.0
    try:
        for path in paths:
            file_start = sent_bytes
            with open_input(path) as stream:
                name = "<stdin>" if path == "-" else path
                for msg in iter_messages(stream, name, settings.max_event_bytes):
                    if rate is not None:
                        delay = pace(records, rate, time.monotonic() - start)
                        if delay > 0.001:
                            time.sleep(delay)
                    try:
                        # Keyed by file: one file's events stay in one partition, in order,
                        # as one Event Hubs partition delivers them; the worker then sees a
                        # user's risk records and sign-ins in the order the file has them.
                        future = producer.send(topic, msg.value, key=name.encode())
                    except MessageSizeTooLargeError as exc:
                        skipped += 1
                        log.warning("%s: not sent, %d bytes: %s", msg.where, len(msg.value), exc)
                        continue
                    future.add_errback(failures.append)
                    messages += 1
                    records += msg.records
                    sent_bytes += len(msg.value)
                    bar.update(len(msg.value))
            # newlines, whitespace of pretty-printed documents: the bar ends at the file size
            bar.update(max(0, sizes.get(path, 0) - (sent_bytes - file_start)))
        producer.flush()
    except KeyboardInterrupt:  # SIGINT, or SIGTERM as ``procs.Interrupted``
        close_s = FLUSH_S  # what was sent gets a moment to be acknowledged, not 10 s
        raise
    finally:
        bar.close()
        producer.close(timeout=close_s)
    if failures:
        raise ReplayError(
            f"{len(failures)} of {messages} messages to {topic} failed; first: {failures[0]!r}"
        )
    return ReplayStats(messages, records, sent_bytes, time.monotonic() - start, skipped)


def pace(sent_records: int, rate: float, elapsed_s: float) -> float:
    """Seconds to wait before sending more, so ``sent_records`` take at least ``1/rate`` each."""
    return max(0.0, sent_records / rate - elapsed_s)


def records_in_line(line: bytes) -> int:
    """Records in one delivered event, estimated without parsing it.

    Every diagnostic-settings record has exactly one ``"category"`` key; a Graph object or
    an unreadable line has none and counts as one.
    """
    return line.count(_CATEGORY) or 1


def iter_messages(stream: BinaryIO, name: str, max_bytes: int) -> Iterator[Message]:
    """The messages of one input: JSON lines as they are, one document re-encoded, or the
    rows of a CSV export in envelopes.

    A file whose first non-empty line is a complete ``{...}`` is JSON lines and is streamed
    without parsing, unless that line is the only one and over ``max_bytes``: like ``scan``,
    a one-line file is then taken as a whole document and cut into envelopes. Otherwise, if
    it starts like JSON, the whole input is read and parsed once as a single document; if
    that fails, its lines are sent as they are.
    """
    line_no = 0
    for first in stream:
        line_no += 1
        if first.strip():
            break
    else:
        return
    if looks_like_csv(first):
        yield from _csv_messages(itertools.chain([first], stream), name, max_bytes)
        return
    head = first.strip()
    if head[:1] == b"[" or (head[:1] == b"{" and head[-1:] != b"}"):
        data = first + stream.read()
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            yield from _line_messages(io.BytesIO(data), line_no, name)
        else:
            yield from _document_messages(doc, name, max_bytes)
        return
    (message,) = _line_messages([first], line_no, name)
    rest = _line_messages(stream, line_no + 1, name)
    second = next(rest, None)
    if second is None and len(message.value) > max_bytes:
        try:
            doc = orjson.loads(message.value)
        except orjson.JSONDecodeError:
            yield message
        else:
            yield from _document_messages(doc, name, max_bytes)
        return
    yield message
    if second is not None:
        yield second
        yield from rest


def _line_messages(lines: Iterable[bytes], first_no: int, name: str) -> Iterator[Message]:
    for line_no, raw in enumerate(lines, first_no):
        line = raw.removesuffix(b"\n").removesuffix(b"\r")
        if line.strip():
            yield Message(line, records_in_line(line), f"{name}:{line_no}")


def _document_messages(doc: Any, name: str, max_bytes: int) -> Iterator[Message]:
    items = (
        doc if isinstance(doc, list) else container_items(doc) if isinstance(doc, dict) else None
    )
    if not isinstance(items, list):  # a bare record, a scalar, a container with bad records
        yield Message(orjson.dumps(doc), 1, name)
        return
    if isinstance(doc, dict):
        whole = orjson.dumps(doc)
        if len(whole) <= max_bytes:
            yield Message(whole, len(items), name)
            return
    yield from _enveloped(items, name, max_bytes)


def _enveloped(items: Iterable[Any], name: str, max_bytes: int) -> Iterator[Message]:
    for n, (value, count) in enumerate(envelopes(items, max_bytes), 1):
        yield Message(value, count, f"{name}#{n}")


def _csv_messages(lines: Iterable[bytes], name: str, max_bytes: int) -> Iterator[Message]:
    """A portal CSV export as envelopes of its rows, each row the JSON object of its columns:
    the raw topic carries JSON, and the worker reads a row as ``scan`` reads the CSV."""
    text = codecs.iterdecode(lines, "utf-8-sig")
    rows = (dict(zip(header, row, strict=False)) for _, header, row in csv_rows(text))
    try:
        yield from _enveloped(rows, name, max_bytes)
    except UnicodeDecodeError as exc:
        raise InputError(
            name, f"CSV that is not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None


def envelopes(
    records: Iterable[Any], max_bytes: int, per_envelope: int = ENVELOPE_RECORDS
) -> Iterator[tuple[bytes, int]]:
    """Compact ``{"records": [...]}`` envelopes of at most ``per_envelope`` records and,
    unless a single record is larger, ``max_bytes``; yields (bytes, record count)."""
    fixed = len(_ENVELOPE_HEAD) + len(_ENVELOPE_TAIL)
    chunk: list[bytes] = []
    size = fixed
    for record in records:
        part = orjson.dumps(record)
        grown = size + len(part) + (1 if chunk else 0)
        if chunk and (len(chunk) == per_envelope or grown > max_bytes):
            yield _ENVELOPE_HEAD + b",".join(chunk) + _ENVELOPE_TAIL, len(chunk)
            chunk, grown = [], fixed + len(part)
        chunk.append(part)
        size = grown
    if chunk:
        yield _ENVELOPE_HEAD + b",".join(chunk) + _ENVELOPE_TAIL, len(chunk)


def _require_topic(settings: Settings, topic: str) -> None:
    admin = admin_client(settings)
    try:
        (answer,) = admin.describe_topics([topic])
    finally:
        with contextlib.suppress(Exception):
            admin.close()
    if answer["error_code"]:
        raise ReplayError(
            f"topic {topic!r} does not exist on {settings.kafka_bootstrap} (error "
            f"{answer['error_code']}): create the topics first; producing would auto-create "
            "it with the broker's default partition count"
        )
