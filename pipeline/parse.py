"""Bytes as delivered (Event Hubs events, files, Graph exports) to normalized records.

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
``too-deep``             nesting deeper than any sign-in has (orjson's limit, 1,024)
``processing-error``     a bug met on this input: the exception type, never re-raised
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, get_type_hints

import orjson

from pipeline.records import (
    UNKNOWN_ERROR_CODE,
    AuthStep,
    Category,
    Device,
    From,
    Location,
    PolicyResult,
    Record,
    RiskEvent,
    SignIn,
)
from pipeline.rejects import Rejected, processing_error
from pipeline.timeparse import parse_time

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
    "too-deep",
    "processing-error",
)

# Policies that did not apply are most of a real tenant's list and say nothing about the
# sign-in; the parser drops them.
POLICY_NOT_APPLIED = frozenset({"notApplied", "notEnabled", "reportOnlyNotApplied"})

_CATEGORIES: dict[str, Category] = {c.value: c for c in Category} | {
    c.value.lower(): c for c in Category
}

# Graph's beta signIn resource says which log it belongs to in signInEventTypes.
_GRAPH_EVENT_TYPES: dict[str, Category] = {
    "interactiveuser": Category.SIGNIN,
    "noninteractiveuser": Category.NON_INTERACTIVE,
    "serviceprincipal": Category.SERVICE_PRINCIPAL,
    "managedidentity": Category.MANAGED_IDENTITY,
}

_NO_LOCATION = Location()
_NO_DEVICE = Device()


class ParseError(ValueError):
    """A record the pipeline cannot use, with the reason code and the field at fault."""

    def __init__(self, reason: str, field: str = "", detail: str = "", record_id: str = ""):
        self.reason = reason
        self.field = field
        self.detail = detail
        self.record_id = record_id
        where = f" at {field}" if field else ""
        rec = f" (record {record_id})" if record_id else ""
        super().__init__(f"{reason}{where}{rec}{': ' + detail if detail else ''}")


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
        doc, repeats = decode(data)
    except ParseError:
        for line_no, line in _lines(data):
            if len(line) > max_bytes:
                err = ParseError("too-large", "", f"{len(line)} bytes > limit {max_bytes}")
                out.rejected.append(_rejected(err, line, line_no))
            else:
                _parse_line(line, line_no, out)
        return out
    _add_guarded(doc, out, 1, data, repeats)
    return out


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    for line_no, line in enumerate(data.split(b"\n"), 1):
        if line.strip():
            yield line_no, line


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


def decode(data: bytes) -> tuple[Any, bool]:
    """The JSON document in ``data``, and whether it may repeat a key: then it comes from
    the exact reader, and every object that repeats one is a ``_Repeated``."""
    doc = _loads(data)
    try:
        if len(orjson.dumps(doc)) == len(data.strip()):
            return doc, False  # compact, and orjson dropped nothing: no key was repeated
    except orjson.JSONEncodeError:  # deeper than orjson writes (255); the exact reader copes
        pass
    try:
        return _exact(data.decode("utf-8")), True
    except RecursionError:
        raise ParseError("too-deep", "", "nesting too deep for the exact reader") from None


def _loads(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
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
        items = doc.get("records")
        if items is None:
            items = doc.get("value") if "@odata.context" in doc else None
        if items is None:
            items = [doc]
        elif isinstance(doc, _Repeated):  # which of the repeated lists is the event's?
            err = ParseError("duplicate-key", doc.key, "the envelope names a key twice")
            out.rejected.append(_rejected(err, raw, line))
            return
        elif not isinstance(items, list):
            err = ParseError("bad-type", "records", "expected a list")
            out.rejected.append(_rejected(err, raw, line))
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


def _record_id(rec: Any) -> str:
    """The id of a record that could not be read, where it can be told, for the reject."""
    if not isinstance(rec, dict):
        return ""
    props = _top(rec, "properties")
    rid = (props if isinstance(props, dict) else rec).get("id")
    return rid if isinstance(rid, str) else ""


def normalize(rec: Any) -> Record:
    """One decoded record (diagnostic-settings or Graph shape) to a ``SignIn`` or ``RiskEvent``."""
    if not isinstance(rec, dict):
        raise ParseError("not-an-object", "", f"record is {type(rec).__name__}")
    props = _top(rec, "properties")
    raw_category = _top(rec, "category")
    if raw_category is None and props is None:
        return _normalize_graph(rec)
    if not isinstance(raw_category, str) or not raw_category:
        raise ParseError("missing-field", "category")
    category = _CATEGORIES.get(raw_category) or _CATEGORIES.get(raw_category.lower())
    if category is None:
        raise ParseError("unsupported-category", "category", raw_category)
    if props is None:
        raise ParseError("missing-field", "properties", record_id=_str(_top(rec, "correlationId")))
    if not isinstance(props, dict):
        raise ParseError("bad-type", "properties", "expected an object")
    if category is Category.RISKY_USERS or category is Category.USER_RISK_EVENTS:
        return _risk_event(rec, props, category, "properties.")
    return _signin(rec, props, category, "properties.")


def _normalize_graph(rec: dict[str, Any]) -> Record:
    """Graph API objects: signIn, riskDetection and riskyUser carry no category or envelope."""
    if "riskEventType" in rec:
        return _risk_event({}, rec, Category.USER_RISK_EVENTS, "")
    if "riskLastUpdatedDateTime" in rec:
        return _risk_event({}, rec, Category.RISKY_USERS, "")
    if "createdDateTime" not in rec:
        raise ParseError("missing-field", "category", "neither a diagnostic record nor Graph")
    category = Category.SIGNIN
    event_types = rec.get("signInEventTypes")
    if isinstance(event_types, list) and event_types:
        category = _GRAPH_EVENT_TYPES.get(str(event_types[0]).lower(), Category.SIGNIN)
    return _signin({}, rec, category, "")


def _top(rec: dict[str, Any], camel: str) -> Any:
    """Top-level keys come in camelCase, PascalCase or lowercase depending on the exporter."""
    value = rec.get(camel)
    if value is None:
        value = rec.get(camel[0].upper() + camel[1:])
        if value is None:
            value = rec.get(camel.lower())
    return value


def _str(value: Any) -> str:
    """Strings as they are; numbers as text; null, objects and lists (empty or not) as ""."""
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int | float) else ""


def _lower(value: Any) -> str:
    return value.lower() if isinstance(value, str) else ""


def _required_id(props: dict[str, Any], prefix: str) -> str:
    rid = props.get("id")
    if not rid:
        raise ParseError("missing-field", prefix + "id")
    if not isinstance(rid, str):
        raise ParseError("bad-type", prefix + "id", "expected a string")
    return rid


def _time(value: Any, field_name: str, record_id: str) -> datetime:
    if not isinstance(value, str):
        raise ParseError("bad-type", field_name, "expected a timestamp string", record_id)
    try:
        return parse_time(value)
    except ValueError as exc:
        raise ParseError("bad-value", field_name, str(exc), record_id) from None


def _event_time(
    rec: dict[str, Any], props: dict[str, Any], keys: tuple[str, ...], prefix: str, rid: str
) -> datetime:
    """The first present of ``keys`` in properties, else the envelope's ``time``."""
    for key in keys:
        value = props.get(key)
        if value:
            return _time(value, prefix + key, rid)
    value = _top(rec, "time")
    if value:
        return _time(value, "time", rid)
    raise ParseError("missing-field", prefix + keys[0], record_id=rid)


def _tenant(rec: dict[str, Any], props: dict[str, Any]) -> str:
    tenant = _top(rec, "tenantId") or props.get("tenantId") or props.get("homeTenantId")
    if tenant:
        return _str(tenant)
    resource = _top(rec, "resourceId")
    if isinstance(resource, str):
        parts = resource.split("/")
        for i, part in enumerate(parts[:-1]):
            if part.lower() == "tenants":
                return parts[i + 1]
    return ""


def _error_code(rec: dict[str, Any], props: dict[str, Any], rid: str) -> tuple[int, str]:
    status = props.get("status")
    if isinstance(status, dict):
        code = status.get("errorCode")
        if code is not None:
            return _int(code, "properties.status.errorCode", rid), _str(status.get("failureReason"))
    result = _top(rec, "resultType")
    reason = _str(_top(rec, "resultDescription"))
    if isinstance(result, int):
        return result, reason
    if isinstance(result, str):
        if result.isdigit():
            return int(result), reason
        if result.lower() == "success":
            return 0, reason
    return UNKNOWN_ERROR_CODE, reason


def _int(value: Any, field_name: str, rid: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ParseError(
        "bad-type", field_name, f"expected an integer, got {type(value).__name__}", rid
    )


def _float(value: Any) -> float | None:
    if value.__class__ is float:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


_LOCATION_TEXT = ("countryOrRegion", "state", "city")


def _location(value: Any, fallback_country: Any) -> Location:
    """``properties.location`` is an object; the envelope's ``location`` is only a country
    (or an Azure region such as ``weu``, which is not a place and is ignored)."""
    if isinstance(value, dict):
        geo = value.get("geoCoordinates")
        lat = lon = None
        if isinstance(geo, dict):
            lat, lon = _float(geo.get("latitude")), _float(geo.get("longitude"))
            if not lat and not lon:  # 0/0 is how exports write "unknown"
                lat = lon = None
        country, state, city = _strings(value, _LOCATION_TEXT)
        country = country.upper()
        if country or state or city or lat is not None:
            return Location(country, state, city, lat, lon)
    if isinstance(fallback_country, str) and len(fallback_country) == 2:
        return Location(country=fallback_country.upper())
    return _NO_LOCATION


_DEVICE_TEXT = ("deviceId", "operatingSystem", "browser", "trustType")


def _device(value: Any) -> Device:
    if not isinstance(value, dict) or not value:
        return _NO_DEVICE
    device_id, os_name, browser, trust_type = _strings(value, _DEVICE_TEXT)
    compliant, managed = value.get("isCompliant"), value.get("isManaged")
    return Device(
        device_id,
        os_name,
        browser,
        compliant if isinstance(compliant, bool) else None,
        managed if isinstance(managed, bool) else None,
        trust_type,
    )


def _policies(value: Any) -> tuple[PolicyResult, ...]:
    if not isinstance(value, list):
        return ()
    applied = []
    for policy in value:
        if isinstance(policy, dict):
            result = policy.get("result")
            if result.__class__ is not str or result not in POLICY_NOT_APPLIED:
                applied.append(
                    PolicyResult(
                        _str(policy.get("id")), _str(policy.get("displayName")), _str(result)
                    )
                )
    return tuple(applied)


_STEP_TEXT = (
    "authenticationMethod",
    "authenticationStepResultDetail",
    "authenticationStepRequirement",
)


def _auth_steps(value: Any) -> tuple[AuthStep, ...]:
    if not value or not isinstance(value, list):
        return ()
    steps = []
    for step in value:
        if isinstance(step, dict):
            ok = step.get("succeeded")
            method, result_detail, requirement = _strings(step, _STEP_TEXT)
            steps.append(
                AuthStep(method, ok if isinstance(ok, bool) else None, result_detail, requirement)
            )
    return tuple(steps)


def _str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(v for v in value if isinstance(v, str) and v)


def _strings(obj: dict[str, Any], keys: tuple[str, ...]) -> list[str]:
    """``_str`` over many keys at once: the per-field call was a fifth of the parser's time."""
    return [v if v.__class__ is str else _str(v) for v in map(obj.get, keys)]


Run = tuple[int, int, tuple[str, ...], bool]
"""Consecutive ``SignIn`` fields read alike from top-level keys: start, end, keys, lower."""


def _declared() -> tuple[list[Run], list[tuple[int, tuple[str, ...], str]]]:
    """The ``From`` declarations on ``SignIn``'s fields: runs of top-level text fields,
    each filled by one comprehension, and the rest (nested or numbers) one by one."""
    runs: list[Run] = []
    other: list[tuple[int, tuple[str, ...], str]] = []
    for index, (name, hint) in enumerate(get_type_hints(SignIn, include_extras=True).items()):
        source = next((m for m in getattr(hint, "__metadata__", ()) if isinstance(m, From)), None)
        if source is None:
            continue
        assert SignIn._fields[index] == name
        keys = tuple(source.path.split("."))
        if len(keys) > 1 or source.clean == "int":
            other.append((index, keys, source.clean))
            continue
        lower = source.clean == "lower"
        if runs and runs[-1][1] == index and runs[-1][3] == lower:
            start, _, run_keys, _ = runs.pop()
            runs.append((start, index + 1, (*run_keys, keys[0]), lower))
        else:
            runs.append((index, index + 1, keys, lower))
    return runs, other


_RUNS, _OTHER = _declared()
_BLANK: list[Any] = [None] * len(SignIn._fields)
"""A row with every declared field empty: what an export without it reads as."""
for _run in _RUNS:
    _BLANK[_run[0] : _run[1]] = [""] * (_run[1] - _run[0])
for _nest in _OTHER:
    _BLANK[_nest[0]] = 0 if _nest[2] == "int" else ""
_AT = {name: index for index, name in enumerate(SignIn._fields)}
_ID, _TIME, _CATEGORY, _TENANT = _AT["id"], _AT["time"], _AT["category"], _AT["tenant_id"]
_DISPLAY, _IP, _CORRELATION = _AT["display_name"], _AT["ip"], _AT["correlation_id"]
_LOCATION, _DEVICE, _ERROR, _REASON = (
    _AT["location"],
    _AT["device"],
    _AT["error_code"],
    _AT["failure_reason"],
)
_POLICIES, _RISK_TYPES = _AT["ca_policies"], _AT["risk_event_types"]
_INTERACTIVE, _STEPS = _AT["interactive"], _AT["auth_steps"]


def _nested(value: Any, keys: tuple[str, ...], clean: str) -> Any:
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    if clean == "int":
        return _int_or_zero(value)
    text = value if value.__class__ is str else _str(value)
    return text.lower() if clean == "lower" else text


def _int_or_zero(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return 0


def _signin(rec: dict[str, Any], props: dict[str, Any], category: Category, prefix: str) -> SignIn:
    rid = _required_id(props, prefix)
    row = _BLANK.copy()
    get = props.get
    for start, end, keys, lower in _RUNS:
        # None (absent) is the common case for the rarer fields: no call for it.
        texts = [
            v if v.__class__ is str else ("" if v is None else _str(v)) for v in map(get, keys)
        ]
        row[start:end] = [t.lower() for t in texts] if lower else texts
    for index, keys, clean in _OTHER:
        value = props.get(keys[0])
        if value is not None:
            row[index] = _nested(value, keys[1:], clean)
    row[_ID] = rid
    row[_TIME] = _event_time(rec, props, ("createdDateTime",), prefix, rid)
    row[_CATEGORY] = category
    row[_TENANT] = _tenant(rec, props)
    # The envelope's identity, caller address and correlation id stand in for empty ones.
    row[_DISPLAY] = row[_DISPLAY] or _str(_top(rec, "identity"))
    row[_IP] = row[_IP] or _str(_top(rec, "callerIpAddress"))
    row[_CORRELATION] = row[_CORRELATION] or _str(_top(rec, "correlationId"))
    row[_LOCATION] = _location(props.get("location"), _top(rec, "location"))
    row[_DEVICE] = _device(props.get("deviceDetail"))
    row[_ERROR], row[_REASON] = _error_code(rec, props, rid)
    row[_POLICIES] = _policies(props.get("appliedConditionalAccessPolicies"))
    row[_RISK_TYPES] = _str_list(props.get("riskEventTypes_v2") or props.get("riskEventTypes"))
    if category is Category.SIGNIN:
        row[_INTERACTIVE] = True
    elif category is Category.ADFS:
        flag = props.get("isInteractive")
        row[_INTERACTIVE] = flag if isinstance(flag, bool) else True
    else:
        row[_INTERACTIVE] = False
    row[_STEPS] = _auth_steps(props.get("authenticationDetails"))
    return SignIn._make(row)


def _additional_info(value: Any) -> tuple[tuple[str, str], ...]:
    """``additionalInfo`` is a JSON array of {Key, Value} encoded inside a string."""
    if isinstance(value, str):
        if not value:
            return ()
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            return (("raw", value),)
    if not isinstance(value, list):
        return ()
    return tuple(
        (_str(item.get("Key")), _str(item.get("Value"))) for item in value if isinstance(item, dict)
    )


def _risk_event(
    rec: dict[str, Any], props: dict[str, Any], category: Category, prefix: str
) -> RiskEvent:
    rid = _required_id(props, prefix)
    if category is Category.RISKY_USERS:
        # A RiskyUsers row is keyed by the user: its id is the user's object id.
        time = _event_time(rec, props, ("riskLastUpdatedDateTime",), prefix, rid)
        user_id = _str(props.get("userId")) or rid
    else:
        time = _event_time(
            rec, props, ("detectedDateTime", "activityDateTime", "lastUpdatedDateTime"), prefix, rid
        )
        user_id = _str(props.get("userId"))
    return RiskEvent(
        id=rid,
        time=time,
        category=category,
        tenant_id=_tenant(rec, props),
        user_id=user_id,
        upn=_str(props.get("userPrincipalName")),
        display_name=_str(props.get("userDisplayName")),
        level=_lower(props.get("riskLevel")),
        state=_str(props.get("riskState")),
        detail=_str(props.get("riskDetail")),
        event_type=_str(props.get("riskEventType")),
        request_id=_str(props.get("requestId")),
        correlation_id=_str(props.get("correlationId")),
        ip=_str(props.get("ipAddress") or _top(rec, "callerIpAddress")),
        location=_location(props.get("location"), _top(rec, "location")),
        timing=_str(props.get("detectionTimingType")),
        additional_info=_additional_info(props.get("additionalInfo")),
    )
