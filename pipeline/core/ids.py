"""Alert ids and incidents: ids are deterministic, so a redelivered record yields the same id
and receivers dedup; an incident is one id's alert across the versions a stateful rule sends."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import NamedTuple

_ALERT_NAMESPACE = uuid.UUID("6f1c1f9e-4d7b-4c55-9a0e-5f3b7f2d8a11")


def alert_id(rule_id: str, parts: Iterable[str]) -> str:
    """The same rule over the same sign-ins (or incident key and anchor) gives the same id."""
    return str(uuid.uuid5(_ALERT_NAMESPACE, rule_id + "|" + "|".join(parts)))


class Incident(NamedTuple):
    """What a stateful rule keeps of the alert of a pattern it matched (``pipeline.core.stateful``
    merges hits into it; ``pipeline.core.codec`` stores it)."""

    id: str
    last: float
    severity: str
    signin_ids: tuple[str, ...]
    total: int
    emitted: int
    """``total`` when an alert version was last emitted."""
