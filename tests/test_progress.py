"""Progress bars draw on a terminal only: a scan's stderr on a terminal shows how much of
its input is read; piped or logged, stderr carries the summary and no escape codes."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import orjson

from pipeline.runtime.progress import bar
from tools.synth import sample_days

CLI = [sys.executable, "-m", "pipeline.cli"]


def _export(tmp_path: Path) -> Path:
    path = tmp_path / "days.json"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sample_days(3)))
    return path


def _stderr_on_a_terminal(args: list[str]) -> bytes:
    main, tty = pty.openpty()
    fcntl.ioctl(tty, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([*CLI, *args], stdout=subprocess.DEVNULL, stderr=tty)
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
    shown = _stderr_on_a_terminal(["scan", str(export)])
    assert b"\rscan:" in shown and b"B/s]" in shown
    assert b"records read:" in shown
    piped = subprocess.run([*CLI, "scan", str(export)], capture_output=True, check=True)
    assert b"records read:" in piped.stderr
    assert b"scan:" not in piped.stderr and b"\r" not in piped.stderr


def test_a_bar_is_off_when_not_wanted_or_not_on_a_terminal() -> None:
    assert bar("x", 10).disable  # pytest's stderr is no terminal
    assert bar("x", 10, shown=False).disable
