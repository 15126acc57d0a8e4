"""OCSF Detection Finding (class 2004, activity 1 Create), schema 1.5.0.

Only attributes that py-ocsf-models 0.10.0 declares (the tests hold every key to its
models), which lacks ``evidences[].actor`` and ``evidences[].src_endpoint``. So:

- ``finding_info``: uid = alert id, title, desc = summary, types = [rule], analytic (the
  rule), attacks (MITRE ATT&CK technique, sub-technique and tactic), created_time (detection),
  first_seen_time (first sign-in of a burst) and last_seen_time (the triggering sign-in),
  related_events: one Authentication: Logon (300201) per sign-in id
- ``resources``: the affected accounts: the alert's user, and for an IP-keyed incident
  (password spray) the users in its evidence
- ``evidences[0].data``: the rule's evidence, plus ``src_endpoint`` {ip, location} in
  OCSF's own shape, kept there until the model has ``evidences[].src_endpoint``
- ``metadata.tenant_uid``: the Entra tenant; ``cloud.provider``: Azure
- ``risk_level`` / ``risk_level_id``: Identity Protection's level, when low, medium or high
- ``count``: the sign-ins the alert rests on
- ``remediation``: the rule's next steps (desc, one per line) and the user's admin-center
  page (references); ``finding_info.src_url``: the sign-in's link
- ``unmapped``: the client classification, the risk state and detections, and the alert
  record's schema version

Times are ms since the epoch. Fields missing from the alert (a sink's allow-list) are left
out; the alert's id, rule, severity, time and title are always there.
"""

from __future__ import annotations

from typing import Any

from pipeline.alerts.formats.common import (
    PRODUCT,
    PRODUCT_VERSION,
    TACTICS,
    TECHNIQUES,
    epoch_ms,
    signin_count,
    technique_name,
)

OCSF_VERSION = "1.5.0"
"""The schema version py-ocsf-models 0.10.0 implements (its ``OCSF_VERSION``)."""

_SEVERITY = {
    "informational": (1, "Informational"),
    "low": (2, "Low"),
    "medium": (3, "Medium"),
    "high": (4, "High"),
    "critical": (5, "Critical"),
}
_RISK_LEVEL = {"low": (1, "Low"), "medium": (2, "Medium"), "high": (3, "High")}
_AUTHENTICATION_LOGON = 300201
"""type_uid of an OCSF Authentication (3002) event with activity Logon (1): a sign-in."""


def to_ocsf(alert: dict[str, Any]) -> dict[str, Any]:
    severity_id, severity = _SEVERITY.get(alert["severity"], (99, alert["severity"]))
    doc: dict[str, Any] = {
        "activity_id": 1,
        "activity_name": "Create",
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "time": epoch_ms(alert["time"]),
        "severity_id": severity_id,
        "severity": severity,
        "status_id": 1,
        "status": "New",
        "metadata": _drop_empty(
            {
                "version": OCSF_VERSION,
                "product": {"name": PRODUCT, "vendor_name": PRODUCT, "version": PRODUCT_VERSION},
                "uid": alert["id"],
                "tenant_uid": alert.get("tenant_id"),
                "profiles": ["cloud"],
            }
        ),
        "cloud": {"provider": "Azure"},
        "finding_info": _finding_info(alert),
        "message": alert.get("summary"),
        "resources": _resources(alert),
        "evidences": _evidences(alert),
        "count": signin_count(alert) or None,
        "remediation": _remediation(alert),
        "unmapped": _unmapped(alert),
    }
    level = (alert.get("risk") or {}).get("level")
    if level in _RISK_LEVEL:
        doc["risk_level_id"], doc["risk_level"] = _RISK_LEVEL[level]
    return _drop_empty(doc)


def _finding_info(alert: dict[str, Any]) -> dict[str, Any]:
    first = (alert.get("evidence") or {}).get("first")
    return _drop_empty(
        {
            "uid": alert["id"],
            "title": alert["title"],
            "desc": alert.get("summary"),
            "types": [alert["rule"]],
            "analytic": {
                "uid": alert["rule"],
                "name": alert["title"],
                "type_id": 1,
                "type": "Rule",
            },
            "attacks": [attack(t) for t in alert.get("mitre") or ()],
            "created_time": epoch_ms(alert["detected_at"]) if alert.get("detected_at") else None,
            "first_seen_time": epoch_ms(first) if isinstance(first, str) else None,
            "last_seen_time": epoch_ms(alert["time"]),
            "src_url": (alert.get("links") or {}).get("signin"),
            "related_events": [
                {"uid": uid, "type_uid": _AUTHENTICATION_LOGON, "type": "Authentication: Logon"}
                for uid in alert.get("signin_ids") or ()
            ],
        }
    )


def attack(technique_id: str) -> dict[str, Any]:
    """An OCSF MITRE ATT&CK object: a sub-technique (T1110.003) goes under its parent
    technique (T1110)."""
    parent = technique_id.split(".", 1)[0]
    result: dict[str, Any] = {"technique": {"uid": parent, "name": technique_name(parent)}}
    if parent != technique_id:
        result["sub_technique"] = {"uid": technique_id, "name": technique_name(technique_id)}
    known = TECHNIQUES.get(technique_id)
    if known:
        result["tactic"] = {"uid": known.tactic, "name": TACTICS[known.tactic]}
    return result


def _resources(alert: dict[str, Any]) -> list[dict[str, Any]]:
    affected = []
    if alert.get("user") or alert.get("user_id"):
        affected.append(
            _drop_empty({"type": "user", "name": alert.get("user"), "uid": alert.get("user_id")})
        )
    targets = (alert.get("evidence") or {}).get("users")
    if isinstance(targets, list):
        affected += [{"type": "user", "name": u} for u in targets if u and u != alert.get("user")]
    return affected


def _evidences(alert: dict[str, Any]) -> list[dict[str, Any]]:
    location = alert.get("location") or {}
    coordinates = (location.get("lon"), location.get("lat"))
    endpoint = _drop_empty(
        {
            "ip": alert.get("ip"),
            "location": _drop_empty(
                {
                    "city": location.get("city"),
                    "region": location.get("state"),
                    "country": location.get("country"),
                    # GeoJSON order: longitude first
                    "coordinates": list(coordinates) if None not in coordinates else None,
                }
            ),
        }
    )
    data = dict(alert.get("evidence") or {})
    if endpoint:
        data["src_endpoint"] = endpoint
    return [{"data": data}] if data else []


def _remediation(alert: dict[str, Any]) -> dict[str, Any] | None:
    steps = alert.get("next_steps")
    if not steps:
        return None  # desc is required
    page = (alert.get("links") or {}).get("user_page")
    return _drop_empty({"desc": "\n".join(steps), "references": [page] if page else None})


def _unmapped(alert: dict[str, Any]) -> dict[str, Any]:
    client = alert.get("client") or {}
    risk = alert.get("risk") or {}
    return _drop_empty(
        {
            "client": _drop_empty(dict(client)) if client.get("name") else None,
            "risk": _drop_empty({"state": risk.get("state"), "detections": risk.get("detections")}),
            "schema_version": alert.get("schema_version"),
        }
    )


def _drop_empty(values: dict[str, Any]) -> dict[str, Any]:
    """Leave out what is unknown: OCSF consumers read a missing attribute as unknown, but
    an empty string or null as a value."""
    return {k: v for k, v in values.items() if v is not None and v != "" and v != [] and v != {}}
