"""ArcSight Common Event Format (CEF:0): one line per alert, for syslog receivers.

The header is ``CEF:0|signin-risk|signin-risk|<version>|<rule>|<title>|<severity>``, with
severity informational=1, low=3, medium=5, high=8, critical=10. Extensions use the ArcSight
dictionary's keys where one fits, so receivers put them in their own source and user fields
without custom parsing; the custom keys used (cs1-cs6, cn1, c6a2) all have columns in
Sentinel's CommonSecurityLog:

- ``rt``: the triggering sign-in's time (ms since epoch); ``start``: the first sign-in of a
  burst (brute force, MFA fatigue)
- ``externalId``: alert id, for deduplication; ``cat``: rule id; ``msg``: summary
- ``suser`` / ``suid``: user (UPN) / user object id
- ``src``: IPv4 address; ``c6a2`` (``c6a2Label=sourceIPv6Address``): IPv6 address;
  ``cs6`` (``cs6Label=sourceAddress``): an address that is neither, such as a pseudonym
- ``slat`` / ``slong``: the address's latitude / longitude
- ``requestClientApplication``: user agent; ``destinationServiceName``: the resource signed
  in to (e.g. Office 365 Exchange Online)
- ``cs1`` ``mitreTechniques`` (comma-separated), ``cs2`` ``tenantId``, ``cs3`` ``clientApp``
  (name, then family/platform/version), ``cs4`` ``riskLevel``, ``cs5`` ``sourceLocation``
  (city, state, country)
- ``cn1`` ``signinCount``: the sign-ins the alert rests on; ``cn2`` ``schemaVersion``: the
  alert record's version
- ``request``: the sign-in's link; ``flexString2`` ``userPage``: the user's admin-center page;
  ``flexString1`` ``nextSteps``: the rule's next steps, joined by `` | `` and cut to 1,023
  characters (ArcSight's limit for a flex string); the receiver's columns RequestURL,
  FlexString1 and FlexString2

Any field but the header's may be missing (a sink's allow-list), and is then left out. The
rest of the evidence stays in the native and JSON formats: a CEF line is the key facts.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from pipeline.alerts.formats.common import PRODUCT, PRODUCT_VERSION, epoch_ms, signin_count

_SEVERITY = {"informational": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
_HEADER_ESCAPES = str.maketrans({"\\": "\\\\", "|": "\\|", "\n": "\\n", "\r": "\\r"})
_VALUE_ESCAPES = str.maketrans({"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r"})


def to_cef(alert: dict[str, Any]) -> str:
    severity = _SEVERITY.get(alert["severity"], "Unknown")
    header = [PRODUCT, PRODUCT, PRODUCT_VERSION, alert["rule"], alert["title"], str(severity)]
    escaped = "|".join(field.translate(_HEADER_ESCAPES) for field in header)
    extension = " ".join(
        f"{key}={value.translate(_VALUE_ESCAPES)}" for key, value in _extensions(alert)
    )
    return f"CEF:0|{escaped}|{extension}"


def _extensions(alert: dict[str, Any]) -> list[tuple[str, str]]:
    evidence = alert.get("evidence") or {}
    location = alert.get("location") or {}
    links = alert.get("links") or {}
    pairs: list[tuple[str, object]] = [
        ("rt", epoch_ms(alert["time"])),
        ("start", epoch_ms(evidence["first"]) if isinstance(evidence.get("first"), str) else None),
        ("externalId", alert["id"]),
        ("cat", alert["rule"]),
        ("msg", alert.get("summary")),
        ("suser", alert.get("user")),
        ("suid", alert.get("user_id")),
        *_source(alert.get("ip") or ""),
        ("slat", location.get("lat")),
        ("slong", location.get("lon")),
        ("requestClientApplication", evidence.get("user_agent")),
        ("destinationServiceName", evidence.get("resource")),
        *_labelled("cs1", "mitreTechniques", ",".join(alert.get("mitre") or ())),
        *_labelled("cs2", "tenantId", alert.get("tenant_id")),
        *_labelled("cs3", "clientApp", _client(alert.get("client") or {})),
        *_labelled("cs4", "riskLevel", (alert.get("risk") or {}).get("level")),
        *_labelled("cs5", "sourceLocation", _place(location)),
        *_labelled("cn1", "signinCount", signin_count(alert)),
        *_labelled("cn2", "schemaVersion", alert.get("schema_version")),
        ("request", links.get("signin")),
        *_labelled("flexString1", "nextSteps", " | ".join(alert.get("next_steps") or ())[:1023]),
        *_labelled("flexString2", "userPage", links.get("user_page")),
    ]
    return [(key, str(value)) for key, value in pairs if value is not None and value != ""]


def _labelled(key: str, label: str, value: object) -> list[tuple[str, object]]:
    """A custom key and its label, or nothing: a label without its value is noise."""
    if value is None or value == "":
        return []
    return [(f"{key}Label", label), (key, value)]


def _source(ip: str) -> list[tuple[str, object]]:
    """``src`` only takes IPv4, so IPv6 and pseudonyms go to keys that accept them."""
    if not ip:
        return []
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return _labelled("cs6", "sourceAddress", ip)
    if address.version == 4:
        return [("src", ip)]
    return _labelled("c6a2", "sourceIPv6Address", ip)


def _client(client: dict[str, Any]) -> str:
    name = client.get("name") or ""
    if not name:
        return ""
    details = "/".join(str(client[k]) for k in ("family", "platform", "version") if client.get(k))
    return f"{name} ({details})" if details else name


def _place(location: dict[str, Any]) -> str:
    return ", ".join(str(location[k]) for k in ("city", "state", "country") if location.get(k))
