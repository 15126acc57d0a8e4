"""The decoders against hostile and random input: nothing escapes, nothing is silently lost.

Every input ends as records or rejects with a named reason; a good record beside a bad one
in a still-valid envelope survives; a dead letter fits its limit whatever it carries.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from typing import Any

import orjson
import pytest
from hostile import corpus, good
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pipeline.core.parse import REASONS, Parsed, parse_event, parse_file
from pipeline.core.records import SignIn
from pipeline.core.rejects import Rejected

LIMIT = 1024 * 1024
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

# Every field the parser reads, where it sits in a diagnostic-settings record.
FIELDS = [
    ("category",),
    ("time",),
    ("tenantId",),
    ("resourceId",),
    ("resultType",),
    ("callerIpAddress",),
    ("location",),
    ("properties",),
    *[
        ("properties", name)
        for name in (
            "id",
            "createdDateTime",
            "userId",
            "userPrincipalName",
            "userDisplayName",
            "appId",
            "appDisplayName",
            "clientAppUsed",
            "userAgent",
            "ipAddress",
            "status",
            "deviceDetail",
            "location",
            "appliedConditionalAccessPolicies",
            "authenticationDetails",
            "riskEventTypes_v2",
            "riskLevelDuringSignIn",
            "isInteractive",
        )
    ],
    ("properties", "status", "errorCode"),
    ("properties", "location", "geoCoordinates"),
    ("properties", "deviceDetail", "isCompliant"),
]


def accounted(parsed: Parsed) -> None:
    for rejected in parsed.rejected:
        assert rejected.reason in REASONS, rejected
        assert rejected.raw or rejected.reason in ("invalid-json",), rejected
    for record in parsed.records:
        assert record.id


@pytest.mark.parametrize("name", sorted(corpus(LIMIT)))
def test_each_probe_that_once_crashed_is_rejected_by_name(name: str) -> None:
    data, reasons, survivors = corpus(LIMIT)[name]
    parsed = parse_event(data, LIMIT)
    accounted(parsed)
    assert sorted(r.reason for r in parsed.rejected) == sorted(reasons)
    assert [r.id for r in parsed.records] == survivors
    parse_file(data, LIMIT)  # a file of it must not raise either


def test_a_repeated_key_names_the_key_and_the_record() -> None:
    data, _, _ = corpus(LIMIT)["duplicate-record-key"]
    (rejected,) = parse_event(data).rejected
    assert (rejected.reason, rejected.field, rejected.record_id) == (
        "duplicate-key",
        "properties.id",
        "x",
    )
    data, _, _ = corpus(LIMIT)["duplicate-envelope-key"]
    (rejected,) = parse_event(data).rejected
    assert (rejected.field, rejected.raw) == ("records", data)  # the event, as it came


def test_pretty_printed_and_escaped_input_without_repeats_still_reads() -> None:
    record = good("pretty")
    record["properties"]["userDisplayName"] = 'Ad\u00e8le / "V"'  # type: ignore[index]
    text = orjson.dumps({"records": [record]}, option=orjson.OPT_INDENT_2).replace(b"/", b"\\/")
    assert [r.id for r in parse_event(text).records] == ["pretty"]


@FUZZ
@given(st.binary(max_size=2048))
def test_any_bytes_become_records_or_named_rejects(data: bytes) -> None:
    accounted(parse_event(data, LIMIT))
    accounted(parse_file(data, LIMIT))


@FUZZ
@given(json_values)
def test_any_json_document_becomes_records_or_named_rejects(doc: Any) -> None:
    data = json.dumps(doc).encode()  # orjson refuses integers beyond 64 bits
    accounted(parse_event(data, LIMIT))
    accounted(parse_event(b'{"records":' + data + b"}", LIMIT))


@FUZZ
@given(st.sampled_from(FIELDS), json_values)
def test_a_good_record_survives_any_value_in_its_neighbour(
    path: tuple[str, ...], value: Any
) -> None:
    bad = copy.deepcopy(good("neighbour"))
    target: Any = bad
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = value
    data = json.dumps({"records": [good("keeper"), bad]}).encode()
    try:  # Infinity and integers beyond 64 bits: no envelope is valid with them in
        orjson.loads(data)
    except orjson.JSONDecodeError:
        assume(False)
    parsed = parse_event(data, LIMIT)
    accounted(parsed)
    ids = [r.id for r in parsed.records]
    assert ids[0] == "keeper" and isinstance(parsed.records[0], SignIn)
    assert len(ids) + len(parsed.rejected) == 2


@FUZZ
@given(st.binary(min_size=0, max_size=300_000), st.integers(min_value=4096, max_value=200_000))
def test_a_dead_letter_fits_its_limit_and_describes_the_whole_original(
    raw: bytes, limit: int
) -> None:
    letter = orjson.loads(Rejected("too-large", "", "", raw).to_json(limit, topic="t", offset=1))
    assert len(Rejected("too-large", "", "", raw).to_json(limit, topic="t", offset=1)) <= limit
    assert letter["length"] == len(raw)
    assert letter["sha256"] == hashlib.sha256(raw).hexdigest()
    assert letter["truncated"] is (len(raw) > 0 and letter["length"] != _kept(letter))


def _kept(letter: dict[str, Any]) -> int:
    record = letter["record"]
    return len(base64.b64decode(record) if letter["encoding"] == "base64" else record.encode())


def test_an_oversized_event_is_dead_lettered_cut_with_its_length_and_hash() -> None:
    data, _, _ = corpus(LIMIT)["oversized-3mb"]
    (rejected,) = parse_event(data, LIMIT).rejected
    out = rejected.to_json(900 * 1024, topic="raw", partition=0, offset=7)
    letter = orjson.loads(out)
    assert len(out) <= 900 * 1024 < len(data)
    assert letter["truncated"] and letter["length"] == len(data)
    assert letter["sha256"] == hashlib.sha256(data).hexdigest()
    assert data.startswith(letter["record"].encode())
    assert "hostile.probe@contoso.com" not in rejected.describe()
