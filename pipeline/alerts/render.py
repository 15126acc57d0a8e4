"""``scan --format``: alerts written as a receiver would get them, without Kafka.

Every format is the forwarder's own: ``json`` the alert as the alerts topic carries it,
``ocsf`` and ``ecs`` the documents the HEC, Sentinel and file sinks send, ``cef`` the file
sink's line (RFC 5424 syslog carrying CEF), ``table`` the demo's table.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any, BinaryIO, Literal

import orjson

from pipeline.alerts.formats import line
from pipeline.alerts.table import Table
from pipeline.sinks.syslog import Rfc5424

ScanFormat = Literal["json", "table", "cef", "ocsf", "ecs"]
SCAN_FORMATS: tuple[ScanFormat, ...] = ("json", "table", "cef", "ocsf", "ecs")
FILE_SINK_FACILITY = 13
"""The file sink's default facility (log audit), so ``cef`` equals its default line."""


def write(
    alerts: Iterable[dict[str, Any]],
    fmt: ScanFormat,
    out: BinaryIO,
    colour: bool = False,
    width: int = 0,
) -> None:
    """Each alert in ``fmt``, one per line (the table has a header and sorts by time; on a
    terminal, ``colour`` and its ``width``)."""
    if fmt == "table":
        table = Table(colour, width)
        text = io.StringIO()
        text.write(table.header() + "\n")
        for alert in sorted(alerts, key=lambda a: str(a.get("time", ""))):
            text.write(table.row(alert) + "\n")
        text.write(table.summary() + "\n")
        out.write(text.getvalue().encode())
        return
    if fmt == "cef":
        syslog = Rfc5424("cef", FILE_SINK_FACILITY, "", "signin-risk")
        out.writelines(syslog(alert) + b"\n" for alert in alerts)
    elif fmt == "json":
        out.writelines(orjson.dumps(alert) + b"\n" for alert in alerts)
    else:
        out.writelines(line(alert, fmt).encode() + b"\n" for alert in alerts)
