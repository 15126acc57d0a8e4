"""A sign-in with what the rules need beyond its own fields (client identity and effective
risk), and the ``Observation`` of it that the stateful rules keep."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

from pipeline.core.clientapp import ClientIdentity
from pipeline.core.outcomes import outcome
from pipeline.core.records import Location, SignIn
from pipeline.core.risk import EffectiveRisk
from pipeline.core.timeparse import format_time


class Enriched(NamedTuple):
    signin: SignIn
    client: ClientIdentity
    risk: EffectiveRisk


class Observation(NamedTuple):
    """What the stateful rules keep of a sign-in: enough to count it and to describe it in
    an alert. Travels on the by-IP topic and sits in table state (``pipeline.core.codec``)."""

    id: str
    time: float
    """Event time (createdDateTime), epoch seconds."""
    tenant_id: str
    user: str
    user_id: str
    ip: str
    location: Location
    client: tuple[str, str, str, str]
    """family, name, platform, version."""
    risk: tuple[str, str, tuple[str, ...]]
    """level, state, detections."""
    outcome: str
    interactive: bool
    correlation_id: str
    app: str

    @classmethod
    def of(cls, e: Enriched) -> Observation:
        s, c, r = e.signin, e.client, e.risk
        return cls(
            s.id,
            s.time.timestamp(),
            s.tenant_id,
            s.upn or s.sp_name,
            s.subject_id,
            s.ip,
            s.location,
            (c.family, c.name, c.platform, c.version),
            (r.level, r.state, r.detections),
            outcome(s).value,
            s.interactive,
            s.correlation_id,
            s.app_name,
        )

    @property
    def when(self) -> str:
        return format_time(datetime.fromtimestamp(self.time, UTC))

    def client_dict(self) -> dict[str, object]:
        return dict(zip(("family", "name", "platform", "version"), self.client, strict=True))

    def risk_dict(self) -> dict[str, object]:
        level, state, detections = self.risk
        return {"level": level, "state": state, "detections": list(detections)}
