"""How a sign-in or an Identity Protection record is read, whatever shape carried it.

The shape modules beside this one (diagnostic settings, Graph objects, ...) say where a
record's properties and envelope are; the reading of every field, its tolerances and its
reject reasons live here once. Declared ``SignIn`` fields (``From`` on the record) are
read by a reader derived from their declarations; the rest have code of their own below.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, get_type_hints

import orjson

from pipeline.core.records import (
    UNKNOWN_ERROR_CODE,
    AuthStep,
    Category,
    Device,
    From,
    Location,
    PolicyResult,
    RiskEvent,
    SignIn,
)
from pipeline.core.timeparse import parse_time

# Policies that did not apply are most of a real tenant's list and say nothing about the
# sign-in; the parser drops them.
POLICY_NOT_APPLIED = frozenset({"notApplied", "notEnabled", "reportOnlyNotApplied"})

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


def top(rec: dict[str, Any], camel: str) -> Any:
    """Top-level keys come in camelCase, PascalCase or lowercase depending on the exporter."""
    value = rec.get(camel)
    if value is None:
        value = rec.get(camel[0].upper() + camel[1:])
        if value is None:
            value = rec.get(camel.lower())
    return value


def as_text(value: Any) -> str:
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
    value = top(rec, "time")
    if value:
        return _time(value, "time", rid)
    raise ParseError("missing-field", prefix + keys[0], record_id=rid)


def _tenant(rec: dict[str, Any], props: dict[str, Any]) -> str:
    tenant = top(rec, "tenantId") or props.get("tenantId") or props.get("homeTenantId")
    if tenant:
        return as_text(tenant)
    resource = top(rec, "resourceId")
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
            return _int(code, "properties.status.errorCode", rid), as_text(
                status.get("failureReason")
            )
    result = top(rec, "resultType")
    reason = as_text(top(rec, "resultDescription"))
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
                        as_text(policy.get("id")),
                        as_text(policy.get("displayName")),
                        as_text(result),
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
    return [v if v.__class__ is str else as_text(v) for v in map(obj.get, keys)]


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
    text = value if value.__class__ is str else as_text(value)
    return text.lower() if clean == "lower" else text


def _int_or_zero(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return 0


def signin(rec: dict[str, Any], props: dict[str, Any], category: Category, prefix: str) -> SignIn:
    rid = _required_id(props, prefix)
    row = _BLANK.copy()
    get = props.get
    for start, end, keys, lower in _RUNS:
        # None (absent) is the common case for the rarer fields: no call for it.
        texts = [
            v if v.__class__ is str else ("" if v is None else as_text(v)) for v in map(get, keys)
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
    row[_DISPLAY] = row[_DISPLAY] or as_text(top(rec, "identity"))
    row[_IP] = row[_IP] or as_text(top(rec, "callerIpAddress"))
    row[_CORRELATION] = row[_CORRELATION] or as_text(top(rec, "correlationId"))
    row[_LOCATION] = _location(props.get("location"), top(rec, "location"))
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
        (as_text(item.get("Key")), as_text(item.get("Value")))
        for item in value
        if isinstance(item, dict)
    )


def risk_event(
    rec: dict[str, Any], props: dict[str, Any], category: Category, prefix: str
) -> RiskEvent:
    rid = _required_id(props, prefix)
    if category is Category.RISKY_USERS:
        # A RiskyUsers row is keyed by the user: its id is the user's object id.
        time = _event_time(rec, props, ("riskLastUpdatedDateTime",), prefix, rid)
        user_id = as_text(props.get("userId")) or rid
    else:
        time = _event_time(
            rec, props, ("detectedDateTime", "activityDateTime", "lastUpdatedDateTime"), prefix, rid
        )
        user_id = as_text(props.get("userId"))
    return RiskEvent(
        id=rid,
        time=time,
        category=category,
        tenant_id=_tenant(rec, props),
        user_id=user_id,
        upn=as_text(props.get("userPrincipalName")),
        display_name=as_text(props.get("userDisplayName")),
        level=_lower(props.get("riskLevel")),
        state=as_text(props.get("riskState")),
        detail=as_text(props.get("riskDetail")),
        event_type=as_text(props.get("riskEventType")),
        request_id=as_text(props.get("requestId")),
        correlation_id=as_text(props.get("correlationId")),
        ip=as_text(props.get("ipAddress") or top(rec, "callerIpAddress")),
        location=_location(props.get("location"), top(rec, "location")),
        timing=as_text(props.get("detectionTimingType")),
        additional_info=_additional_info(props.get("additionalInfo")),
    )
