"""Elastic Common Schema (ECS 8.11) alert documents, nested objects.

Field names follow Elastic's Azure integration (``azure`` package, ``signinlogs`` data
stream), so an alert lines up with the sign-in logs Elastic already holds: ``user.name`` is
the UPN's local part and ``user.domain`` its domain (as that integration's pipeline splits
them), the full UPN is ``azure.signinlogs.properties.user_principal_name``, and the tenant
is ``azure.tenant_id``. ``tests/data/ecs_fields.yaml`` lists every field and its type.

- ``@timestamp``: the triggering sign-in; ``event.created``: detection time;
  ``event.severity``: 1 informational .. 5 critical (OCSF's severity ids)
- ``rule.id`` / ``rule.name``: the rule id and title; ``message``: the summary
- ``source.address`` always, ``source.ip`` only for an IP address (a pseudonym is not one)
- ``threat.*``: MITRE ATT&CK technique, sub-technique and tactic ids and names
- ``related.user`` / ``related.ip``: every user and address in the alert, to pivot on
- ``azure.signinlogs.properties.*``: the triggering sign-in's properties the evidence has
- ``event.reference``: the sign-in's link; ``event.url``: the user's admin-center page
- ``signin_risk.*``: this project's own namespace: severity, client classification,
  effective risk, sign-in count, the rule's next steps, the alert's schema version, and the
  rule's evidence as a ``flattened`` object

Fields missing from the alert (a sink's allow-list) are left out, as are empty values.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pipeline.alerts.formats.common import TACTICS, TECHNIQUES, signin_count, technique_name

ECS_VERSION = "8.11.0"

_SEVERITY = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
_SIGNIN_PROPERTIES = {
    "app_name": "app_display_name",
    "app_id": "app_id",
    "resource": "resource_display_name",
    "client_app_used": "client_app_used",
    "conditional_access_status": "conditional_access_status",
    "authentication_requirement": "authentication_requirement",
}
"""Evidence keys that are the triggering sign-in's own properties -> the integration's."""
_SIGNIN_RISK = ("risk_level_during_signin", "risk_level_aggregated", "risk_state", "risk_detail")


def to_ecs(alert: dict[str, Any]) -> dict[str, Any]:
    evidence = alert.get("evidence") or {}
    links = alert.get("links") or {}
    user = alert.get("user") or ""
    ip = alert.get("ip") or ""
    doc = {
        "@timestamp": alert["time"],
        "message": alert.get("summary"),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "alert",
            "category": ["authentication"],
            "type": ["info"],
            "id": alert["id"],
            "created": alert.get("detected_at"),
            "severity": _SEVERITY.get(alert["severity"]),
            "dataset": "signin_risk.alert",
            "module": "signin_risk",
            "reference": links.get("signin"),
            "url": links.get("user_page"),
        },
        "rule": {"id": alert["rule"], "name": alert["title"], "ruleset": "signin-risk"},
        "user": _user(user, alert.get("user_id")),
        "source": _source(ip, alert.get("location") or {}),
        "user_agent": {"original": evidence.get("user_agent")},
        "cloud": {"provider": "azure"},
        "threat": _threat(alert.get("mitre") or []),
        "related": {"user": _related_users(user, evidence), "ip": _related_ips(ip, evidence)},
        "azure": {
            "tenant_id": alert.get("tenant_id"),
            "signinlogs": {"properties": _signin_properties(alert, evidence)},
        },
        "signin_risk": {
            "severity": alert["severity"],
            "signin_count": signin_count(alert),
            "client": alert.get("client"),
            "risk": alert.get("risk"),
            "next_steps": list(alert.get("next_steps") or ()),
            "schema_version": alert.get("schema_version"),
            "evidence": evidence,
        },
    }
    return _prune(doc)


def _user(user: str, user_id: str | None) -> dict[str, Any]:
    name, at, domain = user.rpartition("@")
    if not at:
        name, domain = user, ""
    return {"name": name, "domain": domain, "id": user_id}


def _source(ip: str, location: dict[str, Any]) -> dict[str, Any]:
    lat, lon = location.get("lat"), location.get("lon")
    return {
        "address": ip,
        "ip": ip if _is_ip(ip) else None,
        "geo": {
            "country_iso_code": location.get("country"),
            "region_name": location.get("state"),
            "city_name": location.get("city"),
            "location": {"lat": lat, "lon": lon} if lat is not None and lon is not None else None,
        },
    }


def _threat(techniques: list[str]) -> dict[str, Any]:
    if not techniques:
        return {}
    parents = list(dict.fromkeys(t.split(".", 1)[0] for t in techniques))
    subs = [t for t in techniques if "." in t]
    tactics = list(dict.fromkeys(TECHNIQUES[t].tactic for t in techniques if t in TECHNIQUES))
    return {
        "framework": "MITRE ATT&CK",
        "technique": {
            "id": parents,
            "name": [technique_name(t) for t in parents],
            "subtechnique": {"id": subs, "name": [technique_name(t) for t in subs]},
        },
        "tactic": {"id": tactics, "name": [TACTICS[t] for t in tactics]},
    }


def _related_users(user: str, evidence: dict[str, Any]) -> list[str]:
    """The alert's user and, for a password spray, the users it targeted."""
    targets = evidence.get("users")
    others = [u for u in targets if isinstance(u, str)] if isinstance(targets, list) else []
    return [u for u in dict.fromkeys([user, *others]) if u]


def _related_ips(ip: str, evidence: dict[str, Any]) -> list[str]:
    """The alert's address and, for impossible travel, both ends of the journey."""
    ends = [evidence.get(k) for k in ("from", "to")]
    candidates = [ip, *(end.get("ip") for end in ends if isinstance(end, dict))]
    return [a for a in dict.fromkeys(candidates) if isinstance(a, str) and _is_ip(a)]


def _signin_properties(alert: dict[str, Any], evidence: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "id": list(alert.get("signin_ids") or ()),
        "user_principal_name": alert.get("user"),
        "user_id": alert.get("user_id"),
        "device_detail": {"operating_system": evidence.get("device_os")},
    }
    for key, name in _SIGNIN_PROPERTIES.items():
        properties[name] = evidence.get(key)
    # The sign-in's own risk, as the risky-signin rule records it; a risk detection's
    # evidence has a risk state too, but of the user or the detection, not the sign-in.
    if "risk_level_during_signin" in evidence:
        properties.update({key: evidence.get(key) for key in _SIGNIN_RISK})
    error_code = evidence.get("error_code")
    if isinstance(error_code, int) and not isinstance(error_code, bool):
        properties["status"] = {"error_code": error_code}
    return properties


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _prune(doc: dict[str, Any]) -> dict[str, Any]:
    """Drop nulls, empty strings and empty objects and lists, recursively, except inside the
    evidence: Elasticsearch indexes no value for any of them, and a missing field reads
    better than an empty one. The evidence is passed as the rule recorded it."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict) and key != "evidence":
            value = _prune(value)
        if value is not None and value != "" and value != [] and value != {}:
            out[key] = value
    return out
