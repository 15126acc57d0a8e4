"""The mail-client inventory: which clients each user reads mail with, and compliance."""

from __future__ import annotations

import csv
import io
import os
import stat
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from builders import dumps, signin
from test_cli import REPO, SAMPLE, _command, error_line, run

from pipeline.core.detect import Engine
from pipeline.core.enrich import Enriched
from pipeline.core.inventory import FIELDS, MAX_CLIENTS, Inventory, build_line, expired, step
from pipeline.core.parse import parse_file
from pipeline.core.policy import Policy
from pipeline.core.records import SignIn

EXO = {
    "resourceId": "00000002-0000-0ff1-ce00-000000000000",
    "resourceDisplayName": "Office 365 Exchange Online",
}


def outlook(build: str, os_name: str = "Ios 17.6.1", **more: Any) -> dict[str, Any]:
    platform = "iOS" if os_name.startswith("Ios") else "Android"
    return {
        **EXO,
        "appId": "27922004-5251-4030-b22d-91ecd9a37ea4",
        "appDisplayName": "Microsoft Outlook",
        "clientAppUsed": "Mobile Apps and Desktop clients",
        "userAgent": f"Outlook-{platform}/{build}",
        "deviceDetail": {"operatingSystem": os_name},
        **more,
    }


def enriched(patches: Iterable[dict[str, Any]], policy: Policy | None = None) -> list[Enriched]:
    data = b"\n".join(dumps(signin({"id": f"s{i}", **patch})) for i, patch in enumerate(patches))
    engine = Engine(policy or Policy())
    records = parse_file(data, 1 << 20).records
    return [engine.enrich(r, None) for r in records if isinstance(r, SignIn)]


def inventory_of(patches: Iterable[dict[str, Any]], policy: Policy | None = None) -> Inventory:
    book = Inventory(policy or Policy())
    for e in enriched(patches, policy):
        book.add(e)
    return book


def test_outlook_builds_are_rows_of_their_own_with_compliance_by_the_minimum() -> None:
    rows = inventory_of(
        [
            outlook("4.2310.1", createdDateTime="2026-01-15T10:00:00Z"),
            outlook("4.2310.1", createdDateTime="2026-01-15T12:00:00Z"),
            outlook("4.2450.2", createdDateTime="2026-01-15T11:00:00Z"),
            outlook("4.2450.2", "Android 14", createdDateTime="2026-01-15T09:00:00Z"),
        ]
    ).rows()
    by = {(r["name"], r["version"]): r for r in rows}
    old = by["Outlook for iOS", "4.2310.1"]
    assert (old["count"], old["first_seen"], old["last_seen"]) == (
        2,
        "2026-01-15T10:00:00.000000Z",
        "2026-01-15T12:00:00.000000Z",
    )
    assert (old["compliant"], old["issue"]) == (False, "build older than 4.2400")
    assert by["Outlook for iOS", "4.2450.2"]["compliant"]
    assert by["Outlook for Android", "4.2450.2"]["platform"] == "android"
    assert [r["last_seen"] for r in rows] == sorted((r["last_seen"] for r in rows), reverse=True)


def test_the_last_conditional_access_result_is_the_latest_signins_in_event_time() -> None:
    blocked = {"conditionalAccessStatus": "failure", "status": {"errorCode": 53003}}
    (row,) = inventory_of(
        [
            {**outlook("4.2450.2"), "createdDateTime": "2026-01-15T12:00:00Z", **blocked},
            {**outlook("4.2450.2"), "createdDateTime": "2026-01-15T10:00:00Z"},
        ]
    ).rows()
    assert row["last_ca_result"] == "failure"
    assert row["count"] == 2


def test_native_mail_legacy_protocols_and_desktop_clients_are_inventoried() -> None:
    rows = inventory_of(
        [
            {
                **EXO,
                "appId": "f8d98a96-0999-43f5-8af3-69971c7bb423",
                "userAgent": "iOS/17.5.1 (21F90) accountsd/1.0",
                "clientAppUsed": "Mobile Apps and Desktop clients",
                "deviceDetail": {"operatingSystem": "Ios 17.5.1"},
            },
            {**EXO, "clientAppUsed": "IMAP4", "userAgent": ""},
            {
                **EXO,
                "appId": "d3590ed6-52b3-4102-aeff-aad2292ab01c",
                "clientAppUsed": "Mobile Apps and Desktop clients",
            },
            {},  # a browser to SharePoint: no mail client
        ]
    ).rows()
    issues = {r["name"]: r["issue"] for r in rows}
    assert issues == {
        "iOS Mail": "not an approved client app",
        "IMAP4": "legacy protocol",
        "Microsoft Office": "",
    }


def test_a_user_keeps_at_most_the_most_recent_clients_within_a_kilobyte() -> None:
    patches = [
        outlook(f"4.{2300 + i}.{i}", createdDateTime=f"2026-01-15T10:{i:02d}:00Z")
        for i in range(40)
    ]
    book = inventory_of(patches)
    (state,) = book.users.values()
    assert len(state["clients"]) == MAX_CLIENTS
    assert {r[3] for r in state["clients"]} == {f"4.{2300 + i}.{i}" for i in range(32, 40)}
    assert len(orjson.dumps(state)) <= 1024
    (e,) = enriched([{"userAgent": "x"}])
    assert step(state, e, Policy()) is None  # not a mail client: nothing to write


def test_a_user_expires_only_when_every_client_is_older_than_the_cutoff() -> None:
    book = inventory_of(
        [
            outlook("4.2450.2", createdDateTime="2026-01-15T10:00:00Z"),
            {**EXO, "clientAppUsed": "IMAP4", "createdDateTime": "2026-01-20T10:00:00Z"},
        ]
    )
    (state,) = book.users.values()
    assert not expired(state, datetime(2026, 1, 16, tzinfo=UTC).timestamp())
    assert expired(state, datetime(2026, 1, 21, tzinfo=UTC).timestamp())


def test_build_line_groups_builds_for_labels() -> None:
    assert build_line("4.2450.2") == "4.2450"
    assert build_line("") == "unknown"


def test_sample_inventory_answers_the_admins_questions() -> None:
    book = Inventory(Policy())
    engine = Engine(Policy())
    for record in parse_file(SAMPLE.read_bytes(), 1 << 20).records:
        if isinstance(record, SignIn):
            book.add(engine.enrich(record, None))
    bad = {(r["user"], r["name"], r["issue"]) for r in book.rows(non_compliant=True)}
    assert ("jonas.weber@contoso.com", "Outlook for iOS", "build older than 4.2400") in bad
    assert ("kavya.iyer@contoso.com", "Outlook for Android", "build older than 4.2400") in bad
    assert ("emma.novak@contoso.com", "iOS Mail", "not an approved client app") in bad
    assert ("grace.kim@contoso.com", "Samsung Email", "legacy protocol") in bad
    assert all(not r["compliant"] for r in book.rows(non_compliant=True))
    assert any(r["compliant"] for r in book.rows())


def test_inventory_command_formats_and_private_file(tmp_path: Path) -> None:
    as_json = run("inventory", "--format", "json", "--non-compliant")
    assert as_json.returncode == 0, as_json.stderr.decode()
    rows = [orjson.loads(x) for x in as_json.stdout.splitlines()]
    assert rows and all(set(r) == set(FIELDS) and not r["compliant"] for r in rows)
    as_csv = run("inventory", "--format", "csv", "--non-compliant")
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout.decode())))
    assert [(r["user"], r["version"]) for r in parsed] == [(r["user"], r["version"]) for r in rows]
    table = run("inventory").stdout.decode().splitlines()
    assert table[0].split()[:2] == ["user", "name"]
    assert any("build older than 4.2400" in x for x in table)
    target = tmp_path / "inventory.csv"
    old = os.umask(0)
    try:
        written = run("inventory", "--format", "csv", "-o", str(target))
    finally:
        os.umask(old)
    assert written.returncode == 0 and written.stdout == b""
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_inventory_pseudonymises_users_under_the_key() -> None:
    refused = run("inventory", "--pseudonymize", "user")
    assert refused.returncode == 2
    assert "SIGNIN_RISK_PSEUDONYM_KEY" in error_line(refused)
    env = {**os.environ, "SIGNIN_RISK_PSEUDONYM_KEY": "test-key"}
    masked = subprocess.run(
        [*_command(), "inventory", "--format", "json", "--pseudonymize", "user"],
        capture_output=True,
        cwd=REPO,
        env=env,
        check=True,
    )
    rows = [orjson.loads(x) for x in masked.stdout.splitlines()]
    assert rows and all(r["user"].startswith("anon-") for r in rows)
    assert b"@contoso.com" not in masked.stdout
