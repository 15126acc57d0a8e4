"""Microsoft Graph objects, as the API and its exports return them: ``signIn``,
``riskDetection`` and ``riskyUser`` carry no category and no envelope, so which one a
record is shows in its fields; a sign-in's log shows in ``signInEventTypes`` (beta).
"""

from __future__ import annotations

from typing import Any

from pipeline.core.records import Category, Record
from pipeline.core.shapes import Shape
from pipeline.core.shapes.reading import ParseError, risk_event, signin, top

# Graph's beta signIn resource says which log it belongs to in signInEventTypes.
_GRAPH_EVENT_TYPES: dict[str, Category] = {
    "interactiveuser": Category.SIGNIN,
    "noninteractiveuser": Category.NON_INTERACTIVE,
    "serviceprincipal": Category.SERVICE_PRINCIPAL,
    "managedidentity": Category.MANAGED_IDENTITY,
}


def claims(rec: dict[str, Any]) -> bool:
    """Whatever has neither a category nor properties (the diagnostic shape's marks)."""
    return top(rec, "category") is None and top(rec, "properties") is None


def read(rec: dict[str, Any]) -> Record:
    if "riskEventType" in rec:
        return risk_event({}, rec, Category.USER_RISK_EVENTS, "")
    if "riskLastUpdatedDateTime" in rec:
        return risk_event({}, rec, Category.RISKY_USERS, "")
    if "createdDateTime" not in rec:
        raise ParseError(
            "unrecognised-shape",
            "",
            "neither a diagnostic record (category, properties), a Log Analytics row "
            "(TimeGenerated, Type) nor a Graph object (createdDateTime, riskEventType, ...)",
        )
    category = Category.SIGNIN
    event_types = rec.get("signInEventTypes")
    if isinstance(event_types, list) and event_types:
        category = _GRAPH_EVENT_TYPES.get(str(event_types[0]).lower(), Category.SIGNIN)
    return signin({}, rec, category, "")


SHAPE = Shape(2, claims, read)
