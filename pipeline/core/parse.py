"""Bytes as delivered (Event Hubs events, files, Graph and Log Analytics exports) to
normalized records: the containers (an envelope, a Graph page, a Logs query API result, an
array, JSON lines, the Log Analytics portal's CSV) and the JSON itself; the records inside
are read by their input shape (``pipeline.core.shapes``).

This is the hot path of the whole product. Every event is decoded once with orjson and read
leniently here. JSON with a repeated key is ambiguous (orjson keeps the last value, so
``{"records":[...],"records":[]}`` would read as empty): orjson's compact re-encoding of
what it read is as long as the input only when nothing was dropped, and the rare input
that is not compact, or did drop something, is decoded again by the standard library,
which names the repeated key. That check is why there is no faster typed decoder beside
this one: it needs orjson's objects anyway, and with them the lenient reader costs the same.
Nothing is re-serialized except a rejected record.
A record that cannot be understood becomes a ``Rejected`` with a short reason code and the
field at fault; the good records next to it are kept.

Reason codes (stable: dead-letter consumers and metrics use them):

``too-large``            the event exceeds the configured size limit; not parsed
``invalid-utf8``         bytes that are not UTF-8
``invalid-json``         UTF-8 that is not JSON
``not-an-object``        a record that is not a JSON object (e.g. a number inside ``records``)
``missing-field``        a required field is absent or empty (``field`` names it)
``bad-type``             a field has the wrong JSON type (``field`` names it)
``bad-value``            a field has the right type but cannot be read (an unparseable timestamp)
``unsupported-category`` a category the pipeline does not handle (audit logs, ...)
``duplicate-key``        an object names a key twice (``field`` names it): the record, or
                         the whole event when it is the envelope
``unrecognised-shape``   no input shape knows the record (CSV without a Log Analytics
                         header, an object of no known API)
``too-deep``             nesting deeper than any sign-in has (orjson's limit, 1,024)
``processing-error``     a bug met on this input: the exception type, never re-raised
"""

from __future__ import annotations

import codecs
import csv
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson

from pipeline.core.records import Record
from pipeline.core.rejects import Rejected, processing_error
from pipeline.core.shapes import ParseError, normalize
from pipeline.core.shapes.reading import top

DEFAULT_MAX_EVENT_BYTES = 1024 * 1024

REASONS = (
    "too-large",
    "invalid-utf8",
    "invalid-json",
    "not-an-object",
    "missing-field",
    "bad-type",
    "bad-value",
    "unsupported-category",
    "duplicate-key",
    "unrecognised-shape",
    "too-deep",
    "processing-error",
)


def _rejected(error: ParseError, raw: bytes, line: int = 1) -> Rejected:
    return Rejected(error.reason, error.field, str(error)[:500], raw, line, error.record_id)


@dataclass(slots=True)
class Parsed:
    records: list[Record] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def parse_event(data: bytes, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Parsed:
    """Parse one delivered unit: an envelope, a record, an array, or JSON lines of those.

    Never raises: whatever the bytes, each ends as records or rejects with a reason.
    """
    out = Parsed()
    if len(data) > max_bytes:
        err = ParseError("too-large", "", f"{len(data)} bytes > limit {max_bytes}")
        out.rejected.append(_rejected(err, data))
        return out
    try:
        doc, repeats = decode(data)
    except ParseError as err:
        if data.count(b"\n", 0, len(data.rstrip())) == 0:
            out.rejected.append(_rejected(err, data))
            return out
        for line_no, line in _lines(data):
            _parse_line(line, line_no, out)
        return out
    _add_guarded(doc, out, 1, data, repeats)
    return out


def parse_file(data: bytes, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Parsed:
    """Parse a file: one JSON document (possibly pretty-printed), or JSON lines.

    Each JSON line is one delivery and is held to ``max_bytes``; a whole-file document is
    local input and is not. Never raises.
    """
    out = Parsed()
    try:
        doc, repeats = decode(data, classify=False)  # why it failed is each line's to say
    except ParseError:
        if looks_like_csv(data):
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                err = ParseError("invalid-utf8", "", f"byte {exc.start}")
                out.rejected.append(_rejected(err, data))
                return out
            for part in _csv_parts(text.splitlines(keepends=True)):
                out.records += part.records
                out.rejected += part.rejected
            return out
        for line_no, line in _lines(data):
            _parse_json_line(line, line_no, max_bytes, out)
        return out
    _add_guarded(doc, out, 1, data, repeats)
    return out


_PART = 1000
"""Records (and rejects) per piece ``parse_stream`` hands on, at most a line's more."""


def parse_stream(stream: BinaryIO, max_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> Iterator[Parsed]:
    """``parse_file``'s records and rejects, in pieces, reading ``stream`` as it goes.

    JSON lines are read a line at a time and the portal's CSV a row at a time, so a large
    export never sits in memory whole. A file of one JSON document (pretty-printed, or a
    single line) is read whole as ``parse_file`` reads it: the APIs that write one document
    (Graph, the Logs query API, ``az``) page or cap their results, and JSON lines are what
    an export of any size is (Event Hubs capture, diagnostic settings to storage).
    """
    head: list[bytes] = []
    lines = iter(stream)
    first = second = b""
    for raw in lines:
        head.append(raw)
        if not raw.strip():
            continue
        if first:
            second = raw
            break
        first = raw
    start = first.removeprefix(_BOM).lstrip()[:1]
    if not second or (start in (b"{", b"[") and not _decodes(first)):
        yield parse_file(b"".join(head) + stream.read(), max_bytes)
        return
    if looks_like_csv(first):
        text = codecs.iterdecode(itertools.chain(head, lines), "utf-8-sig")
        yield from _csv_parts(text)
        return
    out = Parsed()
    for line_no, raw in enumerate(itertools.chain(head, lines), 1):
        line = raw.removesuffix(b"\n")
        if line.strip():
            _parse_json_line(line, line_no, max_bytes, out)
            if len(out.records) + len(out.rejected) >= _PART:
                yield out
                out = Parsed()
    yield out


def _decodes(line: bytes) -> bool:
    try:
        orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    return True


_BOM = b"\xef\xbb\xbf"


def looks_like_csv(data: bytes) -> bool:
    """A first line that is no JSON and has commas: a header row."""
    first = data.removeprefix(_BOM).lstrip()[:4096].split(b"\n", 1)[0]
    return first[:1] not in (b"{", b"[", b"") and b"," in first


CSV_HEADER_MARKS = frozenset({"TimeGenerated", "Type", "CreatedDateTime"})
"""A Log Analytics CSV export's header has one of these (the time columns suffixed
`` [UTC]``); a CSV without any is not a table export this can read."""


def csv_rows(lines: Iterable[str]) -> Iterator[tuple[int, list[str], list[str]]]:
    """The Log Analytics portal's CSV export: a header row, one row per record, dynamic
    cells as JSON text (quotes doubled), times as ``9/19/2023, 1:45:17.287 PM`` in columns
    named ``TimeGenerated [UTC]``. Yields (line a row starts on, the header without the
    `` [UTC]`` suffixes, the row's cells) for every row with a value; a ``lines`` that
    decodes as it is read raises ``UnicodeDecodeError`` where its bytes are not UTF-8."""
    reader = csv.reader(lines, strict=False)
    header = [name.removesuffix(" [UTC]").strip() for name in next(reader, [])]
    line_no = reader.line_num
    for row in reader:
        start, line_no = line_no + 1, reader.line_num
        if any(row):
            yield start, header, row


def _csv_parts(lines: Iterable[str]) -> Iterator[Parsed]:
    """Records of a CSV export (``csv_rows``), each row read as the table row it is; bytes
    that are not UTF-8 end the file with one reject."""
    out = Parsed()
    rows = csv_rows(lines)
    line = 1
    try:
        for line, header, row in rows:
            _add_row(header, row, not CSV_HEADER_MARKS.isdisjoint(header), line, out)
            if len(out.records) + len(out.rejected) >= _PART:
                yield out
                out = Parsed()
    except UnicodeDecodeError as exc:
        err = ParseError("invalid-utf8", "", f"byte {exc.start} of a line after {line}")
        out.rejected.append(_rejected(err, b"", line + 1))
    yield out


def _add_row(header: list[str], row: list[str], known: bool, line: int, out: Parsed) -> None:
    raw = ",".join(row).encode()
    if not known:
        err = ParseError(
            "unrecognised-shape",
            "",
            "looks like CSV without a Log Analytics header (TimeGenerated [UTC], Type)",
        )
        out.rejected.append(_rejected(err, raw, line))
        return
    try:
        out.records.append(normalize(dict(zip(header, row, strict=False))))
    except ParseError as err:
        out.rejected.append(_rejected(err, raw, line))
    except Exception as exc:  # a bug must cost this record only
        out.rejected.append(processing_error(exc, raw))


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    for line_no, line in enumerate(data.split(b"\n"), 1):
        if line.strip():
            yield line_no, line


def _parse_json_line(line: bytes, line_no: int, max_bytes: int, out: Parsed) -> None:
    """One line of a JSON lines file: one delivery, held to ``max_bytes``."""
    if len(line) > max_bytes:
        err = ParseError("too-large", "", f"{len(line)} bytes > limit {max_bytes}")
        out.rejected.append(_rejected(err, line, line_no))
    else:
        _parse_line(line, line_no, out)


def _parse_line(line: bytes, line_no: int, out: Parsed) -> None:
    try:
        doc, repeats = decode(line)
    except ParseError as err:
        out.rejected.append(_rejected(err, line, line_no))
        return
    _add_guarded(doc, out, line_no, line, repeats)


def _add_guarded(doc: Any, out: Parsed, line: int, raw: bytes, repeats: bool) -> None:
    """``add_document``, with a bug costing this document only, never the run."""
    records, rejected = len(out.records), len(out.rejected)
    try:
        add_document(doc, out, line, raw, repeats)
    except Exception as exc:
        del out.records[records:], out.rejected[rejected:]
        out.rejected.append(processing_error(exc, raw))


class _Repeated(dict[str, Any]):
    """An object that named ``key`` more than once (its last value kept, as orjson does)."""

    key = ""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    repeated = _Repeated(obj)
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            repeated.key = name
            break
        seen.add(name)
    return repeated


_exact = json.JSONDecoder(object_pairs_hook=_pairs).decode


def decode(data: bytes, classify: bool = True) -> tuple[Any, bool]:
    """The JSON document in ``data``, and whether it may repeat a key: then it comes from
    the exact reader, and every object that repeats one is a ``_Repeated``."""
    doc = _loads(data, classify)
    try:
        if len(orjson.dumps(doc)) == len(data.strip()):
            return doc, False  # compact, and orjson dropped nothing: no key was repeated
    except orjson.JSONEncodeError:  # deeper than orjson writes (255); the exact reader copes
        pass
    try:
        return _exact(data.decode("utf-8")), True
    except RecursionError:
        raise ParseError("too-deep", "", "nesting too deep for the exact reader") from None


def _loads(data: bytes, classify: bool = True) -> Any:
    """``classify=False`` skips telling bad UTF-8 from bad JSON, which decodes all of
    ``data``: for a whole file of JSON lines that fails as one document, read line by line
    next, that was a tenth of ``scan``'s time."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if not classify:
            raise ParseError("invalid-json") from None
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise ParseError("invalid-utf8", "", f"byte {uexc.start}") from None
        if str(exc).startswith("depth limit"):
            raise ParseError("too-deep", "", str(exc)) from None
        raise ParseError("invalid-json", "", str(exc)) from None


def _repeated_key(value: Any) -> str | None:
    """The first repeated key at any depth of ``value`` (a dotted path), else None.
    Iterative: the exact reader allows deeper nesting than Python's stack would walk."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item, _Repeated):
                return path + item.key
            stack.extend((f"{path}{k}.", v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((path, v) for v in item)
    return None


def _serialized(item: Any, raw: bytes) -> bytes:
    """A rejected record's bytes: itself re-encoded, or the whole input when orjson cannot
    write it (nesting deeper than 255)."""
    try:
        return orjson.dumps(item)
    except orjson.JSONEncodeError:
        return raw


def add_document(doc: Any, out: Parsed, line: int, raw: bytes, repeats: bool) -> None:
    """Add the records of one decoded document to ``out``; reject bad ones one by one.
    ``raw`` is the document's bytes, dead-lettered as they came when the whole is rejected;
    ``repeats`` says the exact reader decoded it, so an object in it may repeat a key."""
    if isinstance(doc, dict):
        items = container_items(doc)
        if items is None:
            items = [doc]
        elif isinstance(doc, _Repeated):  # which of the repeated lists is the event's?
            err = ParseError("duplicate-key", doc.key, "the envelope names a key twice")
            out.rejected.append(_rejected(err, raw, line))
            return
        elif isinstance(items, ParseError):
            out.rejected.append(_rejected(items, raw, line))
            return
    elif isinstance(doc, list):
        items = doc
    else:
        err = ParseError("not-an-object", "", f"top level is {type(doc).__name__}")
        out.rejected.append(_rejected(err, raw, line))
        return
    append = out.records.append
    for item in items:
        try:
            if repeats and (key := _repeated_key(item)) is not None:
                raise ParseError("duplicate-key", key, "a key named twice", _record_id(item))
            append(normalize(item))
        except ParseError as err:
            out.rejected.append(_rejected(err, _serialized(item, raw), line))
        except Exception as exc:  # a bug must cost this record only
            out.rejected.append(processing_error(exc, _serialized(item, raw), _record_id(item)))


def container_items(doc: dict[str, Any]) -> list[Any] | ParseError | None:
    """The records a container object holds, None when ``doc`` is a record itself: an Event
    Hubs envelope's ``records``, a Graph page's ``value`` (``@odata.context`` or
    ``@odata.nextLink`` beside it), or the rows of a Logs query API result (``tables``, each
    with ``columns`` and ``rows``), as objects keyed by column name."""
    items = doc.get("records")
    if items is None and "value" in doc and ("@odata.context" in doc or "@odata.nextLink" in doc):
        items = doc["value"]
    if items is None and "tables" in doc:
        return _query_rows(doc["tables"])
    if items is None or isinstance(items, list):
        return items
    return ParseError("bad-type", "records", "expected a list")


def _query_rows(tables: Any) -> list[Any] | ParseError:
    rows: list[Any] = []
    for table in tables if isinstance(tables, list) else [None]:
        columns = table.get("columns") if isinstance(table, dict) else None
        found = table.get("rows") if isinstance(table, dict) else None
        if not isinstance(columns, list) or not isinstance(found, list):
            return ParseError("bad-type", "tables", "expected tables with columns and rows")
        names = [c.get("name") if isinstance(c, dict) else None for c in columns]
        rows += (
            dict(zip(names, row, strict=False)) if isinstance(row, list) else row for row in found
        )
    return rows


def _record_id(rec: Any) -> str:
    """The id of a record that could not be read, where it can be told, for the reject."""
    if not isinstance(rec, dict):
        return ""
    props = top(rec, "properties")
    rid = (props if isinstance(props, dict) else rec).get("id")
    return rid if isinstance(rid, str) else ""
