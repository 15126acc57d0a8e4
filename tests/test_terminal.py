"""What a terminal gets and a file or pipe does not: progress bars (a scan's stderr shows how
much of its input is read), the alert table's colour by severity and its rows cut to the
terminal's width."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import orjson

from pipeline.alerts.table import Table, colour_wanted
from pipeline.runtime.broker import free_port
from pipeline.runtime.procs import spawn, spawn_worker, terminate
from pipeline.runtime.progress import bar
from pipeline.runtime.settings import Settings
from pipeline.runtime.topics import create_topics
from pipeline.sources.replay import replay
from tools.synth import sample_days

CLI = [sys.executable, "-m", "pipeline.cli"]
SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"
COLUMNS = 200


def _export(tmp_path: Path) -> Path:
    path = tmp_path / "days.json"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sample_days(3)))
    return path


def _on_a_terminal(args: list[str], stream: str = "stderr") -> bytes:
    """What the command writes to ``stream`` when that is a terminal of ``COLUMNS``."""
    main, tty = pty.openpty()
    fcntl.ioctl(tty, termios.TIOCSWINSZ, struct.pack("HHHH", 24, COLUMNS, 0, 0))
    out, err = (tty, subprocess.DEVNULL) if stream == "stdout" else (subprocess.DEVNULL, tty)
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS")}
    proc = subprocess.Popen([*CLI, *args], stdout=out, stderr=err, env=env)
    os.close(tty)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert proc.wait(timeout=120) == 0
    return seen


def test_scan_draws_a_bar_of_bytes_read_on_a_terminal_only(tmp_path: Path) -> None:
    export = _export(tmp_path)
    shown = _on_a_terminal(["scan", str(export)])
    assert b"\rscan:" in shown and b"B/s]" in shown
    assert b"records read:" in shown
    piped = subprocess.run([*CLI, "scan", str(export)], capture_output=True, check=True)
    assert b"records read:" in piped.stderr
    assert b"scan:" not in piped.stderr and b"\r" not in piped.stderr


def test_a_bar_is_off_when_not_wanted_or_not_on_a_terminal() -> None:
    assert bar("x", 10).disable  # pytest's stderr is no terminal
    assert bar("x", 10, shown=False).disable


SAMPLE_ALERT = {
    "id": "20563e05-0000-4000-8000-000000000000",
    "time": "2026-11-20T10:30:01.330000Z",
    "rule": "device-code-phishing",
    "severity": "high",
    "user": "vera.lindholm@contoso.com",
    "client": {"name": "Microsoft Office", "version": ""},
    "ip": "198.51.100.59",
    "location": {"city": "Seattle", "country": "US"},
    "summary": "signed in with a device code for Microsoft Office to Office 365 Exchange Online",
}


def test_table_colours_severity_and_fits_the_width_it_is_given() -> None:
    table = Table(colour=True, width=COLUMNS)
    first = table.row(SAMPLE_ALERT)
    assert "\x1b[1;31mhigh" in first  # high is bold red
    visible = first.replace("\x1b[1;31m", "").replace("\x1b[0m", "")
    assert len(visible) <= COLUMNS and visible.endswith("…")
    assert "Seattle, US" in visible
    again = table.row(SAMPLE_ALERT | {"severity": "critical"})
    assert "20563e05 (update)" in again and "\x1b[1;35mcritical" in again
    assert table.summary().startswith("1 alert(s): device-code-phishing=1")
    plain = Table().row(SAMPLE_ALERT)
    assert "\x1b" not in plain and plain.endswith("Exchange Online")  # a file keeps it whole


def test_scan_table_on_a_terminal_is_coloured_and_no_wider_than_it() -> None:
    shown = _on_a_terminal(["scan", "--format", "table"], "stdout").decode()
    header, *rows = shown.splitlines()
    assert "SUMMARY" in header
    coloured = [r for r in rows if "\x1b[" in r]
    assert len(coloured) >= 40
    visible = [re.sub(r"\x1b\[[0-9;]*m", "", row) for row in coloured]
    assert max(map(len, visible)) <= COLUMNS
    assert any(row.endswith("…") for row in visible)  # summaries cut to the width
    assert not colour_wanted(sys.stdout)  # pytest's stdout: no terminal


def test_service_log_files_hold_no_terminal_codes(kafka_settings: Settings, tmp_path: Path) -> None:
    """A worker and a forwarder writing to files, as under systemd or the demo: their logs
    hold lines, not a spinner's cursor codes (Faust draws one while a worker starts)."""
    settings = kafka_settings.model_copy(update={"metrics_port": free_port()})
    create_topics(settings)
    policy = tmp_path / "policy.yaml"
    alerts = tmp_path / "alerts.jsonl"
    policy.write_text(f"sinks:\n  out:\n    type: file\n    path: {alerts}\n    format: native\n")
    settings = settings.model_copy(update={"policy_file": str(policy)})
    logs = {name: tmp_path / f"{name}.log" for name in ("worker", "forward")}
    with logs["worker"].open("wb") as worker_log, logs["forward"].open("wb") as forward_log:
        worker = spawn_worker(settings, worker_log)
        quiet = settings.model_copy(update={"metrics_port": 0})
        forwarder = spawn(["forward", "--sink", "out"], quiet, forward_log)
    try:
        replay([str(SAMPLE)], settings, progress=False)
        deadline = time.monotonic() + 120
        while not (alerts.exists() and len(alerts.read_bytes().splitlines()) >= 40):
            assert time.monotonic() < deadline, logs["worker"].read_text()[-3000:]
            assert worker.poll() is None and forwarder.poll() is None
            time.sleep(0.3)
    finally:
        terminate(forwarder, 30, "forwarder")
        terminate(worker, 30, "worker")
    for name, path in logs.items():
        text = path.read_bytes()
        assert b"\x1b" not in text and b"\b" not in text, (name, text[-2000:])
