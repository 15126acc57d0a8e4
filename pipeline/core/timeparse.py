"""Timestamps as Entra exports really write them, to aware UTC datetimes.

Most values are ISO 8601 and take the C fast path (``datetime.fromisoformat``). The rest are
seen in real exports: one-digit hours (``T9:59:27``), US-locale ``M/D/YYYY h:mm:ss AM/PM``
and 24-hour ``MM/DD/YYYY HH:MM:SS`` (risk records, ADFS, some service principals), optionally
with an offset, and the Log Analytics portal's CSV ``9/19/2023, 1:45:17.287 PM``. US-locale
dates are month first, as the exporting service writes them. A value without a zone is UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_ISO_LOOSE = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})[T ](\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?\s*(Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)
_US = re.compile(
    r"(\d{1,2})/(\d{1,2})/(\d{4})(?:,\s*|[T ])(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:\s*([AP]M))?\s*(Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE,
)


def parse_time(value: str) -> datetime:
    """Parse one timestamp; raises ``ValueError`` naming the value when no format fits."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = _parse_slow(value.strip())
    zone = parsed.tzinfo
    if zone is UTC:  # "Z" and "+00:00" both parse to the UTC singleton
        return parsed
    if zone is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _parse_slow(value: str) -> datetime:
    if m := _ISO_LOOSE.fullmatch(value):
        year, month, day, hour, minute, second, frac, zone = m.groups()
        meridiem = None
    elif m := _US.fullmatch(value):
        month, day, year, hour, minute, second, frac, meridiem, zone = m.groups()
    else:
        raise ValueError(f"unrecognised timestamp {value!r}")
    h = int(hour)
    if meridiem:
        if not 1 <= h <= 12:
            raise ValueError(f"hour {h} with {meridiem} in {value!r}")
        h = h % 12 + (12 if meridiem.upper() == "PM" else 0)
    micro = int((frac or "0")[:6].ljust(6, "0"))
    return datetime(
        int(year), int(month), int(day), h, int(minute), int(second), micro, _zone(zone)
    )


def _zone(zone: str | None) -> timezone | None:
    if zone is None:
        return None
    if zone.upper() == "Z":
        return UTC
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))


def format_time(value: datetime) -> str:
    """ISO 8601 in UTC with microseconds and ``Z``: the one form alerts carry."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
