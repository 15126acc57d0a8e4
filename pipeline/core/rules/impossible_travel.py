"""impossible-travel: two successful interactive sign-ins of one user too far apart for the
time between them.

Great-circle distance over elapsed event time. Pairs closer than ``min_km`` are ignored:
IP geolocation is coarse, and VPN egress and mobile carriers move users hundreds of
kilometres without travel. Sign-ins without coordinates are ignored.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from pipeline.core.enrich import Observation
from pipeline.core.outcomes import Outcome
from pipeline.core.rules.base import Severity
from pipeline.core.rules.windows import (
    Hit,
    Scenario,
    StatefulRule,
    StatefulSettings,
)

_EARTH_KM = 6371.0088
_KEEP = 8
"""Distinct recent places per user: enough to compare a late sign-in with its neighbours."""


class ImpossibleTravelSettings(StatefulSettings):
    window_minutes: float = Field(24 * 60, gt=0)
    """How far back a sign-in is compared; the severity shows how fast the jump was."""
    max_kmh: float = Field(800, gt=0)
    min_km: float = Field(500, ge=0)


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * _EARTH_KM * math.asin(min(1.0, math.sqrt(a)))


def wants(obs: Observation) -> bool:
    return (
        obs.outcome == Outcome.SUCCESS.value
        and obs.interactive
        and bool(obs.user)
        and obs.location.lat is not None
        and obs.location.lon is not None
    )


def step(
    state: Any, obs: Observation, settings: ImpossibleTravelSettings, newest: float
) -> tuple[Any, Hit | None]:
    lat, lon = obs.location.lat, obs.location.lon
    assert lat is not None and lon is not None  # wants() let only located sign-ins in
    here = [obs.time, obs.id, lat, lon, obs.ip, obs.location.country, obs.location.city]
    places: list[list[Any]] = (state or {}).get("seen", [])
    horizon = max(newest, obs.time) - (settings.window_minutes + settings.lateness_minutes) * 60
    if obs.time < horizon:
        return state, None
    worst: tuple[float, float, list[Any]] | None = None
    for other in places:
        if other[2] == lat and other[3] == lon:
            continue  # the usual case: signing in from the same place again
        km = distance_km(other[2], other[3], lat, lon)
        kmh = km / (max(abs(obs.time - other[0]), 60.0) / 3600)
        if km >= settings.min_km and kmh > settings.max_kmh and (worst is None or kmh > worst[1]):
            worst = (km, kmh, other)
    # One entry per place, with its latest visit: a user at home holds one entry.
    kept = [p for p in places if p[0] >= horizon and (p[2], p[3]) != (lat, lon)]
    same = [p for p in places if (p[2], p[3]) == (lat, lon) and p[0] > obs.time]
    kept += same or [here]
    kept.sort(key=lambda p: p[0])
    state = {"seen": kept[-_KEEP:]}
    if worst is None:
        return state, None
    km, kmh, other = worst
    first, second = sorted((other, here), key=lambda e: e[0])
    evidence: dict[str, object] = {
        "distance_km": round(km),
        "speed_kmh": round(kmh),
        "hours": round(abs(second[0] - first[0]) / 3600, 2),
        "max_kmh": settings.max_kmh,
        "from": _place(first),
        "to": _place(second),
    }
    severity: Severity = "high" if kmh > 5 * settings.max_kmh else "medium"
    summary = (
        f"{_where(first)} then {_where(second)}: {round(km)} km in "
        f"{evidence['hours']} h ({round(kmh)} km/h)"
    )
    return state, Hit(severity, summary, evidence, (first[1], second[1]), first[1], obs)


def _place(entry: list[Any]) -> dict[str, object]:
    return {
        "signin_id": entry[1],
        "ip": entry[4],
        "country": entry[5],
        "city": entry[6],
        "lat": entry[2],
        "lon": entry[3],
    }


def _where(entry: list[Any]) -> str:
    return ", ".join(p for p in (entry[6], entry[5]) if p) or entry[4]


def _at(city: str, country: str, lat: float, lon: float, ip: str) -> dict[str, Any]:
    return {
        "ipAddress": ip,
        "location": {
            "city": city,
            "state": "",
            "countryOrRegion": country,
            "geoCoordinates": {"latitude": lat, "longitude": lon},
        },
    }


_AMSTERDAM = _at("Amsterdam", "NL", 52.37, 4.89, "145.53.77.20")
_SINGAPORE = _at("Singapore", "SG", 1.35, 103.82, "118.189.40.12")
_ROTTERDAM = _at("Rotterdam", "NL", 51.92, 4.48, "145.53.1.9")
_NEW_YORK = _at("New York", "US", 40.71, -74.0, "198.51.100.7")

RULE = StatefulRule(
    id="impossible-travel",
    title="Impossible travel",
    severity="medium",
    mitre=("T1078.004",),
    description=(
        "Two successful interactive sign-ins of one user whose great-circle distance over "
        "the time between them is faster than `max_kmh` (default 800 km/h); pairs under "
        "`min_km` (default 500 km) or without coordinates are ignored. High above five "
        "times the limit."
    ),
    next_steps=(
        "Compare both sign-ins (evidence from / to): VPN egress, a mobile carrier or a cloud proxy"
        " can make one user appear in two places.",
        "If one end is not the user: revoke their sessions, reset the password and block that "
        "address with a Conditional Access named location.",
        "Add known corporate VPN ranges to the named networks of the allow-list.",
    ),
    keyed_by="user",
    wants=wants,
    step=step,
    settings=ImpossibleTravelSettings,
    scenarios=(
        Scenario(
            "Amsterdam then Singapore 30 minutes later",
            1,
            ((0, _AMSTERDAM), (30, _SINGAPORE)),
            severity="high",
        ),
        Scenario(
            "Amsterdam then Singapore 14 hours later", 0, ((0, _AMSTERDAM), (14 * 60, _SINGAPORE))
        ),
        Scenario(
            "Amsterdam then Rotterdam 5 minutes later (under 500 km)",
            0,
            ((0, _AMSTERDAM), (5, _ROTTERDAM)),
        ),
        Scenario(
            "New York then Amsterdam 3 hours later",
            1,
            ((0, _NEW_YORK), (180, _AMSTERDAM)),
            severity="medium",
        ),
        Scenario(
            "a failed sign-in does not count",
            0,
            ((0, _AMSTERDAM), (30, {**_SINGAPORE, "status": {"errorCode": 50126}})),
        ),
        Scenario(
            "arrived out of order",
            1,
            ((30, _SINGAPORE), (0, _AMSTERDAM)),
        ),
    ),
)
