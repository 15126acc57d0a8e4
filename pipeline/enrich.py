"""A sign-in with what the rules need beyond its own fields: client identity and effective risk."""

from __future__ import annotations

from typing import NamedTuple

from pipeline.clientapp import ClientIdentity
from pipeline.records import SignIn
from pipeline.risk import EffectiveRisk


class Enriched(NamedTuple):
    signin: SignIn
    client: ClientIdentity
    risk: EffectiveRisk
