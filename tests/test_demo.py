"""``signin-risk demo`` as ``make demo`` runs it: its own broker, worker and (with
``--cef-out``) a forwarder process; every alert printed, written and forwarded as CEF."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from cef import parse_cef
from test_streaming import SAMPLE, differences, last_versions, scan_alerts

from tools.synth import sample_days

SYSLOG = re.compile(
    r"<(\d+)>1 (\S+) (\S+) signin-risk (\d+) (\S+) \[signinrisk@32473 ([^]]*)\] (.*)"
)


def test_the_demo_forwards_every_alert_as_cef_and_leaves_no_process(tmp_path: Path) -> None:
    alerts_out, cef_out = tmp_path / "alerts.jsonl", tmp_path / "alerts.cef"
    outputs = ["--alerts-out", str(alerts_out), "--cef-out", str(cef_out)]
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "demo", *outputs],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    written = alerts_out.read_bytes().splitlines()
    latest = last_versions(written)
    assert differences(latest, scan_alerts(SAMPLE)) == []
    assert f"{len(latest)} alert(s)" in done.stdout
    # then the incidents scan groups the alerts into, and where the inventory is served
    path = tmp_path / "incidents.jsonl"
    scanned = [sys.executable, "-m", "pipeline.cli", "scan", "--incidents", str(path), str(SAMPLE)]
    subprocess.run(scanned, capture_output=True, check=True)
    incidents = last_versions(path.read_bytes().splitlines())
    shown = done.stdout.split(f"\n{len(incidents)} incident(s):\n", 1)[1]
    assert {f"{i['severity']:<9}{i['summary']}" for i in incidents.values()} <= set(
        shown.splitlines()
    )
    assert "inventory view: http://127.0.0.1:" in shown

    lines = cef_out.read_text().splitlines()
    assert len(lines) == len(written)  # one syslog line per alert message on the topic
    forwarded = set()
    for line in lines:
        match = SYSLOG.fullmatch(line)
        assert match, line
        header, ext = parse_cef(match.group(7))
        alert = latest[ext["externalId"]]
        assert match.group(5) == header[4] == alert["rule"]
        assert f'id="{alert["id"]}"' in match.group(6)
        forwarded.add(ext["externalId"])
    assert forwarded == set(latest)
    assert "CEF line(s)" in done.stdout
    leftovers = subprocess.run(["pgrep", "-f", str(cef_out)], capture_output=True, text=True)
    assert leftovers.stdout == ""  # the forwarder (its policy names the file) is gone


ROW = re.compile(r"\d{4}-\d\d-\d\dT[\d:.]{12}Z  [0-9a-f]{8} ")


def _until(done: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_demo_follow_shows_more_replays_as_a_table_and_ends_on_ctrl_c_with_its_summary(
    tmp_path: Path,
) -> None:
    alerts_out = tmp_path / "alerts.jsonl"
    demo = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "demo", "--follow", "--alerts-out", str(alerts_out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    shown: list[str] = []
    reader = threading.Thread(target=lambda: shown.extend(demo.stdout or ()), daemon=True)
    reader.start()
    try:
        first = set(scan_alerts(SAMPLE))

        def written() -> dict[str, dict[str, Any]]:
            return last_versions(alerts_out.read_bytes().splitlines())

        # --alerts-out is flushed per alert: every alert is in the file while the demo runs
        _until(lambda: alerts_out.exists() and len(written()) >= len(first), "the alerts")
        hint = next(line for line in shown if line.startswith("following: the broker is "))
        bootstrap = hint.split()[4].rstrip(";")
        command = next(line for line in shown if "signin-risk replay" in line).split()
        assert command[0] == f"SIGNIN_RISK_KAFKA_BOOTSTRAP={bootstrap}"

        day_two = tmp_path / "day-two.json"
        envelopes = sample_days(2)[len(sample_days(1)) :]
        day_two.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in envelopes))
        more = subprocess.run(
            [sys.executable, "-m", "pipeline.cli", "replay", str(day_two)],
            env=os.environ | {"SIGNIN_RISK_KAFKA_BOOTSTRAP": bootstrap},
            capture_output=True,
            timeout=60,
        )
        assert more.returncode == 0, more.stderr
        _until(lambda: len(written()) > len(first) + 20, "the second day's alerts")
        time.sleep(3)  # the rest of its alerts
    finally:
        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends the demo (the rest have sessions)
        code = demo.wait(60)
        reader.join(10)
    errors = (demo.stderr.read() if demo.stderr else "").lower()
    assert code == 0, errors
    assert "traceback" not in errors and "warning" not in errors and "ignored" not in errors

    versions = alerts_out.read_bytes().splitlines()
    latest = last_versions(versions)
    header = next(i for i, line in enumerate(shown) if line.startswith("TIME "))
    assert shown[header].split()[-2:] == ["LOCATION", "SUMMARY"]
    rows = [line for line in shown[header + 1 :] if ROW.match(line)]  # not incidents
    assert len(rows) == len(versions)
    assert len({row[26:34] for row in rows}) == len(latest)  # one id per alert
    assert sum("(update)" in row for row in rows) == len(versions) - len(latest)
    assert [row[:23] for row in rows] == sorted(row[:23] for row in rows)  # in event time
    summary = next(line for line in shown if " alert(s) in " in line)
    assert summary.startswith(f"{len(latest)} alert(s) in ")
    with socket.socket() as probe:  # the broker is stopped
        host, port = bootstrap.rsplit(":", 1)
        assert probe.connect_ex((host, int(port))) != 0
