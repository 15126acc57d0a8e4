"""Conformance: every public sample record in ../shared/corpus/public has a known outcome.

The corpus stays outside this repository (most files are under the Elastic License), so this
module only refers to the files by name and reads them at test time; no record text is copied
here. ``EXPECTED`` was produced once by running the parser and checked against each file's
description in the folder's SOURCES.md. A new corpus file fails
``test_every_corpus_file_is_in_the_table`` until it gets a row.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.core.parse import Parsed, normalize, parse_file
from pipeline.core.records import Category, Record, RiskEvent, SignIn
from pipeline.core.timeparse import format_time, parse_time

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "public"
PANTHER = "panther-analysis__azure-signin-rule-test-logs.ndjson"
PANTHER_INDEX = "panther-analysis__azure-signin-rule-test-logs.index.tsv"
NOT_RECORDS = frozenset({"SOURCES.md", PANTHER_INDEX})
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


@dataclass(frozen=True)
class Expected:
    categories: dict[str, int]
    rejected: tuple[tuple[int, str, str], ...] = ()
    """(line, reason, field) of each rejected record, in file order."""


def ok(**categories: int) -> Expected:
    return Expected(categories)


def missing(field: str, lines: list[int]) -> tuple[tuple[int, str, str], ...]:
    return tuple((line, "missing-field", field) for line in lines)


EXPECTED: dict[str, Expected] = {
    "elastic-beats__signinlogs__signinlogs.log": ok(SignInLogs=1),
    "elastic-beats__signinlogs__signinlogs_ipv6.log": ok(SignInLogs=1),
    "elastic-beats__signinlogs__test-managed-identity.log": ok(ManagedIdentitySignInLogs=1),
    "elastic-beats__signinlogs__test-signinlogs-raw.log": ok(SignInLogs=2),
    "elastic-integrations__identity_protection__"
    "test-azure-identityprotection-duration-as-string-sample.log": ok(UserRiskEvents=1),
    "elastic-integrations__identity_protection__test-identity-protection-detection-ip.log": ok(
        UserRiskEvents=1
    ),
    "elastic-integrations__identity_protection__"
    "test-identity-protection-tenant-from-resource-id.log": ok(UserRiskEvents=1),
    "elastic-integrations__identity_protection__test-rickyusers-raw.log": ok(RiskyUsers=2),
    "elastic-integrations__identity_protection__test-userriskevents-raw.log": ok(UserRiskEvents=2),
    "elastic-integrations__signinlogs__test-adfs-signin.log": ok(ADFSSignInLogs=1),
    "elastic-integrations__signinlogs__test-alternative-time-and-duration-as-string.log": ok(
        ServicePrincipalSignInLogs=1
    ),
    "elastic-integrations__signinlogs__test-created-datetime-timestamp.log": ok(SignInLogs=2),
    # PascalCase keys, no properties at all (SOURCES.md: ServicePrincipalSignInLogs)
    "elastic-integrations__signinlogs__test-invalid-time.log": Expected(
        {}, missing("properties", [1])
    ),
    "elastic-integrations__signinlogs__test-managed-identity-sample.log": ok(
        ManagedIdentitySignInLogs=33
    ),
    "elastic-integrations__signinlogs__test-non-interactive-user-sample.log": ok(
        NonInteractiveUserSignInLogs=15
    ),
    "elastic-integrations__signinlogs__test-non-interactive-user-signin.log": ok(
        NonInteractiveUserSignInLogs=1
    ),
    "elastic-integrations__signinlogs__test-non-interactive-user.log": ok(
        NonInteractiveUserSignInLogs=1
    ),
    "elastic-integrations__signinlogs__test-service-principal-signinlogs-sample.log": ok(
        ServicePrincipalSignInLogs=7
    ),
    "elastic-integrations__signinlogs__test-service-principal.log": ok(
        ServicePrincipalSignInLogs=1
    ),
    "elastic-integrations__signinlogs__test-signinlogs-raw.log": ok(
        SignInLogs=1,
        NonInteractiveUserSignInLogs=1,
        ServicePrincipalSignInLogs=1,
        MicrosoftServicePrincipalSignInLogs=1,
        ManagedIdentitySignInLogs=1,
    ),
    "elastic-integrations__signinlogs__test-signinlogs-sample.log": ok(SignInLogs=2),
    "elastic-integrations__signinlogs__test-signinlogs.log": ok(SignInLogs=2),
    # 11 minimal {time, category} records, one per time format
    "elastic-integrations__signinlogs__test-time-formats-corner-cases.log": Expected(
        {}, missing("properties", list(range(1, 12)))
    ),
    # hand-written rule tests: 16 of 27 have no properties.id (13 SignInLogs, 3 NonInteractive)
    PANTHER: Expected(
        {"SignInLogs": 2, "ServicePrincipalSignInLogs": 9},
        missing("properties.id", [1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 16, 17, 23, 24, 25, 26]),
    ),
}


@pytest.fixture(scope="module")
def corpus() -> Path:
    if not CORPUS.is_dir():
        message = f"public corpus not found at {CORPUS}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CORPUS


@functools.cache
def parse(name: str) -> Parsed:
    return parse_file((CORPUS / name).read_bytes())


@functools.cache
def raw_lines(name: str) -> dict[int, dict[str, Any]]:
    """Line number -> the decoded record on that line (every corpus line is one record)."""
    lines = (CORPUS / name).read_bytes().split(b"\n")
    return {n: orjson.loads(line) for n, line in enumerate(lines, 1) if line.strip()}


def with_raw(name: str) -> list[tuple[Record, dict[str, Any]]]:
    """Each parsed record beside its raw line (ids repeat inside some files)."""
    rejected = {r.line for r in parse(name).rejected}
    lines = [raw for n, raw in raw_lines(name).items() if n not in rejected]
    records = parse(name).records
    assert len(lines) == len(records)
    return list(zip(records, lines, strict=True))


@functools.cache
def panther_index() -> dict[int, str]:
    """Line -> category, from the index that comes with the Panther file."""
    rows = (CORPUS / PANTHER_INDEX).read_text(encoding="utf-8").splitlines()
    header = rows[0].split("\t")
    line, category = header.index("line"), header.index("category")
    return {int(r.split("\t")[line]): r.split("\t")[category] for r in rows[1:]}


def signins(name: str) -> list[SignIn]:
    return [r for r in parse(name).records if isinstance(r, SignIn)]


# The table


def test_every_corpus_file_is_in_the_table(corpus: Path) -> None:
    present = {p.name for p in corpus.iterdir() if p.is_file()}
    assert present - NOT_RECORDS == set(EXPECTED), "add new corpus files to EXPECTED"
    assert present >= NOT_RECORDS


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_file_outcome(corpus: Path, name: str) -> None:
    expected = EXPECTED[name]
    parsed = parse(name)
    assert Counter(r.category.value for r in parsed.records) == Counter(expected.categories)
    assert [(r.line, r.reason, r.field) for r in parsed.rejected] == list(expected.rejected)
    assert len(parsed.records) + len(parsed.rejected) == len(raw_lines(name))


# One test per reject reason that appears


def test_records_rejected_for_missing_properties_have_none(corpus: Path) -> None:
    seen = 0
    for name, expected in EXPECTED.items():
        rejected = [r for r in parse(name).rejected if r.field == "properties"]
        for reject in rejected:
            raw = raw_lines(name)[reject.line]
            assert not {"properties", "Properties"} & set(raw)
            assert orjson.loads(reject.raw) == raw, "the reject carries the whole record"
            seen += 1
        assert len(rejected) == sum(1 for r in expected.rejected if r[2] == "properties")
    assert seen == 12


def test_records_rejected_for_missing_id_would_parse_with_one(corpus: Path) -> None:
    index = panther_index()
    rejected = [r for r in parse(PANTHER).rejected if r.field == "properties.id"]
    assert len(rejected) == 16
    for reject in rejected:
        raw = raw_lines(PANTHER)[reject.line]
        assert orjson.loads(reject.raw) == raw
        assert not raw["properties"].get("id")
        fixed = {**raw, "properties": {**raw["properties"], "id": f"line-{reject.line}"}}
        record = normalize(fixed)
        assert record.category.value == index[reject.line], reject.line


# What the parsed records hold


def test_panther_categories_match_its_index(corpus: Path) -> None:
    index = panther_index()
    assert sorted(index) == sorted(raw_lines(PANTHER))
    parsed_lines = sorted(set(raw_lines(PANTHER)) - {r.line for r in parse(PANTHER).rejected})
    assert [r.category.value for r in parse(PANTHER).records] == [
        index[line] for line in parsed_lines
    ]


def test_records_keep_id_user_ip_and_tenant_as_given(corpus: Path) -> None:
    for name in EXPECTED:
        for record, raw in with_raw(name):
            props = raw["properties"]
            assert record.id == props["id"], name
            if "tenantId" in raw:
                assert record.tenant_id == raw["tenantId"], name
            if isinstance(record, SignIn):
                assert record.upn == (props.get("userPrincipalName") or ""), name
                assert record.ip == (props.get("ipAddress") or raw.get("callerIpAddress") or "")
                assert record.user_id == (props.get("userId") or ""), name


def test_event_time_agrees_with_delivery_time(corpus: Path) -> None:
    """The envelope ``time`` is when the log was written: at most 1 s (second-precision US
    locale) before the event and never hours after it, unless a time zone was mishandled."""
    checked = 0
    for name in EXPECTED:
        for record, raw in with_raw(name):
            delivered = raw.get("time")
            if delivered:
                lag = parse_time(delivered) - record.time
                assert timedelta(seconds=-1) <= lag <= timedelta(hours=2), (name, record.id)
                checked += 1
    assert checked == sum(len(parse(name).records) for name in EXPECTED)


def test_us_locale_delivery_time_is_the_fallback_read_month_first(corpus: Path) -> None:
    """Without their own timestamp, records fall back to the envelope ``time``; Identity
    Protection and ADFS write it in US locale."""
    own_times = (
        "createdDateTime",
        "riskLastUpdatedDateTime",
        "detectedDateTime",
        "activityDateTime",
        "lastUpdatedDateTime",
    )
    files = set()
    for name in EXPECTED:
        for _, raw in with_raw(name):
            if "/" not in str(raw.get("time")):
                continue
            props = {k: v for k, v in raw["properties"].items() if k not in own_times}
            record = normalize({**raw, "properties": props})
            expected = datetime.strptime(raw["time"], "%m/%d/%Y %I:%M:%S %p").replace(tzinfo=UTC)
            assert record.time == expected, name
            files.add(name)
    assert files >= {
        "elastic-integrations__signinlogs__test-adfs-signin.log",
        "elastic-integrations__signinlogs__test-alternative-time-and-duration-as-string.log",
        "elastic-integrations__identity_protection__test-rickyusers-raw.log",
        "elastic-integrations__identity_protection__test-userriskevents-raw.log",
    }


def test_time_format_corner_cases_all_mean_the_same_instant(corpus: Path) -> None:
    name = "elastic-integrations__signinlogs__test-time-formats-corner-cases.log"
    times = [raw["time"] for raw in raw_lines(name).values()]
    assert len(times) == 11
    for value in times:
        assert format_time(parse_time(value))[:19] == "2007-01-09T09:41:00", value


def test_offset_created_time_is_normalised_to_utc(corpus: Path) -> None:
    for name in (
        "elastic-integrations__signinlogs__test-signinlogs.log",
        "elastic-beats__signinlogs__test-signinlogs-raw.log",
    ):
        assert all(
            raw["properties"]["createdDateTime"].endswith("-05:00")
            for raw in raw_lines(name).values()
        )
        times = {format_time(s.time) for s in signins(name)}
        assert times == {"2019-10-18T09:45:48.072989Z"}, name


def test_adfs_signin_is_its_own_category(corpus: Path) -> None:
    (adfs,) = signins("elastic-integrations__signinlogs__test-adfs-signin.log")
    assert adfs.category is Category.ADFS
    assert adfs.interactive and not adfs.is_workload
    assert (adfs.risk_during, adfs.risk_aggregated) == ("hidden", "hidden")
    assert adfs.location.lat is None and adfs.location.lon is None  # 0/0 means unknown


def test_tenant_taken_from_resource_id(corpus: Path) -> None:
    name = (
        "elastic-integrations__identity_protection__"
        "test-identity-protection-tenant-from-resource-id.log"
    )
    (raw,) = raw_lines(name).values()
    assert "tenantId" not in raw  # only resourceId (and properties.homeTenantId) name it
    tenant = raw["resourceId"].split("/")[2]
    assert _GUID.fullmatch(tenant)
    (event,) = parse(name).records
    assert isinstance(event, RiskEvent) and event.tenant_id == tenant


def test_risky_users_rows_are_keyed_by_the_user(corpus: Path) -> None:
    name = "elastic-integrations__identity_protection__test-rickyusers-raw.log"
    events = parse(name).records
    assert [r.category for r in events] == [Category.RISKY_USERS] * 2
    for event in events:
        assert isinstance(event, RiskEvent)
        assert event.user_id == event.id and _GUID.fullmatch(event.user_id)
        assert event.level in ("low", "medium", "high") and event.state == "atRisk"


def test_ipv6_address_is_kept(corpus: Path) -> None:
    (s,) = signins("elastic-beats__signinlogs__signinlogs_ipv6.log")
    assert ipaddress.ip_address(s.ip).version == 6


def test_guid_upns_are_kept(corpus: Path) -> None:
    name = "elastic-integrations__signinlogs__test-signinlogs-raw.log"
    upns = [s.upn for s in signins(name)]
    assert len(upns) == 5
    assert sum(1 for upn in upns if _GUID.fullmatch(upn)) == 4
    assert sum(1 for upn in upns if "@" in upn) == 1


MODERN_FIELDS = {
    "auth_protocol": ("authenticationProtocol",),
    "original_transfer_method": ("originalTransferMethod",),
    "incoming_token_type": ("incomingTokenType",),
    "session_id": ("sessionId",),
    "user_type": ("userType",),
    "asn": ("autonomousSystemNumber",),
    "additional_details": ("status", "additionalDetails"),
    "cross_tenant_access_type": ("crossTenantAccessType",),
    "home_tenant_id": ("homeTenantId",),
    "resource_tenant_id": ("resourceTenantId",),
    "sp_credential_key_id": ("servicePrincipalCredentialKeyId",),
    "token_session_status": ("tokenProtectionStatusDetails", "signInSessionStatus"),
}
"""What the modern-attack rules read, and where real exports put it (written out here,
not taken from the declarations, so a wrong path shows)."""


def test_the_modern_attack_fields_are_read_where_real_exports_put_them(corpus: Path) -> None:
    seen: set[str] = set()
    for name in EXPECTED:
        for record, raw in with_raw(name):
            if not isinstance(record, SignIn):
                continue
            for field, path in MODERN_FIELDS.items():
                value: Any = raw["properties"]
                for key in path:
                    value = value.get(key) if isinstance(value, dict) else None
                got = getattr(record, field)
                if value in (None, ""):
                    assert got in ("", 0), (name, field)  # absent is empty, never a reject
                    continue
                seen.add(field)
                if field == "asn":
                    assert got == int(value), (name, field)
                elif field.endswith("tenant_id"):
                    assert got == value.lower(), (name, field)
                else:
                    assert got == value, (name, field)
    # The corpus carries each of them on records that parse, but for sessionId, found only
    # on Panther's id-less test records (rejected); test_parse places it.
    assert seen == set(MODERN_FIELDS) - {"session_id"}
