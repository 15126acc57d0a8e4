"""Parser: delivery shapes, real-world quirks, and one reason code per kind of bad input."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from builders import TENANT, USER_ID, dumps, signin

from pipeline.core.parse import ParseError, normalize, parse_event, parse_file
from pipeline.core.records import (
    UNKNOWN_ERROR_CODE,
    AuthStep,
    Category,
    Device,
    Location,
    RiskEvent,
    SignIn,
)
from pipeline.core.shapes import SHAPES


def only_signin(data: bytes) -> SignIn:
    parsed = parse_event(data)
    assert not parsed.rejected, parsed.rejected
    assert len(parsed.records) == 1
    record = parsed.records[0]
    assert isinstance(record, SignIn)
    return record


def test_normalizes_the_fields_rules_need() -> None:
    s = only_signin(dumps(signin()))
    assert s.id == "5e0f1c2d-3b4a-4c5d-8e9f-0a1b2c3d4e5f"
    assert s.time == datetime(2026, 1, 15, 10, 0, 0, 123456, tzinfo=UTC)
    assert s.category is Category.SIGNIN
    assert (s.tenant_id, s.user_id, s.upn) == (TENANT, USER_ID, "adele@contoso.com")
    assert s.location.city == "Seattle" and s.location.lat == 47.6
    assert s.device.compliant is True and s.device.trust_type == "Azure AD joined"
    assert s.ca_policies[0].name == "Require MFA" and s.ca_policies[0].result == "success"
    assert s.succeeded and s.interactive


def test_envelope_array_and_json_lines_are_all_accepted() -> None:
    one = signin()
    two = signin({"id": "b2"})
    envelope = dumps({"records": [one, two]})
    assert len(parse_event(envelope).records) == 2
    assert len(parse_event(dumps([one, two])).records) == 2
    lines = dumps(one) + b"\n" + envelope + b"\n\n"
    assert len(parse_event(lines).records) == 3


def test_graph_api_shapes_without_envelope() -> None:
    graph = dict(signin()["properties"])
    graph["signInEventTypes"] = ["nonInteractiveUser"]
    s = only_signin(dumps(graph))
    assert s.category is Category.NON_INTERACTIVE and not s.interactive
    listing = {"@odata.context": "https://graph/$metadata#auditLogs/signIns", "value": [graph]}
    assert len(parse_event(dumps(listing)).records) == 1
    detection = {
        "id": "d1",
        "riskEventType": "unfamiliarFeatures",
        "riskLevel": "medium",
        "riskState": "atRisk",
        "detectedDateTime": "2026-01-15T10:05:00Z",
        "userId": USER_ID,
        "requestId": s.id,
    }
    event = normalize(detection)
    assert isinstance(event, RiskEvent) and event.category is Category.USER_RISK_EVENTS
    assert event.request_id == s.id


def test_one_bad_record_never_loses_its_neighbours() -> None:
    bad = signin()
    del bad["properties"]["id"]
    parsed = parse_event(dumps({"records": [signin({"id": "a"}), bad, 42, signin({"id": "b"})]}))
    assert [r.id for r in parsed.records] == ["a", "b"]
    assert [(r.reason, r.field) for r in parsed.rejected] == [
        ("missing-field", "properties.id"),
        ("not-an-object", ""),
    ]
    assert orjson.loads(parsed.rejected[0].raw)["category"] == "SignInLogs"


def test_a_bad_json_line_keeps_the_other_lines() -> None:
    data = dumps(signin({"id": "a"})) + b"\n{not json\n" + dumps(signin({"id": "b"}))
    parsed = parse_file(data)
    assert [r.id for r in parsed.records] == ["a", "b"]
    assert [(r.reason, r.line) for r in parsed.rejected] == [("invalid-json", 2)]


@pytest.mark.parametrize(
    ("data", "reason", "field"),
    [
        (b"{not json", "invalid-json", ""),
        (b'{"records": [\xff\xfe]}', "invalid-utf8", ""),
        (b"42", "not-an-object", ""),
        (b'{"records": {"a": 1}}', "bad-type", "records"),
        (dumps(signin({"id": None})), "missing-field", "properties.id"),
        (dumps(signin({"id": 17})), "bad-type", "properties.id"),
        (dumps(signin({"createdDateTime": 1700000000})), "bad-type", "properties.createdDateTime"),
        (dumps(signin({"createdDateTime": "tomorrow"})), "bad-value", "properties.createdDateTime"),
        (
            dumps(signin({"status": {"errorCode": "n/a"}})),
            "bad-type",
            "properties.status.errorCode",
        ),
        (dumps(signin(envelope={"category": "AuditLogs"})), "unsupported-category", "category"),
        (
            dumps({"category": "SignInLogs", "time": "2026-01-15T10:00:00Z"}),
            "missing-field",
            "properties",
        ),
        (dumps({**signin(), "properties": "x"}), "bad-type", "properties"),
        (dumps({"hello": "world"}), "unrecognised-shape", ""),
    ],
)
def test_each_kind_of_bad_input_has_its_reason_and_field(
    data: bytes, reason: str, field: str
) -> None:
    parsed = parse_event(data)
    assert parsed.records == []
    assert [(r.reason, r.field) for r in parsed.rejected] == [(reason, field)]


def test_oversized_event_is_rejected_without_parsing() -> None:
    data = dumps({"records": [signin()]})
    parsed = parse_event(data, max_bytes=len(data) - 1)
    assert parsed.records == [] and parsed.rejected[0].reason == "too-large"
    assert parsed.rejected[0].raw == data
    assert len(parse_event(data, max_bytes=len(data)).records) == 1


def test_parse_error_message_names_reason_field_and_record() -> None:
    with pytest.raises(ParseError) as info:
        normalize(signin({"createdDateTime": "soon"}))
    assert str(info.value).startswith("bad-value at properties.createdDateTime (record 5e0f1c2d")


# Real-world quirks, each reproduced from what public exports contain.


def test_result_type_string_and_status_int_agree_or_status_wins() -> None:
    s = only_signin(dumps(signin({"status": {"errorCode": 50126}}, {"resultType": "50126"})))
    assert s.error_code == 50126 and not s.succeeded
    s = only_signin(dumps(signin({"status": None}, {"resultType": "50140"})))
    assert s.error_code == 50140
    s = only_signin(dumps(signin({"status": None}, {"resultType": "Failure"})))
    assert s.error_code == UNKNOWN_ERROR_CODE and not s.succeeded
    s = only_signin(dumps(signin({"status": {"errorCode": "0"}})))
    assert s.succeeded


def test_level_and_duration_as_strings_do_not_matter() -> None:
    only_signin(dumps(signin(envelope={"Level": "4", "durationMs": "0"})))
    only_signin(dumps(signin(envelope={"level": "Informational", "durationMs": 12})))


def test_envelope_location_is_a_country_or_a_region() -> None:
    s = only_signin(dumps(signin({"location": None}, {"location": "fr"})))
    assert s.location.country == "FR" and s.location.lat is None
    s = only_signin(dumps(signin({"location": None}, {"location": "weu"})))
    assert s.location.country == ""
    s = only_signin(
        dumps(
            signin(
                {
                    "location": {
                        "city": "",
                        "state": "",
                        "countryOrRegion": "",
                        "geoCoordinates": {"latitude": 0.0, "longitude": 0.0},
                    }
                }
            )
        )
    )
    assert s.location.lat is None and s.location.lon is None


@pytest.mark.parametrize("empty", [None, {}, [], ""])
def test_missing_null_and_empty_optional_fields_read_alike(empty: object) -> None:
    props = {
        "deviceDetail": empty,
        "clientAppUsed": empty,
        "userAgent": empty,
        "appDisplayName": empty,
        "riskEventTypes": empty,
        "riskEventTypes_v2": empty,
        "appliedConditionalAccessPolicies": empty,
        "authenticationDetails": empty,
    }
    s = only_signin(dumps(signin(props)))
    assert s.device.os == "" and s.client_app_used == "" and s.user_agent == ""
    assert s.risk_event_types == () and s.ca_policies == ()


def test_service_principal_without_user_or_identity() -> None:
    record = signin(
        {
            "userId": None,
            "userPrincipalName": None,
            "servicePrincipalId": "8C1A2B3D-4E5F-4A6B-9C8D-7E6F5A4B3C2D",
            "servicePrincipalName": "backup-job",
        },
        {"category": "ServicePrincipalSignInLogs"},
    )
    del record["identity"]
    s = only_signin(dumps(record))
    assert s.user_id == "" and s.is_workload
    assert s.subject_id == "8c1a2b3d-4e5f-4a6b-9c8d-7e6f5a4b3c2d"


def test_category_decides_interactive_not_the_flag() -> None:
    s = only_signin(
        dumps(signin({"isInteractive": True}, {"category": "NonInteractiveUserSignInLogs"}))
    )
    assert not s.interactive
    s = only_signin(dumps(signin({"isInteractive": False})))
    assert s.interactive


def test_guid_upn_is_kept_as_given() -> None:
    s = only_signin(dumps(signin({"userPrincipalName": USER_ID})))
    assert s.upn == USER_ID


def test_pascal_and_lowercase_top_level_keys() -> None:
    pascal = {k[0].upper() + k[1:]: v for k, v in signin().items() if k != "properties"}
    pascal["Properties"] = signin()["properties"]
    assert only_signin(dumps(pascal)).tenant_id == TENANT
    lower = {k.lower(): v for k, v in signin().items()}
    s = only_signin(dumps(lower))
    assert s.category is Category.SIGNIN and s.tenant_id == TENANT


def test_tenant_only_inside_resource_id() -> None:
    record = signin()
    del record["tenantId"]
    assert only_signin(dumps(record)).tenant_id == TENANT


def test_time_falls_back_to_envelope_and_accepts_odd_forms() -> None:
    s = only_signin(dumps(signin({"createdDateTime": None}, {"time": "11/14/2025 1:48:53 AM"})))
    assert s.time == datetime(2025, 11, 14, 1, 48, 53, tzinfo=UTC)
    s = only_signin(dumps(signin({"createdDateTime": "2019-10-18T04:45:48.0729893-05:00"})))
    assert s.time == datetime(2019, 10, 18, 9, 45, 48, 72989, tzinfo=UTC)


def test_same_signin_twice_parses_twice_for_detect_to_dedup() -> None:
    record = signin()
    assert len(parse_event(dumps({"records": [record, record]})).records) == 2


def test_json_inside_strings_is_decoded_where_used() -> None:
    event = normalize(
        {
            "time": "8/22/2022 6:07:16 PM",
            "category": "UserRiskEvents",
            "properties": {
                "id": "ab" * 32,
                "requestId": "r1",
                "riskEventType": "anonymizedIPAddress",
                "riskLevel": "high",
                "riskState": "atRisk",
                "userId": USER_ID,
                "detectedDateTime": "2022-09-09T8:48:50.361Z",
                "additionalInfo": '[{"Key":"userAgent","Value":"Firefox/91.0"}]',
            },
        }
    )
    assert isinstance(event, RiskEvent)
    assert event.additional_info == (("userAgent", "Firefox/91.0"),)
    assert event.time == datetime(2022, 9, 9, 8, 48, 50, 361000, tzinfo=UTC)
    processing = [{"key": "Oauth Scope Info", "value": '["User.Read"]'}]
    only_signin(dumps(signin({"authenticationProcessingDetails": processing})))


def test_risky_users_row_is_keyed_by_the_user() -> None:
    event = normalize(
        {
            "time": "9/9/2022 9:59:27 AM",
            "category": "RiskyUsers",
            "location": "neu",
            "properties": {
                "id": USER_ID,
                "riskLevel": "High",
                "riskState": "atRisk",
                "riskLastUpdatedDateTime": "2022-09-09T9:59:27.958Z",
            },
        }
    )
    assert isinstance(event, RiskEvent)
    assert event.user_id == USER_ID and event.level == "high" and event.location.country == ""


def test_large_records_and_mixed_categories_in_one_envelope() -> None:
    policies = [
        {
            "id": f"{i:08d}-0000-4000-8000-000000000000",
            "displayName": f"Policy {i} \u2013 \u00fc",
            "enforcedGrantControls": ["Mfa", "RequireApprovedApp"],
            "enforcedSessionControls": [],
            "result": "success" if i % 2 else "notApplied",
        }
        for i in range(80)
    ]
    big = signin({"appliedConditionalAccessPolicies": policies})
    assert len(dumps(big)) > 10_000
    risky = {
        "time": "2026-01-15T09:00:00Z",
        "category": "RiskyUsers",
        "properties": {"id": USER_ID, "riskLevel": "low", "riskState": "atRisk"},
    }
    parsed = parse_event(
        dumps({"records": [big, risky, signin({"id": "x"}, {"category": "ADFSSignInLogs"})]})
    )
    assert [r.category.value for r in parsed.records] == [
        "SignInLogs",
        "RiskyUsers",
        "ADFSSignInLogs",
    ]
    first = parsed.records[0]
    assert isinstance(first, SignIn) and len(first.ca_policies) == 40


def test_every_field_lands_in_its_place() -> None:
    """Each source field has a distinct value, so a swapped field cannot pass unnoticed."""
    texts = {
        "userId": "uid",
        "userPrincipalName": "upn@x",
        "userDisplayName": "Display",
        "appId": "APPID",
        "appDisplayName": "AppName",
        "resourceId": "RESID",
        "resourceDisplayName": "ResName",
        "clientAppUsed": "ClientApp",
        "userAgent": "Agent/1",
        "ipAddress": "192.0.2.9",
        "conditionalAccessStatus": "caStatus",
        "riskLevelDuringSignIn": "LOW",
        "riskLevelAggregated": "HIGH",
        "riskState": "riskState",
        "riskDetail": "riskDetail",
        "authenticationRequirement": "authReq",
        "servicePrincipalId": "SPID",
        "servicePrincipalName": "spName",
        "correlationId": "corr",
        "riskEventTypes_v2": ["typeA"],
        "status": {
            "errorCode": 50126,
            "failureReason": "bad password",
            "additionalDetails": "details",
        },
        "authenticationProtocol": "deviceCode",
        "originalTransferMethod": "deviceCodeFlow",
        "incomingTokenType": "primaryRefreshToken",
        "sessionId": "sess",
        "userType": "member",
        "autonomousSystemNumber": 14061,
        "crossTenantAccessType": "b2bCollaboration",
        "homeTenantId": "HOME",
        "resourceTenantId": "RES-TENANT",
        "servicePrincipalCredentialKeyId": "keyid",
        "tokenProtectionStatusDetails": {"signInSessionStatus": "unbound"},
        "authenticationDetails": [
            {
                "authenticationMethod": "Password",
                "succeeded": False,
                "authenticationStepResultDetail": "Invalid password",
                "authenticationStepRequirement": "Primary authentication",
            }
        ],
    }
    s = only_signin(dumps(signin(texts)))
    assert s._asdict() | {"location": None, "device": None, "time": None} == {
        "id": "5e0f1c2d-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
        "time": None,
        "category": Category.SIGNIN,
        "tenant_id": TENANT,
        "user_id": "uid",
        "upn": "upn@x",
        "display_name": "Display",
        "app_id": "appid",
        "app_name": "AppName",
        "resource_id": "resid",
        "resource_name": "ResName",
        "client_app_used": "ClientApp",
        "user_agent": "Agent/1",
        "ip": "192.0.2.9",
        "location": None,
        "device": None,
        "error_code": 50126,
        "failure_reason": "bad password",
        "ca_status": "caStatus",
        "ca_policies": s.ca_policies,
        "risk_during": "low",
        "risk_aggregated": "high",
        "risk_state": "riskState",
        "risk_detail": "riskDetail",
        "risk_event_types": ("typeA",),
        "interactive": True,
        "auth_requirement": "authReq",
        "auth_steps": (AuthStep("Password", False, "Invalid password", "Primary authentication"),),
        "sp_id": "spid",
        "sp_name": "spName",
        "correlation_id": "corr",
        "auth_protocol": "deviceCode",
        "original_transfer_method": "deviceCodeFlow",
        "incoming_token_type": "primaryRefreshToken",
        "session_id": "sess",
        "user_type": "member",
        "asn": 14061,
        "additional_details": "details",
        "cross_tenant_access_type": "b2bCollaboration",
        "home_tenant_id": "home",
        "resource_tenant_id": "res-tenant",
        "sp_credential_key_id": "keyid",
        "token_session_status": "unbound",
    }
    assert s.device == Device("", "Windows 10", "Edge 131.0", True, True, "Azure AD joined")
    assert s.location == Location("US", "Washington", "Seattle", 47.6, -122.3)


def test_input_shapes_are_the_modules_of_pipeline_shapes_in_order() -> None:
    assert [shape.read.__module__ for shape in SHAPES] == [
        "pipeline.core.shapes.loganalytics",
        "pipeline.core.shapes.diagnostic",
        "pipeline.core.shapes.graph",
    ]
