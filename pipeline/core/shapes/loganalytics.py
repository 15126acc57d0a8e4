"""Log Analytics / Microsoft Sentinel table rows: ``SigninLogs``,
``AADNonInteractiveUserSignInLogs``, ``AADServicePrincipalSignInLogs``,
``AADManagedIdentitySignInLogs``, ``AADRiskyUsers``, ``AADUserRiskEvents`` (and
``ADFSSignInLogs``), as the Logs query API, ``az monitor log-analytics query`` and the
portal's CSV export give them.

A row is flat, its columns are the Graph properties in PascalCase, and ``Type`` names the
table. What differs between the export forms is absorbed here, so the fields are read by
the same code as every other shape: a row becomes the Graph object it came from. Where a
column is not its property in PascalCase the field declaration says so (``Column`` on
``pipeline.core.records.SignIn``). The quirks handled:

- dynamic columns (``LocationDetails``, ``DeviceDetail``, ``Status``, ...) arrive as JSON
  objects, or as JSON text: ``AADNonInteractiveUserSignInLogs`` stores them as strings, and
  the query API, ``az`` and the portal CSV write every dynamic value as text;
- ``az`` writes every value as a string, null as ``"None"`` and "no value" as ``""``;
- a KQL ``union`` of two tables whose column types clash splits it into
  ``LocationDetails_dynamic`` and ``LocationDetails_string``: either may hold the value;
- ``TenantId`` is the workspace, not the Entra tenant (``AADTenantId``), and ``ResourceId``
  the Azure resource path, not the resource signed in to (``ResourceIdentity``).
"""

from __future__ import annotations

import contextlib
from typing import Any, get_type_hints

import orjson

from pipeline.core.records import Category, Column, From, Record, SignIn
from pipeline.core.shapes import Shape
from pipeline.core.shapes.reading import ParseError, as_text, risk_event, signin

TABLES: dict[str, Category] = {
    "SigninLogs": Category.SIGNIN,
    "AADNonInteractiveUserSignInLogs": Category.NON_INTERACTIVE,
    "AADServicePrincipalSignInLogs": Category.SERVICE_PRINCIPAL,
    "AADManagedIdentitySignInLogs": Category.MANAGED_IDENTITY,
    "ADFSSignInLogs": Category.ADFS,
    "AADRiskyUsers": Category.RISKY_USERS,
    "AADUserRiskEvents": Category.USER_RISK_EVENTS,
}
"""Table name (the ``Type`` column) -> category."""

_CATEGORIES = {c.value.lower(): c for c in Category}
"""The sign-in tables' ``Category`` column holds the diagnostic category."""

_WORKSPACE_COLUMNS = frozenset(
    {"TenantId", "ResourceId", "_ResourceId", "Type", "SourceSystem", "_BilledSize"}
    | {"_IsBillable", "_ItemId", "_SubscriptionId", "_Internal_WorkspaceResourceId"}
)
"""Columns about the workspace, not the record; two would read as a record's own
(``TenantId`` as ``tenantId``, ``ResourceId`` as ``resourceId``)."""

_UNION_SUFFIXES = ("_dynamic", "_string")


def _declared_columns() -> tuple[dict[str, str], frozenset[str]]:
    """Column -> Graph key from the ``Column`` declarations on ``SignIn``, and the keys
    read as objects or lists (the first step of a nested ``From`` path, and own-code ones)."""
    columns: dict[str, str] = {}
    nested = {"location", "deviceDetail", "status", "authenticationDetails", "additionalInfo"}
    nested |= {"appliedConditionalAccessPolicies", "riskEventTypes", "riskEventTypes_v2"}
    for hint in get_type_hints(SignIn, include_extras=True).values():
        meta = getattr(hint, "__metadata__", ())
        source = next((m for m in meta if isinstance(m, From)), None)
        if source is not None and "." in source.path:
            nested.add(source.path.split(".", 1)[0])
        for column in (m for m in meta if isinstance(m, Column)):
            key = column.key or (source.path.split(".", 1)[0] if source else "")
            if not key:
                raise TypeError(f"Column {column.name} names no key and has no From")
            columns[column.name] = key
    return columns, frozenset(nested)


COLUMNS, _NESTED = _declared_columns()


def _key(column: str) -> str:
    return column[0].lower() + column[1:]


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == "None"


def graph_object(row: dict[str, Any]) -> dict[str, Any]:
    """The Graph object a row came from: keys in camelCase, dynamic text decoded, empty
    cells absent. A declared column wins over one that merely spells the same key (the
    country in ``Location`` against the object in ``LocationDetails``); of two columns for
    one key, an empty one never hides a filled one."""
    out: dict[str, Any] = {}
    declared: set[str] = set()
    for column, value in row.items():
        if _empty(value) or not isinstance(column, str) or not column:
            continue
        name = column
        for suffix in _UNION_SUFFIXES:
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        if name in _WORKSPACE_COLUMNS:
            continue
        key = COLUMNS.get(name)
        if key is None:
            key = _key(name)
            if key in declared:
                continue
        else:
            declared.add(key)
        if key in _NESTED and isinstance(value, str) and value[:1] in ("{", "["):
            # Text that is no JSON stays text, which the field's reader ignores.
            with contextlib.suppress(orjson.JSONDecodeError):
                value = orjson.loads(value)
        out[key] = value
    return out


def _category(row: dict[str, Any]) -> Category:
    table = row.get("Type")
    if isinstance(table, str) and table:
        category = TABLES.get(table)
        if category is None:
            raise ParseError("unsupported-category", "Type", table)
        return category
    named = _CATEGORIES.get(as_text(row.get("Category")).lower())
    if named is not None:
        return named
    if not _empty(row.get("RiskEventType")):
        return Category.USER_RISK_EVENTS
    if not _empty(row.get("RiskLastUpdatedDateTime")):
        return Category.RISKY_USERS
    raise ParseError(
        "unrecognised-shape", "Type", "a Log Analytics row with neither Type nor Category"
    )


def claims(rec: dict[str, Any]) -> bool:
    """A row has ``TimeGenerated`` (no other shape has), or at least names its table."""
    return "TimeGenerated" in rec or rec.get("Type") in TABLES


def read(rec: dict[str, Any]) -> Record:
    category = _category(rec)
    obj = graph_object(rec)
    if category is Category.RISKY_USERS or category is Category.USER_RISK_EVENTS:
        return risk_event(obj, obj, category, "")
    return signin(obj, obj, category, "")


SHAPE = Shape(0, claims, read)
