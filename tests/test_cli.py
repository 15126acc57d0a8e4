"""The ``signin-risk`` command as users run it: a subprocess, exit codes, stdout and stderr."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from builders import dumps, signin

from pipeline.core.rules import REGISTRY
from tools.synth import INCIDENTS

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "pipeline" / "data" / "sample-signins.ndjson"
RULES = set(REGISTRY)  # test_rules pins the ids
ALERT_FIELDS = {
    "id",
    "rule",
    "severity",
    "time",
    "detected_at",
    "title",
    "summary",
    "tenant_id",
    "user",
    "user_id",
    "ip",
    "location",
    "client",
    "risk",
    "signin_ids",
    "mitre",
    "evidence",
    "next_steps",
    "links",
    "schema_version",
}


def _command() -> list[str]:
    script = Path(sys.executable).parent / "signin-risk"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pipeline.cli"]


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*_command(), *args], input=stdin, capture_output=True, cwd=REPO, timeout=60, check=False
    )


def alerts_of(result: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in result.stdout.splitlines()]


def error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    """The one stderr line of a failed run."""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, result.stderr.decode()
    return lines[0]


@pytest.fixture(scope="module")
def sample_scan() -> subprocess.CompletedProcess[bytes]:
    """``signin-risk scan`` with no path: the bundled sample."""
    return run("scan")


def test_scan_of_the_bundled_sample(sample_scan: subprocess.CompletedProcess[bytes]) -> None:
    assert sample_scan.returncode == 0, sample_scan.stderr.decode()
    alerts = alerts_of(sample_scan)
    assert {a["rule"] for a in alerts} == RULES
    for alert in alerts:
        assert set(alert) == ALERT_FIELDS
        assert alert["mitre"]
        # only a user-state change (RiskyUsers) rests on no sign-in
        assert alert["signin_ids"] or alert["evidence"].get("category") == "RiskyUsers"
        assert alert["time"].endswith("Z") and alert["detected_at"].endswith("Z")
    ids = [a["id"] for a in alerts]
    assert len(ids) == len(set(ids)), "alert ids are unique"

    summary = sample_scan.stderr.decode()
    assert "records read: 471 " in summary
    assert "rejected: none" in summary
    counts = Counter(a["rule"] for a in alerts)
    assert "alerts: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) in summary


def test_sample_alerts_tell_the_readme_story(
    sample_scan: subprocess.CompletedProcess[bytes],
) -> None:
    rules_by_user: dict[str, set[str]] = {}
    for alert in alerts_of(sample_scan):
        rules_by_user.setdefault(alert["user"], set()).add(alert["rule"])
    expected = {
        "ios_mail": {"unapproved-mobile-client"},
        "gmail_eas": {"unapproved-mobile-client", "legacy-auth"},
        "samsung_eas": {"unapproved-mobile-client", "legacy-auth"},
        "legacy_imap": {"legacy-auth"},
        # SMTP AUTH through Exchange's basic-auth proxy is an ROPC grant (BAV2ROPC)
        "legacy_smtp": {"legacy-auth", "ropc-signin"},
        "outdated_outlook_ios": {"outdated-outlook-mobile"},
        "outdated_outlook_android": {"outdated-outlook-mobile"},
        # Identity Protection also exported their detections / state changes
        "risky_high": {"risky-signin", "risk-detection"},
        "risky_medium": {"risky-signin"},
        "risky_user_state": {"risky-signin", "risk-detection"},
        "risk_event_join": {"risk-detection"},
        "brute_force": {"brute-force"},
        "mfa_fatigue": {"mfa-fatigue"},
        "impossible_travel": {"impossible-travel"},
        "device_code": {"device-code-phishing"},
        "ropc_script": {"ropc-signin"},
        "mfa_fraud": {"mfa-fraud-report"},
        "attack_tool": {"attack-tool"},
        "new_country": {"new-country"},
        "token_replay": {"token-replay"},
    }
    for incident, rules in expected.items():
        assert rules_by_user.get(INCIDENTS[incident]) == rules, incident
    # blocked by Conditional Access, dismissed by an admin
    for incident in ("ios_mail_blocked", "risky_dismissed"):
        assert INCIDENTS[incident] not in rules_by_user, incident
    # remediated before signing in: the earlier atRisk change alerts, the sign-in does not
    assert rules_by_user[INCIDENTS["risk_remediated"]] == {"risk-detection"}

    inherited = [
        a
        for a in alerts_of(sample_scan)
        if a["user"] == INCIDENTS["risky_user_state"] and a["rule"] == "risky-signin"
    ]
    assert [a["evidence"]["from_user_state"] for a in inherited] == [True]


def test_same_file_twice_gives_the_same_alerts(
    sample_scan: subprocess.CompletedProcess[bytes],
) -> None:
    twice = run("scan", str(SAMPLE), str(SAMPLE))
    assert twice.returncode == 0
    ids = [a["id"] for a in alerts_of(twice)]
    assert len(ids) == len(set(ids))
    assert set(ids) == {a["id"] for a in alerts_of(sample_scan)}
    assert "duplicate sign-ins (same id delivered again): 466" in twice.stderr.decode()


def test_scan_reads_stdin(sample_scan: subprocess.CompletedProcess[bytes]) -> None:
    piped = run("scan", "-", stdin=SAMPLE.read_bytes())
    assert piped.returncode == 0
    assert {a["id"] for a in alerts_of(piped)} == {a["id"] for a in alerts_of(sample_scan)}
    assert "records read: 471 " in piped.stderr.decode()


def test_rejects_file_and_good_records_beside_bad_ones(tmp_path: Path) -> None:
    no_id = signin({"clientAppUsed": "IMAP4"})
    del no_id["properties"]["id"]
    not_utf8 = b'{"records": [{"category": "SignInLogs", "caf\xe9": 1}]}'
    lines = [
        dumps(signin({"id": "good-1", "clientAppUsed": "IMAP4", "userAgent": ""})),
        b"{not json",
        not_utf8,
        dumps(no_id),
        dumps(signin({"id": "good-2", "clientAppUsed": "POP3", "userAgent": ""})),
    ]
    source = tmp_path / "mixed.ndjson"
    source.write_bytes(b"\n".join(lines) + b"\n")
    rejects = tmp_path / "rejects.jsonl"

    result = run("scan", str(source), "--rejects", str(rejects))
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(a["signin_ids"][0] for a in alerts_of(result)) == ["good-1", "good-2"]
    assert "rejected: invalid-json=1, invalid-utf8=1, missing-field=1" in result.stderr.decode()

    written = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert [(r["reason"], r["field"], r["source"]) for r in written] == [
        ("invalid-json", "", f"{source}:2"),
        ("invalid-utf8", "", f"{source}:3"),
        ("missing-field", "properties.id", f"{source}:4"),
    ]
    bad_json, bad_bytes, missing = written
    assert (bad_json["encoding"], bad_json["record"]) == ("utf-8", "{not json")
    assert bad_bytes["encoding"] == "base64"
    assert base64.b64decode(bad_bytes["record"]) == not_utf8
    assert missing["encoding"] == "utf-8"
    assert orjson.loads(missing["record"]) == no_id
    assert all(r["detail"] for r in written)


def test_missing_path_fails_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "export.json"
    result = run("scan", str(SAMPLE), str(missing))
    assert result.returncode == 2
    assert str(missing) in error_line(result)
    assert result.stdout == b""


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param(b"rules:\n  legacy-auth:\n    severity: urgent\n", id="bad severity"),
        pytest.param(b"risk_threshold: medium\nallowlist:\n  ips: [203.0.113.0/24\n", id="YAML"),
        pytest.param(b"risk_threshold: m\xe9dium\n", id="not UTF-8"),
    ],
)
def test_invalid_policy_fails_with_one_line(tmp_path: Path, policy: bytes) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(policy)
    result = run("scan", "--policy", str(path))
    assert result.returncode == 2
    assert error_line(result).startswith(f"signin-risk: {path}: ")
    assert result.stdout == b""


def test_unwritable_rejects_path_fails_with_one_line(tmp_path: Path) -> None:
    rejects = tmp_path / "no-such-dir" / "rejects.jsonl"
    result = run("scan", "--rejects", str(rejects))
    assert result.returncode == 2
    assert str(rejects) in error_line(result)


@pytest.mark.parametrize(
    ("incident", "rule", "severity", "signins"),
    [
        ("password_spray", "password-spray", "medium", 10),
        ("brute_force", "brute-force", "high", 13),
        ("mfa_fatigue", "mfa-fatigue", "high", 7),
        ("impossible_travel", "impossible-travel", "high", 2),
        ("risk_event_join", "risk-detection", "high", 1),
    ],
)
def test_scan_finds_each_stateful_incident_of_the_sample_once(
    sample_scan: subprocess.CompletedProcess[bytes],
    incident: str,
    rule: str,
    severity: str,
    signins: int,
) -> None:
    who = INCIDENTS[incident]
    found = [a for a in alerts_of(sample_scan) if a["rule"] == rule and who in (a["user"], a["ip"])]
    assert len(found) == 1, found
    assert found[0]["severity"] == severity
    assert len(found[0]["signin_ids"]) == signins


def test_check_config_prints_the_effective_policy() -> None:
    result = run("check-config", "config/policy.yaml")
    assert result.returncode == 0, result.stderr.decode()
    printed = yaml.safe_load(result.stdout)
    assert printed["risk_threshold"] == "medium"
    assert printed["approved_clients"][0]["app_id"] == "27922004-5251-4030-b22d-91ecd9a37ea4"
    assert set(printed["rules"]) == RULES


def test_check_config_of_a_bad_policy_fails_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("allowlist:\n  countries: [USA]\n")
    result = run("check-config", str(path))
    assert result.returncode == 2
    assert error_line(result) == (
        f"signin-risk: {path}: allowlist.countries: "
        "Value error, 'USA' is not a two-letter country code"
    )
