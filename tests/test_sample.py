"""The bundled demo sample is what the generator writes, and it holds every incident."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from pipeline.core.parse import parse_file
from pipeline.core.records import SignIn
from tools.synth import INCIDENTS, write_sample

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"


def test_bundled_sample_is_what_the_generator_writes(tmp_path: Path) -> None:
    fresh = tmp_path / "sample.ndjson"
    write_sample(fresh, seed=7)
    assert fresh.read_bytes() == SAMPLE.read_bytes(), (
        "tools/synth.py no longer writes the bundled sample: run `make sample`"
    )


def test_sample_parses_completely() -> None:
    parsed = parse_file(SAMPLE.read_bytes())
    assert parsed.rejected == []
    assert len(parsed.records) == 471
    assert Counter(r.category.value for r in parsed.records) == {
        "SignInLogs": 224,
        "NonInteractiveUserSignInLogs": 200,
        "ServicePrincipalSignInLogs": 32,
        "ManagedIdentitySignInLogs": 10,
        "RiskyUsers": 3,
        "UserRiskEvents": 2,
    }


@pytest.fixture(scope="module")
def signins() -> list[SignIn]:
    return [r for r in parse_file(SAMPLE.read_bytes()).records if isinstance(r, SignIn)]


@pytest.mark.parametrize("incident", sorted(INCIDENTS))
def test_sample_has_a_signin_for_every_incident(signins: list[SignIn], incident: str) -> None:
    who = INCIDENTS[incident]  # a UPN, or the source IP for IP-keyed incidents
    assert any(who in (s.upn, s.ip) for s in signins), incident
