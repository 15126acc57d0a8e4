"""The strict decoder gives exactly the lenient parser's records, or declines the event.

Every event it takes must come out as ``add_document`` (the lenient reader) would make it;
everything else must be declined (None), so reject reasons stay the lenient parser's. The
inputs: the public corpus, the bundled sample, benchmark envelopes, and one sign-in with each
field it reads replaced by a value of every JSON type.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import signin
from test_corpus import CORPUS

from pipeline.parse import Parsed, add_document, parse_event
from pipeline.records import SignIn
from pipeline.strict import strict_signins
from pipeline.synth import bench_envelope, sample_envelopes, sample_records

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"


def lenient(data: bytes) -> Parsed:
    out = Parsed()
    add_document(orjson.loads(data), out)
    return out


def agrees(data: bytes) -> bool:
    """True when the strict decoder took the event (and then it must match)."""
    taken = strict_signins(data)
    if taken is None:
        return False
    expected = lenient(data)
    assert expected.rejected == []
    assert taken == expected.records
    return True


def _lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line.strip()]


def test_the_public_corpus_decodes_the_same_either_way() -> None:
    if not CORPUS.is_dir():
        pytest.skip(f"public corpus not found at {CORPUS}")
    taken = total = 0
    for path in sorted(CORPUS.glob("*.log")) + sorted(CORPUS.glob("*.ndjson")):
        for line in _lines(path):
            try:
                doc = orjson.loads(line)
            except orjson.JSONDecodeError:
                assert strict_signins(line) is None
                continue
            total += 1
            # As Event Hubs delivers them: records in an envelope.
            records = doc if isinstance(doc, list) else [doc]
            taken += agrees(orjson.dumps({"records": records}))
    assert total > 100
    assert taken > 20  # many real exports are strict-shaped; the rest were declined


def test_generated_envelopes_all_take_the_strict_path() -> None:
    envelopes = [orjson.dumps(e) for e in sample_envelopes(sample_records(), 20)]
    envelopes += [bench_envelope(20, seed) for seed in range(20)]
    signin_only = [e for e in envelopes if b"RiskyUsers" not in e and b"UserRiskEvents" not in e]
    assert len(signin_only) > 20
    assert all(agrees(e) for e in signin_only)
    assert [agrees(e) for e in envelopes if e not in signin_only] == [False] * (
        len(envelopes) - len(signin_only)
    )


def test_the_bundled_sample_parses_the_same_through_parse_event() -> None:
    for line in _lines(SAMPLE):
        parsed = parse_event(line)
        assert parsed.records == lenient(line).records
        assert parsed.rejected == []


BIG = "big-number"  # written into the JSON as 2**70, which orjson cannot serialize
VALUES: list[Any] = [None, "", "x", "US", "2026-01-15T10:00:00Z", 0, 7, -3, BIG, 1.5, True]
VALUES += [[], ["a", ""], [1], {}, {"k": 1}]
DELETE = object()

PATHS: list[tuple[str, ...]] = [
    ("category",),
    ("time",),
    ("tenantId",),
    ("resourceId",),
    ("resultType",),
    ("resultDescription",),
    ("callerIpAddress",),
    ("correlationId",),
    ("identity",),
    ("location",),
    ("properties",),
    *(("properties", key) for key in signin({})["properties"]),
    ("properties", "tenantId"),
    ("properties", "homeTenantId"),
    ("properties", "servicePrincipalId"),
    ("properties", "servicePrincipalName"),
    ("properties", "status", "errorCode"),
    ("properties", "status", "failureReason"),
    ("properties", "location", "countryOrRegion"),
    ("properties", "location", "geoCoordinates"),
    ("properties", "location", "geoCoordinates", "latitude"),
    ("properties", "deviceDetail", "isCompliant"),
    ("properties", "deviceDetail", "trustType"),
    ("properties", "appliedConditionalAccessPolicies", 0),
    ("properties", "appliedConditionalAccessPolicies", 0, "result"),
    ("properties", "appliedConditionalAccessPolicies", 0, "id"),
    ("properties", "authenticationDetails", 0),
    ("properties", "authenticationDetails", 0, "succeeded"),
]


def _base() -> dict[str, Any]:
    record = signin(
        {
            "appliedConditionalAccessPolicies": [
                {"id": "p1", "displayName": "Require MFA", "result": "success", "x": [1]},
                {"id": "p2", "displayName": "Off", "result": "notEnabled"},
            ],
            "authenticationDetails": [
                {"authenticationMethod": "Password", "succeeded": True, "extra": {}}
            ],
        }
    )
    record.update(resultType="0", resultDescription="", identity="Adele", location="US")
    record["properties"]["status"]["failureReason"] = "Other."
    return record


def _set(record: dict[str, Any], path: tuple[Any, ...], value: Any) -> bool:
    target: Any = record
    for step in path[:-1]:
        try:
            target = target[step]
        except (KeyError, IndexError, TypeError):
            return False
    if not isinstance(target, dict | list):
        return False
    if value is DELETE:
        if isinstance(target, dict):
            target.pop(path[-1], None)
        else:
            del target[path[-1]]
    else:
        target[path[-1]] = copy.deepcopy(value)
    return True


@pytest.mark.parametrize("path", PATHS, ids=lambda p: ".".join(map(str, p)))
def test_every_value_of_every_read_field_is_taken_alike_or_declined(path: tuple[Any, ...]) -> None:
    assert agrees(orjson.dumps({"records": [_base()]}))
    for value in [*VALUES, DELETE]:
        record = _base()
        if not _set(record, path, value):
            continue
        data = orjson.dumps({"records": [record, _base()]})
        data = data.replace(f'"{BIG}"'.encode(), str(2**70).encode())
        if strict_signins(data) is not None:
            assert agrees(data), (path, value)


@pytest.mark.parametrize("key", ["Category", "TenantId", "tenantid", "Properties", "Time"])
def test_another_casing_of_a_top_level_key_is_left_to_the_lenient_parser(key: str) -> None:
    record = _base()
    record[key] = record.get(key[0].lower() + key[1:], "x")
    assert strict_signins(orjson.dumps({"records": [record]})) is None


def test_invalid_utf8_in_a_field_nobody_reads_still_rejects_the_event() -> None:
    record = _base()
    record["properties"]["userType"] = "Member"
    data = orjson.dumps({"records": [record]}).replace(b'"Member"', b'"Mem\xffber"')
    assert strict_signins(data) is None
    assert [r.reason for r in parse_event(data).rejected] == ["invalid-utf8"]


def test_a_sign_in_through_the_strict_path_is_a_full_record() -> None:
    (record,) = strict_signins(orjson.dumps({"records": [_base()]})) or [None]
    assert isinstance(record, SignIn)
    assert record.ca_policies[0].name == "Require MFA" and len(record.ca_policies) == 1
    assert record.failure_reason == "Other." and record.display_name == "Adele Vance"
