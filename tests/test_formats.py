"""The SIEM formats of every sample alert, read back the way receivers read them.

CEF is parsed by an independent parser (tests/cef.py); OCSF is validated by py-ocsf-models
with every emitted key held to a declared attribute (pydantic alone ignores unknown keys);
ECS is held to the field list in tests/data/ecs_fields.yaml, types included.
"""

from __future__ import annotations

import calendar
import io
import ipaddress
from collections.abc import Iterator
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any, get_args

import orjson
import pytest
import yaml
from cef import parse_cef
from hypothesis import given, settings
from hypothesis import strategies as st
from py_ocsf_models import OCSF_VERSION
from py_ocsf_models.events.findings.detection_finding import DetectionFinding
from py_ocsf_models.objects.geolocation import GeoLocation
from pydantic import BaseModel

from pipeline.alerts.formats import document, line
from pipeline.alerts.formats.cef import to_cef
from pipeline.alerts.formats.common import TACTICS, TECHNIQUES
from pipeline.alerts.formats.ecs import to_ecs
from pipeline.alerts.formats.ocsf import to_ocsf
from pipeline.alerts.privacy import restrict
from pipeline.core.policy import Policy
from pipeline.core.rules import REGISTRY
from pipeline.core.scan import scan
from pipeline.sinks import ALERT_FIELDS

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"
ECS_FIELDS_FILE = Path(__file__).with_name("data") / "ecs_fields.yaml"
KEPT = ("id", "rule", "severity", "time", "title")
"""The fields a sink's allow-list always keeps."""
VERSION = version("signin-risk")
CEF_SEVERITY = {"informational": "1", "low": "3", "medium": "5", "high": "8", "critical": "10"}
OCSF_SEVERITY = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}


def _scan_sample() -> list[dict[str, Any]]:
    out = io.BytesIO()
    scan([(SAMPLE.name, SAMPLE.read_bytes())], Policy(), out)
    return [orjson.loads(raw) for raw in out.getvalue().splitlines()]


ALERTS = _scan_sample()
ECS_FIELDS: dict[str, str | list[str]] = {
    name: kind
    for group in yaml.safe_load(ECS_FIELDS_FILE.read_text()).values()
    for name, kind in group.items()
}


def reduced(alert: dict[str, Any], keep: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    """The alert after a sink's allow-list of ``keep``."""
    return {k: v for k, v in alert.items() if k in KEPT or k in keep}


def epoch_ms(timestamp: str) -> int:
    moment = datetime.fromisoformat(timestamp)
    return calendar.timegm(moment.utctimetuple()) * 1000 + moment.microsecond // 1000


def test_the_sample_raises_every_rule() -> None:
    assert {a["rule"] for a in ALERTS} == set(REGISTRY)


def test_every_rule_technique_has_its_attack_names() -> None:
    for rule in REGISTRY.values():
        for technique in rule.mitre:
            assert technique in TECHNIQUES, (rule.id, technique)
            assert technique.split(".")[0] in TECHNIQUES, (rule.id, technique)
            assert TECHNIQUES[technique].tactic in TACTICS, (rule.id, technique)


# --- CEF ---------------------------------------------------------------------------------


def test_the_cef_parser_reads_the_spec_escapes() -> None:
    header, ext = parse_cef(
        r"CEF:0|Vendor\|Co|Prod\\uct|1.0|sig|name with \| pipe|7|"
        r"act=blocked a \= sign msg=two\nlines and \\ slash src=10.0.0.1"
    )
    assert header == ["0", "Vendor|Co", "Prod\\uct", "1.0", "sig", "name with | pipe", "7"]
    assert ext == {"act": "blocked a = sign", "msg": "two\nlines and \\ slash", "src": "10.0.0.1"}
    for bad in (
        "CEF:0|a|b|c|d|e",
        "LEEF:1.0|a|b|c|d|e|f|",
        "CEF:0|a|b|c|d|e|f|k=a=b",
        "CEF:0|a|b|c|d|e|f|k=\\x",
    ):
        with pytest.raises(ValueError):
            parse_cef(bad)


def test_cef_reads_back_as_the_alert() -> None:
    for alert in ALERTS:
        text = to_cef(alert)
        header, ext = parse_cef(text)
        evidence, location = alert["evidence"], alert["location"]
        assert header == [
            "0", "signin-risk", "signin-risk", VERSION,
            alert["rule"], alert["title"], CEF_SEVERITY[alert["severity"]],
        ], text  # fmt: skip
        assert int(ext["rt"]) == epoch_ms(alert["time"])
        assert ext["externalId"] == alert["id"]
        assert ext["cat"] == alert["rule"]
        assert ext["msg"] == alert["summary"]
        assert ext.get("suser", "") == alert["user"]
        assert ext.get("suid", "") == alert["user_id"]
        assert ext.get("src", "") == alert["ip"]  # every sample address is IPv4
        assert ext.get("requestClientApplication", "") == evidence.get("user_agent", "")
        assert ext.get("destinationServiceName", "") == evidence.get("resource", "")
        if "first" in evidence:
            assert int(ext["start"]) == epoch_ms(evidence["first"])
        if location["lat"] is not None:
            assert (float(ext["slat"]), float(ext["slong"])) == (location["lat"], location["lon"])
        if location["country"]:
            assert ext["cs5"].endswith(location["country"])
        assert ext["cs1"].split(",") == alert["mitre"]
        assert ext["cs2"] == alert["tenant_id"]
        assert ext["cs4"] == alert["risk"]["level"]
        assert int(ext["cn1"]) == evidence.get("signin_count", len(alert["signin_ids"]))
        if alert["client"]["name"]:
            assert ext["cs3"].startswith(alert["client"]["name"])
        assert ext["request"] == alert["links"]["signin"]
        assert ext.get("flexString2", "") == alert["links"].get("user_page", "")
        assert ext["flexString1"].split(" | ") == alert["next_steps"]
        assert ext["cn2"] == alert["schema_version"]
        labels = {"cs1": "mitreTechniques", "cs2": "tenantId", "cs3": "clientApp"}
        labels |= {"cs4": "riskLevel", "cs5": "sourceLocation", "cn1": "signinCount"}
        labels |= {"cn2": "schemaVersion", "flexString1": "nextSteps", "flexString2": "userPage"}
        for key, label in labels.items():
            assert ext.get(f"{key}Label") == (label if key in ext else None), (key, text)


def test_cef_puts_only_ipv4_in_src() -> None:
    alert = ALERTS[0]
    assert parse_cef(to_cef(alert | {"ip": "203.0.113.9"}))[1]["src"] == "203.0.113.9"
    ipv6 = parse_cef(to_cef(alert | {"ip": "2001:db8::7"}))[1]
    assert "src" not in ipv6
    assert (ipv6["c6a2Label"], ipv6["c6a2"]) == ("sourceIPv6Address", "2001:db8::7")
    pseudonym = parse_cef(to_cef(alert | {"ip": "9f86d081884c7d65"}))[1]
    assert "src" not in pseudonym
    assert (pseudonym["cs6Label"], pseudonym["cs6"]) == ("sourceAddress", "9f86d081884c7d65")


@pytest.mark.parametrize("severity", sorted(CEF_SEVERITY))
def test_cef_severity_scale(severity: str) -> None:
    header, _ = parse_cef(to_cef(ALERTS[0] | {"severity": severity}))
    assert header[6] == CEF_SEVERITY[severity]


@settings(max_examples=200, deadline=None)
@given(rule=st.text(), title=st.text(), summary=st.text(), user=st.text())
def test_any_text_survives_cef(rule: str, title: str, summary: str, user: str) -> None:
    text = to_cef(ALERTS[0] | {"rule": rule, "title": title, "summary": summary, "user": user})
    assert "\n" not in text
    assert "\r" not in text
    header, ext = parse_cef(text)
    assert (header[4], header[5]) == (rule, title)
    assert ext.get("cat", "") == rule
    assert ext.get("msg", "") == summary
    assert ext.get("suser", "") == user


# --- OCSF --------------------------------------------------------------------------------


def undeclared(model: type[BaseModel], doc: dict[str, Any], path: str = "") -> list[str]:
    """Keys of ``doc`` that ``model`` (recursively) does not declare; free-form attributes
    (``dict``, ``object``) end the descent."""
    found = []
    for key, value in doc.items():
        field = model.model_fields.get(key)
        if field is None:
            found.append(path + key)
            continue
        nested = _model_in(field.annotation)
        for item in value if isinstance(value, list) else [value]:
            if nested is not None and isinstance(item, dict):
                found += undeclared(nested, item, f"{path}{key}.")
    return found


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        if (model := _model_in(arg)) is not None:
            return model
    return None


def assert_valid_ocsf(doc: dict[str, Any]) -> None:
    DetectionFinding.model_validate_json(orjson.dumps(doc), strict=True)
    assert undeclared(DetectionFinding, doc) == []
    for evidence in doc.get("evidences", []):
        location = evidence["data"].get("src_endpoint", {}).get("location")
        if location is not None:
            GeoLocation.model_validate_json(orjson.dumps(location), strict=True)
            assert undeclared(GeoLocation, location) == []
    assert not list(empty_values(doc, free_form={"data", "unmapped"}))


def empty_values(doc: Any, free_form: set[str], path: str = "") -> Iterator[str]:
    """Paths of nulls, empty strings and empty containers, outside free-form objects."""
    if doc is None or doc == "" or doc == [] or doc == {}:
        yield path
    elif isinstance(doc, dict):
        for key, value in doc.items():
            if key not in free_form:
                yield from empty_values(value, free_form, f"{path}.{key}")
    elif isinstance(doc, list):
        for value in doc:
            yield from empty_values(value, free_form, path)


def test_ocsf_is_a_valid_detection_finding() -> None:
    for alert in ALERTS:
        doc = to_ocsf(alert)
        assert_valid_ocsf(doc)
        assert doc["class_uid"] * 100 + doc["activity_id"] == doc["type_uid"] == 200401
        assert doc["category_uid"] == 2
        assert doc["metadata"]["version"] == OCSF_VERSION
        assert doc["metadata"]["product"]["version"] == VERSION
        assert doc["severity_id"] == OCSF_SEVERITY[alert["severity"]]
        assert doc["time"] == epoch_ms(alert["time"])
        info = doc["finding_info"]
        assert (info["uid"], info["title"], info["desc"]) == (
            alert["id"],
            alert["title"],
            alert["summary"],
        )
        assert info["created_time"] == epoch_ms(alert["detected_at"])
        assert info["analytic"]["uid"] == alert["rule"]
        attacked = [a.get("sub_technique", a["technique"])["uid"] for a in info["attacks"]]
        assert attacked == alert["mitre"]
        assert [e["uid"] for e in info.get("related_events", [])] == alert["signin_ids"]
        if alert["user"]:
            assert doc["resources"][0] == {
                "type": "user",
                "name": alert["user"],
                "uid": alert["user_id"],
            }
        if alert["ip"]:
            assert doc["evidences"][0]["data"]["src_endpoint"]["ip"] == alert["ip"]


def test_ocsf_password_spray_lists_its_targets_as_affected() -> None:
    (spray,) = [a for a in ALERTS if a["rule"] == "password-spray"]
    doc = to_ocsf(spray)
    assert [r["name"] for r in doc["resources"]] == spray["evidence"]["users"]
    assert doc["count"] == spray["evidence"]["signin_count"]


# --- ECS ---------------------------------------------------------------------------------


def ecs_leaves(doc: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in doc.items():
        assert "." not in key, f"dotted key {prefix}{key}: documents are nested"
        path = prefix + key
        if isinstance(value, dict) and value and path not in ECS_FIELDS:
            yield from ecs_leaves(value, path + ".")
        else:
            yield path, value


def compatible(kind: str, value: Any) -> bool:
    if kind in ("keyword", "match_only_text", "constant_keyword"):
        return isinstance(value, str) and value != ""
    if kind == "date":
        return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
    if kind == "ip":
        return isinstance(value, str) and bool(ipaddress.ip_address(value))
    if kind == "long":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "geo_point":
        return (
            isinstance(value, dict)
            and set(value) == {"lat", "lon"}
            and -90 <= value["lat"] <= 90
            and -180 <= value["lon"] <= 180
        )
    if kind == "flattened":
        return isinstance(value, dict) and value != {}
    raise AssertionError(f"type {kind} is not checked")


def assert_valid_ecs(doc: dict[str, Any]) -> None:
    for path, value in ecs_leaves(doc):
        assert path in ECS_FIELDS, f"{path} is not in {ECS_FIELDS_FILE.name}"
        kind = ECS_FIELDS[path]
        if isinstance(kind, list):
            assert isinstance(value, list) and value, (path, value)
            assert all(compatible(kind[0], v) for v in value), (path, value)
        else:
            assert compatible(kind, value), (path, kind, value)


def test_ecs_fields_have_their_declared_types() -> None:
    emitted: set[str] = set()
    for alert in ALERTS:
        doc = to_ecs(alert)
        assert_valid_ecs(doc)
        emitted.update(path for path, _ in ecs_leaves(doc))
    assert emitted == set(ECS_FIELDS), "the field list names fields the sample never emits"


def test_ecs_carries_the_alert() -> None:
    for alert in ALERTS:
        doc = to_ecs(alert)
        assert doc["@timestamp"] == alert["time"]
        assert doc["message"] == alert["summary"]
        assert doc["event"]["id"] == alert["id"]
        assert doc["event"]["created"] == alert["detected_at"]
        assert doc["event"]["kind"] == "alert"
        assert doc["event"]["severity"] == OCSF_SEVERITY[alert["severity"]]
        assert (doc["rule"]["id"], doc["rule"]["name"]) == (alert["rule"], alert["title"])
        properties = doc["azure"]["signinlogs"]["properties"]
        assert properties.get("id", []) == alert["signin_ids"]
        if "@" in alert["user"]:  # a workload's alert names the service principal
            assert f"{doc['user']['name']}@{doc['user']['domain']}" == alert["user"]
            assert properties["user_principal_name"] == alert["user"]
            assert alert["user"] in doc["related"]["user"]
        if alert["ip"]:
            assert doc["source"]["ip"] == doc["source"]["address"] == alert["ip"]
            assert alert["ip"] in doc["related"]["ip"]
        technique = doc["threat"]["technique"]
        assert sorted(technique["id"] + technique.get("subtechnique", {}).get("id", [])) == sorted(
            set(alert["mitre"]) | {t.split(".")[0] for t in alert["mitre"]}
        )
        user_agent = doc.get("user_agent", {}).get("original", "")
        assert user_agent == alert["evidence"].get("user_agent", "")


def test_ecs_impossible_travel_relates_both_addresses() -> None:
    (travel,) = [a for a in ALERTS if a["rule"] == "impossible-travel"]
    ends = [travel["evidence"]["from"]["ip"], travel["evidence"]["to"]["ip"]]
    assert set(to_ecs(travel)["related"]["ip"]) == {travel["ip"], *ends}


# --- privacy controls: missing fields and pseudonyms -------------------------------------


def test_alerts_reduced_to_the_kept_fields_still_format() -> None:
    for alert in ALERTS:
        bare = reduced(alert)
        header, ext = parse_cef(to_cef(bare))
        assert header[4:6] == [alert["rule"], alert["title"]]
        assert set(ext) == {"rt", "externalId", "cat"}
        assert_valid_ocsf(to_ocsf(bare))
        assert_valid_ecs(to_ecs(bare))


@settings(max_examples=200, deadline=None)
@given(alert=st.sampled_from(ALERTS), keep=st.sets(st.sampled_from(sorted(ALERT_FIELDS))))
def test_any_allow_list_still_formats(alert: dict[str, Any], keep: set[str]) -> None:
    subset = reduced(alert, keep)
    parse_cef(to_cef(subset))
    assert_valid_ocsf(to_ocsf(subset))
    assert_valid_ecs(to_ecs(subset))


def test_pseudonyms_pass_through() -> None:
    user, ip = "anon-5d41402abc4b2a76b9719d91", "anon-7d793037a0760186f5a1b2c3"  # privacy.py
    for alert in ALERTS:
        masked = alert | {"user": user, "ip": ip}
        ext = parse_cef(to_cef(masked))[1]
        assert (ext["suser"], ext["cs6"]) == (user, ip)
        assert "src" not in ext
        ecs = to_ecs(masked)
        assert_valid_ecs(ecs)
        assert ecs["user"]["name"] == user
        assert "domain" not in ecs["user"]
        assert ecs["source"]["address"] == ip
        assert "ip" not in ecs["source"]
        ocsf = to_ocsf(masked)
        assert_valid_ocsf(ocsf)
        assert ocsf["resources"][0]["name"] == user


def test_pseudonymised_alerts_stay_valid_and_quote_no_raw_value() -> None:
    """What a sink with ``pseudonymize: [user, ip]`` sends: the summary each format copies
    (CEF ``msg``, ECS ``message``, OCSF ``message``) names the address by its pseudonym."""
    for alert in ALERTS:
        masked = restrict(alert, None, ("user", "ip"), b"k" * 32)
        ext = parse_cef(to_cef(masked))[1]
        ecs, ocsf = to_ecs(masked), to_ocsf(masked)
        assert_valid_ecs(ecs)
        assert_valid_ocsf(ocsf)
        assert ext["msg"] == ecs["message"] == ocsf["message"] == masked["summary"]
        for raw in (alert["ip"], alert["user"], alert["user_id"]):
            if raw:
                assert raw not in ext["msg"]
        if alert["ip"]:
            assert (ext["cs6"], ecs["source"]["address"]) == (masked["ip"], masked["ip"])
            assert "src" not in ext


# --- dispatch ----------------------------------------------------------------------------


def test_line_and_document_dispatch() -> None:
    alert = ALERTS[0]
    assert line(alert, "cef") == to_cef(alert)
    assert orjson.loads(line(alert, "native")) == alert
    assert orjson.loads(line(alert, "ocsf")) == to_ocsf(alert)
    assert orjson.loads(line(alert, "ecs")) == to_ecs(alert)
    assert document(alert, "native") == alert
    assert document(alert, "ocsf") == to_ocsf(alert)
    assert document(alert, "ecs") == to_ecs(alert)
    for fmt in ("native", "ocsf", "ecs"):
        assert "\n" not in line(alert, fmt)
    with pytest.raises(ValueError, match="cef"):
        document(alert, "cef")
