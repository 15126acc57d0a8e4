"""An incident (``pipeline.core.incidents``) in the SIEM formats, built on the alert forms so
a receiver files it beside the alerts it groups:

- OCSF: a Detection Finding (analytic ``incident``) whose ``finding_info.related_events``
  are its alerts, each a Detection Finding itself (type_uid 200401) with its ATT&CK
  techniques where the incident knows them; ``count`` is the alert count.
- ECS: an ``event.kind: alert`` document with ``rule.id: incident``; ``related.user`` and
  ``related.ip`` hold every user and address of the incident, ``signin_risk.evidence`` the
  incident's own fields (alert ids, rules, escalation, entities).
- CEF: one line with ``cat=incident``, ``msg`` the narrative and ``cn2`` (``alertCount``);
  the alert ids stay in the JSON forms (a syslog line is the key facts).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pipeline.alerts.formats.cef import to_cef
from pipeline.alerts.formats.ecs import to_ecs
from pipeline.alerts.formats.ocsf import to_ocsf
from pipeline.core.incidents import INCIDENT

_DETECTION_FINDING = 200401


def as_alert(incident: dict[str, Any]) -> dict[str, Any]:
    """The incident in the alert's shape, for the mappings alerts already have; fields a
    sink's allow-list removed stay out."""
    entities = incident.get("entities") or {}
    evidence = {
        "first": incident.get("first"),
        "kind": incident.get("kind"),
        "alert_count": incident.get("alert_count"),
        "alert_ids": incident.get("alert_ids"),
        "rules": incident.get("rules"),
        "escalation": incident.get("escalation"),
        "entities": entities or None,
        "users": entities.get("users"),
    }
    alert = {
        "id": incident["id"],
        "rule": INCIDENT,
        "severity": incident["severity"],
        "time": incident["time"],
        "title": incident["title"],
        "summary": incident.get("summary"),
        "tenant_id": incident.get("tenant_id"),
        "user": incident.get("user"),
        "user_id": incident.get("user_id"),
        "ip": incident.get("ip"),
        "mitre": incident.get("mitre"),
        "evidence": {k: v for k, v in evidence.items() if v not in (None, [], "")},
    }
    return {k: v for k, v in alert.items() if v is not None}


def incident_to_ocsf(incident: dict[str, Any]) -> dict[str, Any]:
    doc = to_ocsf(as_alert(incident))
    related = [
        {"uid": uid, "type_uid": _DETECTION_FINDING, "type": "Detection Finding: Create"}
        for uid in incident.get("alert_ids") or ()
    ]
    if related:
        doc["finding_info"]["related_events"] = related
    if isinstance(incident.get("alert_count"), int):
        doc["count"] = incident["alert_count"]
    return doc


def incident_to_ecs(incident: dict[str, Any]) -> dict[str, Any]:
    doc = to_ecs(as_alert(incident))
    entities = incident.get("entities") or {}
    users = [u for u in dict.fromkeys([incident.get("user"), *entities.get("users", ())]) if u]
    ips = [a for a in dict.fromkeys([incident.get("ip"), *entities.get("ips", ())]) if _is_ip(a)]
    related = {"user": users, "ip": ips}
    doc["related"] = {k: v for k, v in related.items() if v}
    if not doc["related"]:
        del doc["related"]
    return doc


def incident_to_cef(incident: dict[str, Any]) -> str:
    line = to_cef(as_alert(incident))
    count = incident.get("alert_count")
    if isinstance(count, int):
        line += f" cn2Label=alertCount cn2={count}"
    return line


def _is_ip(value: object) -> bool:
    if not isinstance(value, str) or not value:
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
