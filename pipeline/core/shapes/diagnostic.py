"""Azure Monitor diagnostic-settings records, as Event Hubs and storage exports deliver them:
``category`` names the log, ``properties`` holds the Graph-like fields, and the envelope
adds ``time``, ``tenantId``, ``callerIpAddress``, ``identity`` and more. Exporters write the
top-level keys in camelCase, PascalCase or lowercase.
"""

from __future__ import annotations

from typing import Any

from pipeline.core.records import Category, Record
from pipeline.core.shapes import Shape
from pipeline.core.shapes.reading import ParseError, as_text, risk_event, signin, top

_CATEGORIES: dict[str, Category] = {c.value: c for c in Category} | {
    c.value.lower(): c for c in Category
}


def claims(rec: dict[str, Any]) -> bool:
    return top(rec, "category") is not None or top(rec, "properties") is not None


def read(rec: dict[str, Any]) -> Record:
    props = top(rec, "properties")
    raw_category = top(rec, "category")
    if not isinstance(raw_category, str) or not raw_category:
        raise ParseError("missing-field", "category")
    category = _CATEGORIES.get(raw_category) or _CATEGORIES.get(raw_category.lower())
    if category is None:
        raise ParseError("unsupported-category", "category", raw_category)
    if props is None:
        raise ParseError(
            "missing-field", "properties", record_id=as_text(top(rec, "correlationId"))
        )
    if not isinstance(props, dict):
        raise ParseError("bad-type", "properties", "expected an object")
    if category is Category.RISKY_USERS or category is Category.USER_RISK_EVENTS:
        return risk_event(rec, props, category, "properties.")
    return signin(rec, props, category, "properties.")


SHAPE = Shape(1, claims, read)
