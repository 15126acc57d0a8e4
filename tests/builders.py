"""Raw Entra records for tests, written for this project (not copied from any corpus)."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

USER_ID = "0b9a2f60-1d4e-4b9c-8f0e-2a6c1d3e4f50"
TENANT = "7c1e4d2a-5b3f-4e8a-9d6c-1f2e3a4b5c6d"


def _merge(base: dict[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """Patch values replace; a patch value of None keeps the key with null (as exports do)."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        out[key] = copy.deepcopy(value)
    return out


BASE_PROPERTIES: dict[str, Any] = {
    "id": "5e0f1c2d-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
    "createdDateTime": "2026-01-15T10:00:00.1234567Z",
    "userDisplayName": "Adele Vance",
    "userPrincipalName": "adele@contoso.com",
    "userId": USER_ID,
    "appId": "4765445b-32c6-49b0-83e6-1d93765276ca",
    "appDisplayName": "OfficeHome",
    "ipAddress": "198.51.100.23",
    "clientAppUsed": "Browser",
    "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Edg/131.0",
    "correlationId": "e2d1c0b9-a8f7-4e6d-9c5b-4a3f2e1d0c9b",
    "conditionalAccessStatus": "success",
    "isInteractive": True,
    "authenticationRequirement": "multiFactorAuthentication",
    "riskDetail": "none",
    "riskLevelAggregated": "none",
    "riskLevelDuringSignIn": "none",
    "riskState": "none",
    "riskEventTypes": [],
    "riskEventTypes_v2": [],
    "resourceDisplayName": "Office 365 SharePoint Online",
    "resourceId": "00000003-0000-0ff1-ce00-000000000000",
    "status": {"errorCode": 0},
    "deviceDetail": {
        "deviceId": "",
        "operatingSystem": "Windows 10",
        "browser": "Edge 131.0",
        "isCompliant": True,
        "isManaged": True,
        "trustType": "Azure AD joined",
    },
    "location": {
        "city": "Seattle",
        "state": "Washington",
        "countryOrRegion": "US",
        "geoCoordinates": {"latitude": 47.6, "longitude": -122.3},
    },
    "appliedConditionalAccessPolicies": [
        {
            "id": "f1e2d3c4-b5a6-4978-8695-a4b3c2d1e0f9",
            "displayName": "Require MFA",
            "enforcedGrantControls": ["Mfa"],
            "enforcedSessionControls": [],
            "result": "success",
        }
    ],
    "authenticationDetails": [],
}

BASE_ENVELOPE: dict[str, Any] = {
    "time": "2026-01-15T10:00:01.0000000Z",
    "resourceId": f"/tenants/{TENANT}/providers/Microsoft.aadiam",
    "operationName": "Sign-in activity",
    "operationVersion": "1.0",
    "category": "SignInLogs",
    "tenantId": TENANT,
    "resultType": "0",
    "resultSignature": "None",
    "durationMs": 0,
    "callerIpAddress": "198.51.100.23",
    "correlationId": "e2d1c0b9-a8f7-4e6d-9c5b-4a3f2e1d0c9b",
    "identity": "Adele Vance",
    "Level": 4,
    "location": "US",
}


def signin(
    properties: Mapping[str, Any] | None = None, envelope: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """A successful interactive browser sign-in, patched."""
    record = _merge(BASE_ENVELOPE, envelope or {})
    props = _merge(BASE_PROPERTIES, properties or {})
    status = props.get("status")
    if isinstance(status, dict) and "resultType" not in (envelope or {}):
        record["resultType"] = str(status.get("errorCode", 0))
    record["properties"] = props
    return record


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def risk_record(patch: Mapping[str, Any], when: str) -> dict[str, Any]:
    """A UserRiskEvents detection (or, with ``category: RiskyUsers``, a user state row) for
    the builders' user at ``when``; ``patch`` sets properties."""
    props = dict(patch)
    category = props.pop("category", "UserRiskEvents")
    if category == "RiskyUsers":
        base: dict[str, Any] = {
            "id": USER_ID,
            "userPrincipalName": "adele@contoso.com",
            "riskLastUpdatedDateTime": when,
        }
    else:
        base = {
            "id": "d3" * 32,
            "requestId": BASE_PROPERTIES["id"],
            "correlationId": "",
            "riskEventType": "unfamiliarFeatures",
            "riskLevel": "high",
            "riskState": "atRisk",
            "detectionTimingType": "offline",
            "userId": USER_ID,
            "userPrincipalName": "adele@contoso.com",
            "ipAddress": "203.0.113.9",
            "activityDateTime": when,
            "detectedDateTime": when,
        }
    return {
        "time": when,
        "category": category,
        "tenantId": TENANT,
        "properties": base | props,
    }


START = datetime(2026, 1, 15, 10, 0, tzinfo=UTC)


def scenario_records(
    events: Iterable[tuple[float, Mapping[str, Any]]], tag: str = ""
) -> list[dict[str, object]]:
    """The scenario's raw records in its delivery order; sign-ins get distinct ids unless
    the patch names one."""
    raws: list[dict[str, object]] = []
    for index, (minute, patch) in enumerate(events):
        when = (START + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
        if patch.get("category") in ("UserRiskEvents", "RiskyUsers"):
            raws.append(risk_record(patch, when))
        else:  # a sign-in category, and an "envelope" patch, go to the envelope
            props = {"id": f"{tag}{index:04d}-0000-4000-8000-000000000000", **patch}
            envelope = {
                "category": props.pop("category", "SignInLogs"),
                **props.pop("envelope", {}),
            }
            raws.append(signin({**props, "createdDateTime": when}, envelope))
    return raws
