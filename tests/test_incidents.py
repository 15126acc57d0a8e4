"""Incidents per entity: grouping, window, escalation, ids, bounds, formats and privacy."""

from __future__ import annotations

import io
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from cef import parse_cef
from test_cli import SAMPLE, alerts_of, run
from test_formats import assert_valid_ecs, assert_valid_ocsf

from pipeline.alerts.formats import document, line
from pipeline.alerts.privacy import restrict
from pipeline.core.incidents import (
    IP_KEYED,
    MAX_ALERTS,
    IncidentPolicy,
    States,
    Tracker,
    entity,
    incident_id,
    is_incident,
    step,
    track,
)
from pipeline.core.policy import Policy, PolicyError, policy_from_data
from pipeline.core.scan import scan
from pipeline.core.timeparse import format_time
from pipeline.sinks.webhook import slack_message, teams_message

START = datetime(2026, 3, 2, 8, tzinfo=UTC)
USER = "5b8c0d1e-2f3a-4b5c-9d6e-7f8091a2b3c4"


def alert(
    rule: str, minute: float, signins: tuple[str, ...], severity: str = "medium", **more: Any
) -> dict[str, Any]:
    """An alert as on the alerts topic, at ``minute`` past 2026-03-02T08:00Z."""
    return {
        "id": f"{rule}-{minute}-{'-'.join(signins)}",
        "rule": rule,
        "severity": severity,
        "time": format_time(START + timedelta(minutes=minute)),
        "title": rule,
        "summary": f"{rule} for dana@contoso.com from 203.0.113.9",
        "tenant_id": "t",
        "user": "dana@contoso.com",
        "user_id": USER,
        "ip": "203.0.113.9",
        "location": {"country": "NL"},
        "client": {"name": "Chrome", "version": ""},
        "signin_ids": list(signins),
        "mitre": ["T1078.004"],
        "evidence": {},
    } | more


def run_alerts(alerts: list[dict[str, Any]], policy: IncidentPolicy | None = None) -> Tracker:
    tracker = Tracker(policy or IncidentPolicy())
    for a in alerts:
        tracker.add(a)
    return tracker


def only(tracker: Tracker) -> dict[str, Any]:
    (incident,) = tracker.incidents.values()
    return incident


def test_a_brute_force_then_a_risky_signin_is_one_incident_raised_a_step() -> None:
    incident = only(
        run_alerts(
            [
                alert("brute-force", 0, ("f1", "f2", "ok"), "high"),
                alert("risky-signin", 40, ("s2",), "medium"),
            ]
        )
    )
    assert incident["rules"] == ["brute-force", "risky-signin"]
    assert incident["alert_count"] == 2
    assert incident["severity"] == "critical"  # high, one step up
    assert incident["escalation"] == [IncidentPolicy().escalate[0].why]
    assert "brute-force then risky-signin" in incident["summary"]
    assert "raised to critical" in incident["summary"]


def test_alerts_on_one_signin_never_escalate_each_other() -> None:
    # The brute force's success is the very sign-in the risky-signin alert is about.
    incident = only(
        run_alerts(
            [
                alert("brute-force", 0, ("f1", "f2", "ok"), "high"),
                alert("risky-signin", 7, ("ok",), "medium"),
            ]
        )
    )
    assert incident["escalation"] == []
    assert incident["severity"] == "high"


def test_only_combinations_in_the_table_escalate_and_only_one_step() -> None:
    alerts = [
        alert("legacy-auth", 0, ("a",)),
        alert("outdated-outlook-mobile", 5, ("b",), "low"),
    ]
    assert only(run_alerts(alerts))["severity"] == "medium"
    table = IncidentPolicy.model_validate(
        {
            "escalate": [
                {"first": ["legacy-auth"], "then": ["outdated-outlook-mobile"], "why": "one"},
                {"first": ["legacy-auth"], "then": ["*"], "why": "two"},
            ]
        }
    )
    incident = only(run_alerts(alerts, table))
    assert incident["escalation"] == ["one", "two"]
    assert incident["severity"] == "high"  # medium + 1, however many combinations
    reversed_order = only(run_alerts(list(reversed(alerts)), table))
    assert reversed_order["severity"] == "high", "the order of arrival does not matter"
    swapped = [alert("outdated-outlook-mobile", 0, ("b",), "low"), alert("legacy-auth", 5, ("a",))]
    assert only(run_alerts(swapped, table))["escalation"] == [], "event time orders a combination"


def test_the_incident_closes_after_the_window_and_the_next_opens_with_its_own_id() -> None:
    tracker = run_alerts(
        [
            alert("legacy-auth", 0, ("a",)),
            alert("legacy-auth", 23 * 60, ("b",)),
            alert("legacy-auth", 23 * 60 + 24 * 60 + 1, ("c",)),
        ]
    )
    first, second = tracker.incidents.values()
    assert first["alert_count"] == 2 and second["alert_count"] == 1
    assert first["id"] == incident_id("user", USER, "legacy-auth-0-a")
    assert second["id"] == incident_id("user", USER, "legacy-auth-2821-c")
    short = IncidentPolicy(window_hours=1)
    assert (
        len(
            run_alerts(
                [alert("legacy-auth", 0, ("a",)), alert("legacy-auth", 61, ("b",))], short
            ).incidents
        )
        == 2
    )


def test_ip_keyed_alerts_group_by_address_and_never_join_a_users_incident() -> None:
    spray = alert("password-spray", 0, ("x", "y"), user="", user_id="")
    spray["evidence"] = {"users": ["a@contoso.com", "b@contoso.com"]}
    assert entity(spray) == ("ip", "203.0.113.9")
    tracker = run_alerts([spray, alert("legacy-auth", 1, ("z",))])
    by_kind = {i["kind"]: i for i in tracker.incidents.values()}
    assert set(by_kind) == {"ip", "user"}
    assert by_kind["ip"]["ip"] == "203.0.113.9"
    assert by_kind["ip"]["entities"]["users"] == ["a@contoso.com", "b@contoso.com"]


def test_a_redelivered_alert_changes_nothing_and_a_new_version_updates_it() -> None:
    policy = IncidentPolicy()
    first = alert("mfa-fatigue", 0, ("p1",), "medium")
    state, changed = step(None, first, policy)
    assert changed
    again, changed = step(state, first, policy)
    assert not changed and again == state
    raised, changed = step(state, first | {"severity": "high", "signin_ids": ["p1", "p2"]}, policy)
    assert changed and raised["count"] == 1
    assert raised["peak"] == "high"
    assert state["peak"] == "medium", "the step leaves the state it was given alone"


def test_state_stays_bounded_and_json_ready() -> None:
    tracker = run_alerts([alert("legacy-auth", m, (f"s{m}",)) for m in range(500)])
    (state,) = tracker.states.values()
    assert len(state["alerts"]) == MAX_ALERTS
    assert state["count"] == 500
    assert orjson.loads(orjson.dumps(state)) == state
    assert len(orjson.dumps(state)) < 8_000


def test_the_escalation_table_is_validated_with_the_policy() -> None:
    with pytest.raises(PolicyError, match=r"incidents\.escalate\.0\.first.*unknown rule id"):
        policy_from_data(
            {"incidents": {"escalate": [{"first": ["no-such-rule"], "then": ["*"], "why": "x"}]}}
        )
    policy = policy_from_data({"incidents": {"window_hours": 6}})
    assert policy.incidents.window_hours == 6
    assert policy.effective()["incidents"]["window_hours"] == 6


def _sample_incidents() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    out, incidents = io.BytesIO(), io.BytesIO()
    scan([(SAMPLE.name, SAMPLE.read_bytes())], Policy(), out, incidents=incidents)
    return (
        [orjson.loads(x) for x in out.getvalue().splitlines()],
        [orjson.loads(x) for x in incidents.getvalue().splitlines()],
    )


ALERTS, INCIDENTS = _sample_incidents()


def test_every_sample_alert_belongs_to_one_incident_of_its_entity() -> None:
    by_id = {i["id"]: i for i in INCIDENTS}
    for a in ALERTS:
        incident = by_id[a["incident_id"]]
        if a["rule"] in IP_KEYED:  # password spray, disabled-account attempts
            assert (incident["kind"], incident["ip"]) == ("ip", a["ip"])
        else:
            assert (incident["kind"], incident["user_id"]) == ("user", a["user_id"])
    assert sum(i["alert_count"] for i in INCIDENTS) == len(ALERTS)
    assert len(INCIDENTS) == len({(i["kind"], i["user_id"] or i["ip"]) for i in INCIDENTS})


def test_samsung_email_over_imap_is_one_incident_not_an_escalation() -> None:
    (grace,) = [i for i in INCIDENTS if i["user"] == "grace.kim@contoso.com"]
    assert set(grace["rules"]) == {"legacy-auth", "unapproved-mobile-client"}
    assert grace["escalation"] == []  # both rules saw the same sign-ins
    assert grace["severity"] == max(
        (a["severity"] for a in ALERTS if a["incident_id"] == grace["id"]),
        key=["informational", "low", "medium", "high", "critical"].index,
    )


def test_incident_ids_do_not_depend_on_the_input_order_or_a_redelivery() -> None:
    lines = SAMPLE.read_bytes().splitlines()
    out, incidents = io.BytesIO(), io.BytesIO()
    shuffled = b"\n".join(reversed(lines)) + b"\n" + lines[3] + b"\n"
    scan([("x", shuffled)], Policy(), out, incidents=incidents)
    again = [orjson.loads(x) for x in incidents.getvalue().splitlines()]
    assert {i["id"]: i["alert_count"] for i in again} == {
        i["id"]: i["alert_count"] for i in INCIDENTS
    }


def test_incident_formats_are_valid_and_relate_their_alerts() -> None:
    for incident in INCIDENTS:
        assert is_incident(incident) and not any(is_incident(a) for a in ALERTS)
        ocsf = document(incident, "ocsf")
        assert_valid_ocsf(ocsf)
        assert ocsf["finding_info"]["uid"] == incident["id"]
        assert ocsf["finding_info"]["analytic"]["uid"] == "incident"
        related = ocsf["finding_info"]["related_events"]
        assert [e["uid"] for e in related] == incident["alert_ids"]
        assert {e["type_uid"] for e in related} == {200401}
        assert ocsf["count"] == incident["alert_count"]
        ecs = document(incident, "ecs")
        assert_valid_ecs(ecs)
        assert ecs["rule"]["id"] == "incident" and ecs["event"]["id"] == incident["id"]
        if incident["kind"] == "ip":
            assert set(incident["entities"]["users"]) <= set(ecs["related"]["user"])
        header, ext = parse_cef(line(incident, "cef"))
        assert header[4] == "incident"
        assert ext["externalId"] == incident["id"]
        assert (ext["cn2Label"], ext["cn2"]) == ("alertCount", str(incident["alert_count"]))
        assert ext["msg"] == incident["summary"]


def test_pseudonymised_incidents_quote_no_user_or_address() -> None:
    for incident in INCIDENTS:
        masked = restrict(incident, None, ("user", "ip"), b"k")
        raw = {incident["user"], incident["user_id"], incident["ip"]}
        raw |= set(incident["entities"]["users"]) | set(incident["entities"]["ips"])
        for text in (orjson.dumps(masked).decode(), line(masked, "cef"), line(masked, "ocsf")):
            assert not [v for v in raw if v and v in text]


def test_scan_incidents_option_writes_a_private_file(tmp_path: Path) -> None:
    target = tmp_path / "incidents.jsonl"
    old = os.umask(0)
    try:
        result = run("scan", "--incidents", str(target))
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr.decode()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    written = [orjson.loads(x) for x in target.read_bytes().splitlines()]
    assert written == INCIDENTS
    assert [a["incident_id"] for a in alerts_of(result)] == [a["incident_id"] for a in ALERTS]
    plain = run("scan")
    assert all("incident_id" not in a for a in alerts_of(plain))


def test_chat_sinks_take_an_incident_as_they_take_an_alert() -> None:
    for incident in INCIDENTS:
        teams = orjson.dumps(teams_message(incident)).decode()
        slack = orjson.dumps(slack_message(incident)).decode()
        assert incident["title"] in teams and incident["title"][:140] in slack


def test_track_keeps_an_incident_with_its_entitys_state() -> None:
    """The worker's call: a user's incident in the users' state, a spray's in the addresses'."""
    users, addresses = States(), States()
    spray = alert("password-spray", 0, ("x",), user="", user_id="")
    first_id, version = track(users, addresses, alert("legacy-auth", 0, ("a",)), IncidentPolicy())
    assert version is not None and version["id"] == first_id
    spray_id, _ = track(users, addresses, spray, IncidentPolicy())
    assert set(users) == {USER} and set(addresses) == {"203.0.113.9"}
    assert users[USER]["id"] == first_id and addresses["203.0.113.9"]["id"] == spray_id
    again = track(users, addresses, alert("legacy-auth", 0, ("a",)), IncidentPolicy())
    assert again == (first_id, None), "a redelivery sends no new version"
