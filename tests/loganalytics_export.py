"""Diagnostic-settings records rewritten as the Log Analytics tables hold them, in each real
export form, to prove the Log Analytics shape against the sample and the public corpus.

Written from Microsoft's table reference (azure-monitor-ref/tables/*), not from the parser's
column table, so a wrong declaration there shows up as a difference here. Per table: the
sign-in tables take the Graph properties in PascalCase with the renames the reference
lists (``IPAddress``, ``LocationDetails``, ``ConditionalAccessPolicies``,
``ResourceIdentity``, ``RiskEventTypes_V2``), ``ResultType`` as a string, ``Type`` the table
and ``TenantId`` the workspace; ``SigninLogs`` alone has ``AADTenantId`` and dynamic
(object) ``LocationDetails``, ``DeviceDetail``, ``Status`` and
``ConditionalAccessPolicies``, the other tables hold those as JSON text; the workload
tables have no ``CreatedDateTime`` (only ``TimeGenerated``, which Azure Monitor takes from a
resource log's ``time``, as for every table).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC
from typing import Any

import orjson

from pipeline.core.timeparse import parse_time

WORKSPACE = "a0c1b2d3-0000-4000-8000-00000000beef"

TABLES = {
    "SignInLogs": "SigninLogs",
    "NonInteractiveUserSignInLogs": "AADNonInteractiveUserSignInLogs",
    "ServicePrincipalSignInLogs": "AADServicePrincipalSignInLogs",
    "ManagedIdentitySignInLogs": "AADManagedIdentitySignInLogs",
    "ADFSSignInLogs": "ADFSSignInLogs",
    "RiskyUsers": "AADRiskyUsers",
    "UserRiskEvents": "AADUserRiskEvents",
}
WORKLOAD = ("ServicePrincipalSignInLogs", "ManagedIdentitySignInLogs")
"""Categories whose tables have no ``CreatedDateTime``."""
RENAMED = {
    "id": "Id",
    "ipAddress": "IPAddress",
    "location": "LocationDetails",
    "appliedConditionalAccessPolicies": "ConditionalAccessPolicies",
    "resourceId": "ResourceIdentity",
    "riskEventTypes_v2": "RiskEventTypes_V2",
}
DYNAMIC_IN_SIGNINLOGS = ("LocationDetails", "DeviceDetail", "Status", "ConditionalAccessPolicies")
"""Dynamic in SigninLogs, strings in AADNonInteractiveUserSignInLogs: a union splits them."""
DATETIME = frozenset(
    {"TimeGenerated", "CreatedDateTime", "RiskLastUpdatedDateTime", "DetectedDateTime"}
    | {"ActivityDateTime", "LastUpdatedDateTime"}
)


def _pascal(key: str) -> str:
    return key[0].upper() + key[1:]


def _iso(value: str) -> str:
    """Log Analytics returns datetimes as ISO 8601 in UTC to the tick (100 ns)."""
    return parse_time(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def row(record: dict[str, Any]) -> dict[str, Any] | None:
    """The table row of one diagnostic-settings record; None for a category with no table."""
    table = TABLES.get(record.get("category", ""))
    props = record.get("properties")
    if table is None or not isinstance(props, dict):
        return None
    out: dict[str, Any] = {"TenantId": WORKSPACE}
    if record.get("time"):
        out["TimeGenerated"] = _iso(record["time"])
    if table not in ("AADRiskyUsers", "AADUserRiskEvents"):
        out["Category"] = record["category"]
        out["ResourceId"] = record.get("resourceId", "")
        out["Identity"] = record.get("identity", "")
        out["Location"] = record.get("location", "")
        out["CorrelationId"] = record.get("correlationId", "")
        result = record.get("resultType")
        out["ResultType"] = "" if result is None else str(result)
        out["ResultDescription"] = record.get("resultDescription", "")
        if table == "SigninLogs":
            out["AADTenantId"] = record.get("tenantId", "")
    for key, value in props.items():
        column = RENAMED.get(key) or _pascal(key)
        if column == "AdditionalInfo" and isinstance(value, str):
            value = orjson.loads(value) if value else None  # dynamic in AADUserRiskEvents
        if column in DATETIME and isinstance(value, str) and value:
            value = _iso(value)
        if (
            isinstance(value, dict | list)
            and not (table == "SigninLogs" and column in DYNAMIC_IN_SIGNINLOGS)
            and column not in ("AdditionalInfo", "Location")
        ):
            value = orjson.dumps(value).decode()
        out[column] = value
    if record["category"] in WORKLOAD:
        out.pop("CreatedDateTime", None)
    out["Type"] = table
    return out


def rows(documents: Iterable[Any]) -> list[dict[str, Any]]:
    """Every record of every document (an envelope, a record, or a list) that has a table."""
    out = []
    for doc in documents:
        records = doc.get("records", [doc]) if isinstance(doc, dict) else doc
        out += [r for r in map(row, records) if r is not None]
    return out


def _text(value: Any) -> Any:
    """The query API and ``az`` write every dynamic value as JSON text."""
    return orjson.dumps(value).decode() if isinstance(value, dict | list) else value


def query_api(table_rows: list[dict[str, Any]]) -> bytes:
    """A JSON array as the Logs query API's rows give it (dynamic values as JSON text)."""
    return orjson.dumps([{k: _text(v) for k, v in r.items()} for r in table_rows])


def query_api_tables(table_rows: list[dict[str, Any]]) -> bytes:
    """The Logs query API's own response: ``tables`` of ``columns`` and ``rows``."""
    names = list(dict.fromkeys(k for r in table_rows for k in r))
    columns = [{"name": n, "type": "datetime" if n in DATETIME else "string"} for n in names]
    body = [[_text(r.get(n)) for n in names] for r in table_rows]
    return orjson.dumps({"tables": [{"name": "PrimaryResult", "columns": columns, "rows": body}]})


def _az(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, bool):
        return str(value)
    return _text(value) if isinstance(value, dict | list) else str(value)


def az(table_rows: list[dict[str, Any]]) -> bytes:
    """``az monitor log-analytics query``: every value a string (``"True"``, ``"0"``,
    ``"None"``)."""
    return orjson.dumps([{k: _az(v) for k, v in r.items()} for r in table_rows])


def json_lines(table_rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in table_rows)


def _portal_time(value: str) -> str:
    """``9/19/2023, 1:45:17.287 PM``: the portal keeps milliseconds."""
    t = parse_time(value).astimezone(UTC)
    hour = t.hour % 12 or 12
    meridiem = "PM" if t.hour >= 12 else "AM"
    ms = t.microsecond // 1000
    return f"{t.month}/{t.day}/{t.year}, {hour}:{t:%M}:{t:%S}.{ms:03d} {meridiem}"


def _cell(column: str, value: Any) -> str:
    if value is None:
        return ""
    if column in DATETIME and isinstance(value, str) and value:
        return _portal_time(value)
    if isinstance(value, bool):
        return str(value)
    return _text(value) if isinstance(value, dict | list) else str(value)


def portal_csv(table_rows: list[dict[str, Any]]) -> bytes:
    """The portal's "Export to CSV": a BOM, a header naming time columns ``X [UTC]``, JSON
    cells with their quotes doubled."""
    names = list(dict.fromkeys(k for r in table_rows for k in r))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([f"{n} [UTC]" if n in DATETIME else n for n in names])
    for r in table_rows:
        writer.writerow([_cell(n, r.get(n)) for n in names])
    return ("\ufeff" + buffer.getvalue()).encode()


def union(table_rows: list[dict[str, Any]]) -> bytes:
    """``union SigninLogs, AADNonInteractiveUserSignInLogs``: the columns whose types clash
    become ``X_dynamic`` (SigninLogs) and ``X_string`` (the other), both on every row."""
    out = []
    for r in table_rows:
        split = dict(r)
        for column in DYNAMIC_IN_SIGNINLOGS:
            value = split.pop(column, None)
            dynamic = r.get("Type") == "SigninLogs"
            split[f"{column}_dynamic"] = value if dynamic else None
            split[f"{column}_string"] = "" if dynamic else value
        out.append(split)
    return orjson.dumps(out)


FORMS = {
    "query-api": query_api,
    "query-api-tables": query_api_tables,
    "az": az,
    "json-lines": json_lines,
    "portal-csv": portal_csv,
    "union": union,
}


def documents(data: bytes) -> Iterator[Any]:
    """The JSON documents of a diagnostic-settings file (JSON lines)."""
    for line in data.splitlines():
        if line.strip():
            yield orjson.loads(line)
