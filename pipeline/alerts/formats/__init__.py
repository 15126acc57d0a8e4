"""Alert formats for SIEMs: native alert JSON, OCSF Detection Finding, ECS and CEF.

Pure functions of the alert record (as on the alerts topic); every sink picks one. JSON
formats give a document (HEC and Sentinel want objects); ``line`` gives one line of text
for syslog and files.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from pipeline.alerts.formats.cef import to_cef
from pipeline.alerts.formats.ecs import to_ecs
from pipeline.alerts.formats.incident import incident_to_cef, incident_to_ecs, incident_to_ocsf
from pipeline.alerts.formats.ocsf import to_ocsf
from pipeline.core.incidents import is_incident

if TYPE_CHECKING:  # the sinks import this package: at run time it must not import them
    from pipeline.sinks import AlertDict, Format

_DOCUMENTS: dict[str, Callable[[AlertDict], dict[str, Any]]] = {
    "native": dict,
    "ocsf": to_ocsf,
    "ecs": to_ecs,
}
_INCIDENT_DOCUMENTS: dict[str, Callable[[AlertDict], dict[str, Any]]] = {
    "native": dict,
    "ocsf": incident_to_ocsf,
    "ecs": incident_to_ecs,
}


def document(alert: AlertDict, fmt: Format) -> dict[str, Any]:
    """The alert (or incident) as a JSON object in ``fmt`` (``cef`` is text only: use
    ``line``)."""
    if fmt == "cef":
        raise ValueError("format 'cef' is a line of text, not a JSON document")
    return (_INCIDENT_DOCUMENTS if is_incident(alert) else _DOCUMENTS)[fmt](alert)


def line(alert: AlertDict, fmt: Format) -> str:
    """The alert (or incident) as one line of text: CEF, or compact JSON for the other
    formats."""
    if fmt == "cef":
        return incident_to_cef(alert) if is_incident(alert) else to_cef(alert)
    return orjson.dumps(document(alert, fmt)).decode()
