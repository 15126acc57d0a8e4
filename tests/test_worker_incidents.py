"""Incidents and the mail-client inventory through the worker on the real embedded broker:
the same incident ids and inventory rows as ``scan --incidents`` and ``inventory``, and the
read-only HTTP view of the inventory with its token."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from uuid import uuid4

import orjson
import pytest
from pydantic import SecretStr
from test_streaming import (
    SAMPLE,
    Worker,
    consume,
    last_versions,
    metric_sum,
    mismatches,
    scan_alerts,
    streaming,  # noqa: F401  (fixture)
    wait_for,
)

from pipeline.alerts.privacy import pseudonym
from pipeline.core.incidents import entity
from pipeline.runtime.broker import free_port
from pipeline.runtime.procs import settings_env
from pipeline.runtime.settings import Settings
from pipeline.sources.replay import replay


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], capture_output=True, env=env, timeout=120
    )


def scan_incidents(tmp_path: Path) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """(alert id -> incident id, incident id -> last version) of ``scan --incidents``."""
    path = tmp_path / "incidents.jsonl"
    out = cli("scan", "--incidents", str(path), str(SAMPLE))
    assert out.returncode == 0, out.stderr
    alerts = {a["id"]: a["incident_id"] for a in map(orjson.loads, out.stdout.splitlines())}
    return alerts, last_versions(path.read_bytes().splitlines())


def incidents_differ(got: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]]) -> list[str]:
    """A user's incident must be scan's exactly (a user's records arrive in order). An
    address's is matched by what it says, not its id, with the tolerance the streaming tests
    give address-keyed alerts: its id derives from its opening alert's, and that alert's id
    names the failure that opened the spray, which the worker may see in another order."""

    def about(incident: dict[str, Any]) -> tuple[Any, ...]:
        fields = ("ip", "severity", "rules", "alert_count", "escalation")
        return tuple(orjson.dumps(incident[k]) for k in fields)

    users = {k: v for k, v in want.items() if v["kind"] == "user"}
    out = [f"{k}: {got.get(k)} != {v}" for k, v in users.items() if got.get(k) != v]
    have = sorted(about(v) for v in got.values() if v["kind"] == "ip")
    expected = sorted(about(v) for v in want.values() if v["kind"] == "ip")
    if have != expected:
        out.append(f"address incidents: {have} != {expected}")
    out += [f"extra {k}" for k, v in got.items() if v["kind"] == "user" and k not in users]
    return out


def request(
    port: int, path: str, method: str = "GET", token: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    sent = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=headers)
    try:
        with urllib.request.urlopen(sent, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, dict(refused.headers), refused.read()
    except OSError:
        return 0, {}, b""  # not listening (yet)


@pytest.mark.parametrize("split", [False, True], ids=["one-process", "stage-per-process"])
def test_the_worker_gives_the_incidents_and_inventory_of_scan_and_serves_the_inventory(
    streaming: tuple[Settings, Worker],  # noqa: F811
    split: bool,
    tmp_path: Path,
) -> None:
    settings, start = streaming
    token, port = uuid4().hex, free_port()
    view = {
        "inventory_view": True,
        "inventory_view_port": port,
        "inventory_view_token": SecretStr(token),
    }
    # The view pseudonymises users as `inventory --pseudonymize user` does, under one key.
    secret = uuid4().hex if split else ""
    hidden = {"pseudonym_key": SecretStr(secret), "inventory_view_pseudonymize": "user"}
    if split:  # the view is detect's, where user_state lives
        start(stage="detect", **view, **hidden)
        start(stage="ingest", metrics_port=free_port(), **view)
    else:
        start(**view)
    expected = scan_alerts(SAMPLE)
    incident_of, incidents = scan_incidents(tmp_path)
    assert {v["kind"] for v in incidents.values()} == {"user", "ip"}
    replay([str(SAMPLE)], settings, progress=False)

    alerts = last_versions(
        consume(settings, "alerts", lambda v: not mismatches(last_versions(v), expected))
    )
    assert mismatches(alerts, expected) == []
    sent = consume(
        settings, "incidents", lambda v: not incidents_differ(last_versions(v), incidents)
    )
    got = last_versions(sent)
    assert incidents_differ(got, incidents) == []
    # Every alert names its incident: a user's, scan's very id; an address's, the incident
    # of that address on the incidents topic.
    for alert in alerts.values():
        kind, key = entity(alert)
        if kind == "user":
            assert alert["incident_id"] == incident_of[alert["id"]], alert
        else:
            assert (got[alert["incident_id"]]["kind"], got[alert["incident_id"]]["ip"]) == (
                "ip",
                key,
            )
    assert metric_sum(settings.metrics_port, "signin_risk_incidents_total") == len(sent)

    # The inventory view answers scan's rows, to its token only, and reads only.
    masked = ["--pseudonymize", "user"] if split else []
    env = os.environ | {"SIGNIN_RISK_PSEUDONYM_KEY": secret}
    scanned = cli("inventory", "--format", "json", *masked, str(SAMPLE), env=env).stdout
    rows = [orjson.loads(line) for line in scanned.splitlines()]
    assert len(rows) > 20
    assert any("@contoso.com" in r["user"] for r in rows) != split

    def listed() -> Any:
        status, _, body = request(port, "/inventory?limit=1000", token=token)
        return orjson.loads(body)["rows"] if status == 200 else status

    assert wait_for("the inventory of scan", listed, lambda r: r == rows, timeout_s=30) == rows
    csv = cli("inventory", "--format", "csv", *masked, str(SAMPLE), env=env).stdout
    assert request(port, "/inventory.csv?limit=1000", token=token)[::2] == (200, csv)
    status, _, body = request(port, "/inventory?limit=5&offset=5", token=token)
    page = orjson.loads(body)
    assert (page["rows"], page["total"], page["next"]) == (rows[5:10], len(rows), 10)
    # one user's rows, asked for by UPN in any case (shown as its pseudonym when hidden)
    upn = "grace.kim@contoso.com"
    shown = pseudonym(secret.encode(), upn) if split else upn
    status, _, body = request(port, f"/inventory?user={upn.upper()}", token=token)
    assert orjson.loads(body)["rows"] == [r for r in rows if r["user"] == shown] != []
    assert request(port, "/inventory", method="HEAD", token=token)[::2] == (200, b"")
    assert request(port, "/inventory")[0] == 401
    assert request(port, "/inventory", token="wrong")[0] == 401
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, _ = request(port, "/inventory", method=method, token=token)
        assert (status, headers.get("Allow")) == (405, "GET, HEAD")
    assert request(port, "/table/user_state/", token=token)[0] == 404  # no Faust internals


def test_the_view_is_not_served_beyond_loopback_without_a_token(kafka_settings: Settings) -> None:
    """Refused before anything starts: a worker bound to every interface without a token
    would hand every user's mail clients to anyone who can reach the port."""
    refused = kafka_settings.model_copy(
        update={"inventory_view": True, "inventory_view_host": "0.0.0.0"}
    )
    out = cli("worker", env=os.environ | settings_env(refused))
    assert out.returncode == 2
    assert b"the inventory view on 0.0.0.0 needs a bearer token" in out.stderr
    assert b"Traceback" not in out.stderr
