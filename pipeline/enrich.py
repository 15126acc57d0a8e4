"""A sign-in with what the rules need beyond its own fields: client identity and effective risk."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.clientapp import ClientIdentity
from pipeline.records import SignIn
from pipeline.risk import EffectiveRisk


@dataclass(frozen=True, slots=True)
class Enriched:
    signin: SignIn
    client: ClientIdentity
    risk: EffectiveRisk
