"""``signin-risk demo`` as ``make demo`` runs it: its own broker, worker and (with
``--cef-out``) a forwarder process; every alert printed, written and forwarded as CEF."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from cef import parse_cef
from test_streaming import SAMPLE, differences, last_versions, scan_alerts

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
