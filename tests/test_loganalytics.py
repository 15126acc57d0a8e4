"""Log Analytics / Sentinel rows, in every export form, read as the diagnostic-settings
records they came from: the same records, and from ``scan`` the same alerts."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.core.parse import parse_file
from pipeline.core.policy import Policy
from pipeline.core.records import Category, Record, RiskEvent, SignIn
from pipeline.core.scan import scan
from tests import loganalytics_export as la

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "public"


def _corpus_documents() -> list[Any]:
    docs: list[Any] = []
    for path in sorted(CORPUS.glob("*")):
        if path.suffix in (".log", ".ndjson"):
            docs += la.documents(path.read_bytes())
    return docs


def _alerts(data: bytes) -> list[tuple[str, str, str, tuple[str, ...], str]]:
    """What must agree between forms: id, rule, severity, sign-ins, time to the ms."""
    out = io.BytesIO()
    scan([("input", data)], Policy(), out)
    alerts = [orjson.loads(line) for line in out.getvalue().splitlines()]
    return sorted(
        (a["id"], a["rule"], a["severity"], tuple(a["signin_ids"]), a["time"][:23]) for a in alerts
    )


def _diagnostic(documents: list[Any]) -> bytes:
    return b"".join(orjson.dumps(d) + b"\n" for d in documents)


SAMPLE_DOCS = list(la.documents(SAMPLE.read_bytes()))
SAMPLE_ALERTS = _alerts(SAMPLE.read_bytes())


@pytest.mark.parametrize("form", sorted(la.FORMS))
def test_the_sample_in_every_log_analytics_form_gives_the_diagnostic_alerts(form: str) -> None:
    data = la.FORMS[form](la.rows(SAMPLE_DOCS))
    parsed = parse_file(data)
    assert parsed.rejected == []
    assert len(parsed.records) == sum(len(d["records"]) for d in SAMPLE_DOCS)
    assert len(SAMPLE_ALERTS) > 30
    assert _alerts(data) == SAMPLE_ALERTS


def _comparable(record: Record, ms: bool) -> Record:
    """A record as every form must agree on it. The tenant is the workspace's business in
    Log Analytics (only SigninLogs has ``AADTenantId``); the portal CSV keeps milliseconds;
    a workload sign-in's time is ``TimeGenerated`` (the record's ``time``), as the tables
    have no ``CreatedDateTime``."""
    time = record.time.replace(microsecond=record.time.microsecond // 1000 * 1000)
    if isinstance(record, SignIn):
        if record.is_workload:
            return record._replace(tenant_id="", time=None)
        return record._replace(tenant_id="", time=time if ms else record.time)
    assert isinstance(record, RiskEvent)
    return record._replace(tenant_id="", time=time if ms else record.time)


def _by_id(records: list[Record], ms: bool) -> dict[tuple[str, str], Record]:
    """Records of a category that has a table (MicrosoftServicePrincipalSignInLogs has none)."""
    return {
        (r.category, r.id): _comparable(r, ms)
        for r in records
        if r.category != Category.MICROSOFT_SERVICE_PRINCIPAL
    }


@pytest.mark.parametrize("form", sorted(la.FORMS))
def test_public_corpus_records_read_alike_from_every_form(form: str) -> None:
    docs = _corpus_documents()
    expected = parse_file(_diagnostic(docs)).records
    got = parse_file(la.FORMS[form](la.rows(docs)))
    ms = form == "portal-csv"
    assert len(expected) > 90
    # Records without an id are rejected alike in both forms.
    assert [r.reason for r in got.rejected] == ["missing-field"] * len(got.rejected)
    assert _by_id(got.records, ms) == _by_id(expected, ms)


def _workload_times_as_tables_keep_them(docs: list[Any]) -> list[Any]:
    """The workload tables keep a sign-in's ``time``, not its ``createdDateTime`` (about two
    minutes earlier in the corpus' real service-principal records)."""
    out = []
    for doc in docs:
        doc = copy.deepcopy(doc)
        for record in doc.get("records", [doc]):
            props = record.get("properties")
            if record.get("category") in la.WORKLOAD and isinstance(props, dict):
                props["createdDateTime"] = record.get("time")
        out.append(doc)
    return out


@pytest.mark.parametrize("form", sorted(la.FORMS))
def test_public_corpus_gives_the_same_alerts_in_every_form(form: str) -> None:
    docs = _corpus_documents()
    expected = _alerts(_diagnostic(_workload_times_as_tables_keep_them(docs)))
    assert expected
    assert _alerts(la.FORMS[form](la.rows(docs))) == expected


def _one(row: dict[str, Any]) -> Record:
    parsed = parse_file(orjson.dumps([row]))
    assert parsed.rejected == []
    (record,) = parsed.records
    return record


BASE = {
    "TimeGenerated": "2026-01-15T10:00:00.1234567Z",
    "Id": "5f1b3a44-0000-4000-8000-000000000001",
    "Type": "AADNonInteractiveUserSignInLogs",
    "UserId": "u1",
    "ResultType": "50126",
}


def test_workspace_columns_are_not_the_records_own() -> None:
    record = _one(
        {
            **BASE,
            "TenantId": la.WORKSPACE,
            "ResourceId": "/tenants/t1/providers/Microsoft.aadiam",
            "ResourceIdentity": "00000002-0000-0FF1-CE00-000000000000",
            "HomeTenantId": "t1",
        }
    )
    assert isinstance(record, SignIn)
    assert record.tenant_id == "t1"
    assert record.resource_id == "00000002-0000-0ff1-ce00-000000000000"
    assert record.error_code == 50126
    assert record.time.microsecond == 123456


def test_a_union_split_column_is_read_from_whichever_half_holds_it() -> None:
    location = {"city": "Oslo", "countryOrRegion": "NO"}
    dynamic = _one({**BASE, "LocationDetails_dynamic": location, "LocationDetails_string": ""})
    text = _one(
        {
            **BASE,
            "LocationDetails_dynamic": None,
            "LocationDetails_string": orjson.dumps(location).decode(),
        }
    )
    assert isinstance(dynamic, SignIn) and isinstance(text, SignIn)
    assert dynamic.location.city == text.location.city == "Oslo"


def test_the_country_column_never_hides_the_location_details() -> None:
    row = {**BASE, "Location": "NO", "LocationDetails": '{"city": "Oslo", "countryOrRegion": "NO"}'}
    record = _one(row)
    assert isinstance(record, SignIn) and record.location.city == "Oslo"
    record = _one({**BASE, "Location": "NO"})
    assert isinstance(record, SignIn) and record.location.country == "NO"


def test_az_none_reads_as_absent() -> None:
    record = _one({**BASE, "SessionId": "None", "UserAgent": "None", "AutonomousSystemNumber": "0"})
    assert isinstance(record, SignIn)
    assert (record.session_id, record.user_agent, record.asn) == ("", "", 0)


def test_a_table_of_another_kind_is_an_unsupported_category() -> None:
    parsed = parse_file(orjson.dumps([{**BASE, "Type": "AuditLogs"}]))
    assert [(r.reason, r.field) for r in parsed.rejected] == [("unsupported-category", "Type")]


def test_csv_without_a_log_analytics_header_is_one_reject_per_row() -> None:
    data = b"user,ip,when\nalice,10.0.0.1,today\nbob,10.0.0.2,today\n"
    parsed = parse_file(data)
    assert parsed.records == []
    assert [(r.reason, r.line) for r in parsed.rejected] == [
        ("unrecognised-shape", 2),
        ("unrecognised-shape", 3),
    ]
    assert "looks like CSV without a Log Analytics header" in parsed.rejected[0].detail


def test_portal_csv_reject_names_its_row() -> None:
    data = la.portal_csv([{**BASE, "Id": ""}, BASE])
    parsed = parse_file(data)
    assert len(parsed.records) == 1
    assert [(r.reason, r.field, r.line) for r in parsed.rejected] == [("missing-field", "id", 2)]
