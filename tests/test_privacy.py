"""Pseudonymisation leaves no raw user or address anywhere a sink can see.

The alerts are the bundled sample's, raised by the real rules; each is restricted the way
the forwarder does for a sink with ``pseudonymize: [user, ip]`` and then rendered in every
format and chat template, and the bytes are searched for the values the alert held.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import dumps, risk_record

from pipeline.alerts.formats import line
from pipeline.alerts.privacy import kind_of, pseudonym, restrict
from pipeline.core.policy import Policy
from pipeline.core.scan import scan
from pipeline.sinks import Format
from pipeline.sinks.webhook import slack_message, teams_message

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"
KEY = b"k" * 32
BOTH: tuple[Any, ...] = ("user", "ip")
FORMATS: tuple[Format, ...] = ("native", "cef", "ocsf", "ecs")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")


def _scan_sample() -> list[dict[str, Any]]:
    """The sample's alerts, and one of a detection whose sign-in is not in the input: its
    summary quotes the address the detection itself carries."""
    orphan = risk_record({"requestId": "not-in-the-input"}, "2026-01-15T10:00:00Z")
    out = io.BytesIO()
    scan([(SAMPLE.name, SAMPLE.read_bytes()), ("orphan", dumps(orphan))], Policy(), out)
    return [orjson.loads(raw) for raw in out.getvalue().splitlines()]


ALERTS = _scan_sample()


def by_rule(rule: str, **match: Any) -> dict[str, Any]:
    return next(
        a
        for a in ALERTS
        if a["rule"] == rule and all(a["evidence"].get(k) == v for k, v in match.items())
    )


def renderings(alert: dict[str, Any]) -> Iterator[tuple[str, bytes]]:
    for fmt in FORMATS:
        yield fmt, line(alert, fmt).encode()
    yield "teams", orjson.dumps(teams_message(alert))
    yield "slack", orjson.dumps(slack_message(alert))


def private_values(alert: dict[str, Any]) -> set[str]:
    """Users and addresses as the rules record them, listed here by hand rather than
    through privacy.py, so a field it forgets shows up as a leak."""
    evidence = alert["evidence"]
    values = {alert["user"], alert["user_id"], alert["ip"], *evidence.get("users", ())}
    values |= {evidence[end]["ip"] for end in ("from", "to") if end in evidence}
    return {v for v in values if v}


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def test_the_sample_has_raw_values_in_free_text() -> None:
    """The leak this guards against: summaries and evidence repeat users and addresses."""
    travel = by_rule("risk-detection", joined_signin=True)
    assert travel["ip"] in travel["summary"]
    risky_user = by_rule("risk-detection", category="RiskyUsers")
    assert risky_user["evidence"]["detection_id"] == risky_user["user_id"]


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: f"{a['rule']}-{a['id'][:8]}")
def test_no_raw_user_or_address_in_any_format(alert: dict[str, Any]) -> None:
    secret = private_values(alert)
    restricted = restrict(alert, None, BOTH, KEY)
    for name, rendered in renderings(restricted):
        text = rendered.decode().casefold()
        leaked = sorted(v for v in secret if v.casefold() in text)
        assert not leaked, f"{name}: {leaked}"
        # no address at all outside the user agent (browser versions look like one)
        agent = restricted["evidence"].get("user_agent", "")
        assert not [a for a in IPV4.findall(text) if a not in agent], name


@pytest.mark.parametrize(
    ("rule", "match"),
    [
        ("risk-detection", {"joined_signin": True}),
        ("risk-detection", {"joined_signin": False, "category": "UserRiskEvents"}),
        ("password-spray", {}),
        ("brute-force", {}),
    ],
)
def test_the_summary_names_the_address_by_its_field_pseudonym(
    rule: str, match: dict[str, Any]
) -> None:
    alert = by_rule(rule, **match)
    restricted = restrict(alert, None, BOTH, KEY)
    assert restricted["ip"] == pseudonym(KEY, alert["ip"])
    assert restricted["summary"] == alert["summary"].replace(alert["ip"], restricted["ip"])
    for fmt in FORMATS:
        assert restricted["ip"] in line(restricted, fmt)


def test_evidence_values_get_the_pseudonym_of_their_field() -> None:
    risky_user = by_rule("risk-detection", category="RiskyUsers")
    restricted = restrict(risky_user, None, BOTH, KEY)
    assert restricted["evidence"]["detection_id"] == restricted["user_id"]
    assert restricted["user_id"] == pseudonym(KEY, risky_user["user_id"])

    travel = by_rule("impossible-travel")
    restricted = restrict(travel, None, BOTH, KEY)
    assert restricted["evidence"]["to"]["ip"] == restricted["ip"]
    assert restricted["evidence"]["from"]["ip"] == pseudonym(KEY, travel["evidence"]["from"]["ip"])

    spray = by_rule("password-spray")
    restricted = restrict(spray, None, BOTH, KEY)
    assert restricted["evidence"]["users"] == [
        pseudonym(KEY, u) for u in spray["evidence"]["users"]
    ]


def test_a_field_left_out_by_the_allow_list_is_still_hidden_where_it_is_quoted() -> None:
    joined = by_rule("risk-detection", joined_signin=True)
    restricted = restrict(joined, frozenset({"summary"}), BOTH, KEY)
    assert "ip" not in restricted
    assert joined["ip"] not in restricted["summary"]
    assert pseudonym(KEY, joined["ip"]) in restricted["summary"]

    risky_user = by_rule("risk-detection", category="RiskyUsers")
    restricted = restrict(risky_user, frozenset({"evidence"}), ("user",), KEY)
    assert restricted["evidence"]["detection_id"] == pseudonym(KEY, risky_user["user_id"])


def _with_people(alert: dict[str, Any]) -> dict[str, Any]:
    """A real alert whose evidence also names the user the ways a rule could."""
    upn = alert["user"]
    return alert | {
        "title": f"{alert['title']} for Quinn Harper",
        "summary": f"{alert['summary']}; {upn.upper()} (Quinn Harper) also from 192.0.2.201",
        "evidence": alert["evidence"]
        | {
            "display_name": "Quinn Harper",
            "targets": [{"userPrincipalName": upn, "userDisplayName": "Quinn Harper"}],
            "note": f"see user {alert['user_id']} and fe80::1ff:fe23:4567:890a",
            "user_agent": "Mozilla/5.0 Chrome/131.0.0.0 Safari/537.36",
            "app_display_name": "Office 365 Exchange Online",
            "first": "2026-11-20T13:00:02.434253Z",
        },
    }


def test_display_names_case_variants_and_unlisted_addresses_are_hidden() -> None:
    alert = _with_people(by_rule("risk-detection", joined_signin=True))
    restricted = restrict(alert, None, BOTH, KEY)
    name = pseudonym(KEY, "Quinn Harper")
    assert restricted["evidence"]["display_name"] == name
    target = restricted["evidence"]["targets"][0]
    assert target == {"userPrincipalName": restricted["user"], "userDisplayName": name}
    assert restricted["title"].endswith(f" for {name}")
    # the upper-cased UPN is the same person: the same pseudonym as the user field
    assert (
        f"; {restricted['user']} ({name}) also from {pseudonym(KEY, '192.0.2.201')}"
        in restricted["summary"]
    )
    assert restricted["evidence"]["note"] == (
        f"see user {restricted['user_id']} and {pseudonym(KEY, 'fe80::1ff:fe23:4567:890a')}"
    )
    # neither an application's name, a browser version nor a time is a user or address
    for key in ("user_agent", "app_display_name", "first"):
        assert restricted["evidence"][key] == alert["evidence"][key]
    for fmt, rendered in renderings(restricted):
        text = rendered.decode().casefold()
        for raw in ("quinn", "192.0.2.201", "fe80::", alert["ip"], alert["user_id"]):
            assert raw not in text, (fmt, raw)


def test_an_address_inside_a_longer_one_keeps_its_own_pseudonym() -> None:
    alert = by_rule("brute-force") | {"ip": "10.0.0.1", "summary": "from 10.0.0.12 and 10.0.0.1."}
    restricted = restrict(alert, None, ("ip",), KEY)
    first, second = pseudonym(KEY, "10.0.0.12"), pseudonym(KEY, "10.0.0.1")
    assert restricted["summary"] == f"from {first} and {second}."


def test_only_the_chosen_kind_is_hidden() -> None:
    alert = by_rule("risk-detection", joined_signin=True)
    only_ip = restrict(alert, None, ("ip",), KEY)
    assert (only_ip["user"], only_ip["user_id"]) == (alert["user"], alert["user_id"])
    assert alert["ip"] not in only_ip["summary"]
    only_user = restrict(alert, None, ("user",), KEY)
    assert (only_user["ip"], only_user["summary"]) == (alert["ip"], alert["summary"])
    assert only_user["user"] == pseudonym(KEY, alert["user"])
    assert restrict(alert, None, (), KEY) == alert


def test_no_pseudonym_is_a_raw_value() -> None:
    for alert in ALERTS:
        restricted = restrict(alert, None, BOTH, KEY)
        for text in strings(restricted):
            assert not any(v in text for v in private_values(alert))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("user", "user"),
        ("users", "user"),
        ("user_id", "user"),
        ("userId", "user"),
        ("userPrincipalName", "user"),
        ("UPN", "user"),
        ("display_name", "user"),
        ("userDisplayName", "user"),
        ("ip", "ip"),
        ("ips", "ip"),
        ("ipAddress", "ip"),
        ("callerIpAddress", "ip"),
        ("IPAddress", "ip"),
        ("app_display_name", None),
        ("resource_display_name", None),
        ("user_agent", None),
        ("from_user_state", None),
        ("signin_id", None),
        ("zip", None),
        ("membership", None),
    ],
)
def test_field_names_are_classified(name: str, kind: str | None) -> None:
    assert kind_of(name) == kind
