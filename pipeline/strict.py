"""The common case of the parser, decoded in C: well-formed sign-in envelopes only.

A ~5 KB sign-in is mostly what no stage reads (half of it is the enforced controls of each
Conditional Access policy). orjson builds Python objects for all of it; msgspec decodes into
typed structs that declare only the fields the pipeline reads, skips the rest without
allocating, and checks the types on the way. That halves the parser's cost per sign-in.

It is deliberately narrow: an event is taken here only when it is a diagnostic-settings
envelope whose every record is a sign-in with every read field of the expected JSON type.
Anything else (a wrong type, a missing id, another casing, a risk record, Graph objects)
returns None and the lenient parser in ``pipeline.parse`` reads the event, so reject reasons
and every tolerance live in one place. tests/test_strict.py holds both readers to the same
records over the public corpus and a mutation of every field.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter
from typing import Any

import msgspec

from pipeline.records import (
    AuthStep,
    Category,
    Device,
    Location,
    PolicyResult,
    SignIn,
)
from pipeline.timeparse import parse_time

Text = str | None

# Policies that did not apply are most of a real tenant's list and say nothing about the
# sign-in; the parsers drop them.
POLICY_NOT_APPLIED = frozenset({"notApplied", "notEnabled", "reportOnlyNotApplied"})

_SIGNIN_CATEGORIES: dict[str, Category] = {
    name: c
    for c in Category
    if c not in (Category.RISKY_USERS, Category.USER_RISK_EVENTS)
    for name in (c.value, c.value.lower())
}


class _Policy(msgspec.Struct):
    id: Text = None
    displayName: Text = None
    result: Text = None


class _Step(msgspec.Struct):
    authenticationMethod: Text = None
    succeeded: bool | None = None
    authenticationStepResultDetail: Text = None
    authenticationStepRequirement: Text = None


class _Geo(msgspec.Struct):
    latitude: float | None = None
    longitude: float | None = None


class _Location(msgspec.Struct):
    countryOrRegion: Text = None
    state: Text = None
    city: Text = None
    geoCoordinates: _Geo | None = None


class _Device(msgspec.Struct):
    deviceId: Text = None
    operatingSystem: Text = None
    browser: Text = None
    isCompliant: bool | None = None
    isManaged: bool | None = None
    trustType: Text = None


class _Status(msgspec.Struct):
    errorCode: int | None = None
    failureReason: Text = None


class _Properties(msgspec.Struct):
    id: Text = None
    createdDateTime: Text = None
    userId: Text = None
    userPrincipalName: Text = None
    userDisplayName: Text = None
    appDisplayName: Text = None
    resourceDisplayName: Text = None
    clientAppUsed: Text = None
    userAgent: Text = None
    ipAddress: Text = None
    conditionalAccessStatus: Text = None
    riskState: Text = None
    riskDetail: Text = None
    authenticationRequirement: Text = None
    servicePrincipalName: Text = None
    correlationId: Text = None
    appId: Text = None
    resourceId: Text = None
    riskLevelDuringSignIn: Text = None
    riskLevelAggregated: Text = None
    servicePrincipalId: Text = None
    tenantId: Text = None
    homeTenantId: Text = None
    isInteractive: bool | None = None
    riskEventTypes: list[str] | None = None
    riskEventTypes_v2: list[str] | None = None
    status: _Status | None = None
    authenticationDetails: list[_Step] | None = None
    deviceDetail: _Device | None = None
    location: _Location | None = None
    appliedConditionalAccessPolicies: list[_Policy] | None = None


SIGNIN_TEXT = (
    "userId",
    "userPrincipalName",
    "userDisplayName",
    "appDisplayName",
    "resourceDisplayName",
    "clientAppUsed",
    "userAgent",
    "ipAddress",
    "conditionalAccessStatus",
    "riskState",
    "riskDetail",
    "authenticationRequirement",
    "servicePrincipalName",
    "correlationId",
    # Identifiers and levels, compared case-insensitively downstream.
    "appId",
    "resourceId",
    "riskLevelDuringSignIn",
    "riskLevelAggregated",
    "servicePrincipalId",
)
"""The flat string properties of a sign-in, in the order ``assemble`` takes them."""
_TEXT = attrgetter(*SIGNIN_TEXT)

_TOP_FIELDS = (
    "time",
    "tenantId",
    "resourceId",
    "resultType",
    "resultDescription",
    "callerIpAddress",
    "correlationId",
    "identity",
    "location",
    "category",
    "properties",
)
"""Top-level keys, which exporters write in camelCase, PascalCase or lowercase."""


def _variant(name: str) -> tuple[str, Any, Any]:
    return (f"_{name}", Any, msgspec.field(default=None, name=name))


# Another casing of a top-level key sends the record to the lenient parser, which reads all
# of them; declaring them is how a struct notices them at all (unknown keys are skipped).
_Casings = msgspec.defstruct(
    "_Casings",
    [
        _variant(variant)
        for name in _TOP_FIELDS
        for variant in {name[0].upper() + name[1:], name.lower()} - {name}
    ],
)
_CASINGS = attrgetter(*_Casings.__struct_fields__)


class _Record(_Casings):  # type: ignore[misc,valid-type]
    time: Text = None
    tenantId: Text = None
    resourceId: Text = None
    resultType: int | str | None = None
    resultDescription: Text = None
    callerIpAddress: Text = None
    correlationId: Text = None
    identity: Text = None
    location: Text = None
    category: Text = None
    properties: _Properties | None = None


class _Envelope(msgspec.Struct):
    records: list[_Record]


_decode = msgspec.json.Decoder(_Envelope).decode


class _Lenient(Exception):
    """This record needs the lenient parser."""


def strict_signins(data: bytes) -> list[SignIn] | None:
    """The sign-ins of a well-formed envelope, or None when the lenient parser must read it."""
    if not data.isascii():
        try:  # msgspec does not check the UTF-8 of what it skips; the lenient parser rejects it
            data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        records = _decode(data).records
        return [_signin(record) for record in records]
    except (msgspec.ValidationError, msgspec.DecodeError, _Lenient, ValueError):
        return None


def _signin(rec: _Record) -> SignIn:
    props = rec.properties
    category = _SIGNIN_CATEGORIES.get(rec.category or "")
    if props is None or category is None or not props.id or any(_CASINGS(rec)):
        raise _Lenient
    if category is Category.SIGNIN:
        interactive = True
    elif category is Category.ADFS:
        interactive = True if props.isInteractive is None else props.isInteractive
    else:
        interactive = False
    when = props.createdDateTime or rec.time
    if not when:
        raise _Lenient
    return assemble(
        [value or "" for value in _TEXT(props)],
        props.id,
        parse_time(when),
        category,
        _tenant(rec, props),
        (rec.identity or "", rec.callerIpAddress or "", rec.correlationId or ""),
        _place(props.location, rec.location),
        _device(props.deviceDetail),
        _error(rec, props.status),
        tuple(
            PolicyResult(p.id or "", p.displayName or "", p.result or "")
            for p in props.appliedConditionalAccessPolicies or ()
            if p.result not in POLICY_NOT_APPLIED
        ),
        tuple(t for t in props.riskEventTypes_v2 or props.riskEventTypes or () if t),
        interactive,
        tuple(
            AuthStep(
                s.authenticationMethod or "",
                s.succeeded,
                s.authenticationStepResultDetail or "",
                s.authenticationStepRequirement or "",
            )
            for s in props.authenticationDetails or ()
        ),
    )


def assemble(
    text: Sequence[str],
    rid: str,
    time: datetime,
    category: Category,
    tenant: str,
    envelope: tuple[str, str, str],
    location: Location,
    device: Device,
    error: tuple[int, str],
    policies: tuple[PolicyResult, ...],
    risk_types: tuple[str, ...],
    interactive: bool,
    steps: tuple[AuthStep, ...],
) -> SignIn:
    """A ``SignIn`` from what either reader took out; ``text`` holds the ``SIGNIN_TEXT``
    values, ``envelope`` the identity, caller IP and correlation id outside ``properties``,
    which stand in for their empty counterparts inside."""
    (
        user_id,
        upn,
        display_name,
        app_name,
        resource_name,
        client_app_used,
        user_agent,
        ip,
        ca_status,
        risk_state,
        risk_detail,
        auth_requirement,
        sp_name,
        correlation_id,
        app_id,
        resource_id,
        risk_during,
        risk_aggregated,
        sp_id,
    ) = text
    identity, caller_ip, caller_correlation = envelope
    # Positional, in field order: keyword binding of 31 arguments costs ~1 us per sign-in.
    # tests/test_parse.py::test_every_field_lands_in_its_place guards the order.
    return SignIn(
        rid,
        time,
        category,
        tenant,
        user_id,
        upn,
        display_name or identity,
        app_id.lower(),
        app_name,
        resource_id.lower(),
        resource_name,
        client_app_used,
        user_agent,
        ip or caller_ip,
        location,
        device,
        error[0],
        error[1],
        ca_status,
        policies,
        risk_during.lower(),
        risk_aggregated.lower(),
        risk_state,
        risk_detail,
        risk_types,
        interactive,
        auth_requirement,
        steps,
        sp_id.lower(),
        sp_name,
        correlation_id or caller_correlation,
    )


_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


def _error(rec: _Record, status: _Status | None) -> tuple[int, str]:
    if status is not None and status.errorCode is not None:
        if not _INT64_MIN <= status.errorCode <= _UINT64_MAX:
            raise _Lenient  # orjson reads it as a float: a bad type
        return status.errorCode, status.failureReason or ""
    result = rec.resultType
    if isinstance(result, int):
        return result, rec.resultDescription or ""
    if isinstance(result, str) and result.isdigit():
        return int(result), rec.resultDescription or ""
    raise _Lenient  # "Success", "Failure" and absent results: the lenient parser's rules


def _tenant(rec: _Record, props: _Properties) -> str:
    tenant = rec.tenantId or props.tenantId or props.homeTenantId
    if not tenant:
        raise _Lenient  # from the resource id: the lenient parser's rules
    return tenant


def _place(value: _Location | None, fallback_country: str | None) -> Location:
    if value is not None:
        lat = lon = None
        geo = value.geoCoordinates
        if geo is not None and (geo.latitude or geo.longitude):
            lat, lon = geo.latitude, geo.longitude
        country, state, city = value.countryOrRegion or "", value.state or "", value.city or ""
        if country or state or city or lat is not None:
            return Location(country.upper(), state, city, lat, lon)
    if fallback_country is not None and len(fallback_country) == 2:
        return Location(country=fallback_country.upper())
    return Location()


def _device(value: _Device | None) -> Device:
    if value is None:
        return Device()
    return Device(
        value.deviceId or "",
        value.operatingSystem or "",
        value.browser or "",
        value.isCompliant,
        value.isManaged,
        value.trustType or "",
    )
