"""Alerts as a table for people at a terminal: ``demo`` and ``scan --format table``.

One row per alert version. An incident's alert is re-sent under the same id when it grows
(docs/detections.md); such a row is marked as an update of that id, so the
rows and the summary's count of alerts (distinct ids) mean the same thing. Long values end
in an ellipsis; only on a terminal is severity coloured and the summary cut to its width.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from typing import Any, TextIO

COLUMNS = (
    ("time", 25),
    ("alert", 18),
    ("rule", 25),
    ("severity", 9),
    ("user", 28),
    ("client", 26),
    ("ip", 16),
    ("location", 20),
    ("summary", 0),
)
"""Name and width (0: the rest of the line)."""
SUMMARY_MIN = 20
"""The summary's width however narrow the terminal: a row may wrap, the summary stays legible."""


def terminal_width(stream: TextIO) -> int:
    """The terminal's columns when ``stream`` is one, else 0 (a file keeps whole rows)."""
    return shutil.get_terminal_size().columns if stream.isatty() else 0


_COLOURS = {"critical": "1;35", "high": "1;31", "medium": "33", "low": "36", "informational": "2"}


def colour_wanted(stream: TextIO) -> bool:
    """Colour on a terminal only, and never when ``NO_COLOR`` is set (no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def _fit(text: str, width: int) -> str:
    if not width:
        return text
    if len(text) >= width:
        text = text[: width - 2] + "…"
    return text.ljust(width)


def _place(location: Any) -> str:
    if not isinstance(location, dict):
        return ""
    parts = (location.get("city"), location.get("country"))
    return ", ".join(str(p) for p in parts if p)


class Table:
    """Rows for a stream of alert versions, remembering which ids it has shown."""

    def __init__(self, colour: bool = False, width: int = 0) -> None:
        """``width``: the terminal's, to which the summary is cut; 0 keeps it whole."""
        self.colour = colour
        fixed = sum(w + 1 for _, w in COLUMNS if w)
        self.summary_width = max(SUMMARY_MIN, width - fixed) if width else 0
        self.shown: dict[str, str] = {}
        """Alert id -> its rule, for the summary."""

    @staticmethod
    def header() -> str:
        return " ".join(_fit(name.upper(), width) for name, width in COLUMNS).rstrip()

    def row(self, alert: dict[str, Any]) -> str:
        alert_id = str(alert.get("id", ""))
        update = alert_id in self.shown
        self.shown[alert_id] = str(alert.get("rule", ""))
        client = alert.get("client")
        client = client if isinstance(client, dict) else {}
        values = {
            "time": str(alert.get("time", ""))[:23] + "Z",
            "alert": alert_id[:8] + (" (update)" if update else ""),
            "rule": alert.get("rule", ""),
            "severity": alert.get("severity", ""),
            "user": alert.get("user", "") or "-",
            "client": f"{client.get('name', '')} {client.get('version', '')}".strip() or "-",
            "ip": alert.get("ip", "") or "-",
            "location": _place(alert.get("location")) or "-",
            "summary": alert.get("summary", ""),
        }
        cells = []
        for name, width in COLUMNS:
            cell = _fit(" ".join(str(values[name]).split()), width or self.summary_width)
            if name == "severity" and self.colour:
                code = _COLOURS.get(str(values[name]), "0")
                cell = f"\x1b[{code}m{cell}\x1b[0m"
            cells.append(cell)
        return " ".join(cells).rstrip()

    def summary(self, seconds: float | None = None) -> str:
        by_rule = Counter(self.shown.values())
        took = f" in {seconds:.1f} s" if seconds is not None else ""
        return f"{len(self.shown)} alert(s){took}: " + (
            ", ".join(f"{rule}={n}" for rule, n in sorted(by_rule.items())) or "none"
        )
