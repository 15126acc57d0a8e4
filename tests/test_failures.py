"""Every way a command can fail ends in one line naming what failed and what to do, and a
non-zero exit; a traceback only with ``--debug``. Real processes, as users run them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.core.rules import REGISTRY

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "pipeline" / "data" / "sample-signins.ndjson"
RULE_IDS = "valid ids: " + ", ".join(sorted(REGISTRY))


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=90,
        check=False,
        env={**os.environ, **(env or {})},
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "\x1b[" not in result.stderr
    return lines[0]


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "signin-risk 0.1.0"


@pytest.mark.parametrize("command", ["scan", "replay", "demo", "inventory"])
def test_a_missing_input_is_one_line(command: str) -> None:
    result = run(command, "no/such/export.json")
    assert result.returncode == 2
    assert one_line(result) == "signin-risk: no/such/export.json: no such file or directory"


def test_an_unknown_rule_id_names_the_closest_and_the_valid_ones(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  brute-forse:\n    enabled: false\n")
    for args in (("check-config", str(policy)), ("scan", "--policy", str(policy))):
        result = run(*args)
        assert result.returncode == 2
        line = one_line(result)
        assert line == (
            f"signin-risk: {policy}: rules.brute-forse: unknown rule id; "
            f"did you mean 'brute-force'? {RULE_IDS}"
        )


def test_an_unreadable_policy_is_one_line(tmp_path: Path) -> None:
    result = run("scan", "--policy", str(tmp_path / "none.yaml"))
    assert result.returncode == 2
    assert one_line(result) == (
        f"signin-risk: {tmp_path / 'none.yaml'}: cannot read: No such file or directory"
    )


def test_a_bad_setting_is_one_line_naming_the_variable() -> None:
    result = run("topics", "create", "--print", env={"SIGNIN_RISK_PARTITIONS": "many"})
    assert result.returncode == 2
    assert one_line(result) == (
        "signin-risk: invalid setting SIGNIN_RISK_PARTITIONS='many': Input should be a valid "
        "integer, unable to parse string as an integer"
    )


def test_debug_shows_the_traceback() -> None:
    result = run("--debug", "topics", "create", "--print", env={"SIGNIN_RISK_PARTITIONS": "x"})
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    after = run("topics", "create", "--print", "--debug", env={"SIGNIN_RISK_PARTITIONS": "x"})
    assert "Traceback" in after.stderr


def test_an_unwritable_output_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "missing-dir" / "alerts.cef"
    result = run("scan", "--format", "cef", "--output", str(target))
    assert result.returncode == 2
    assert one_line(result) == f"signin-risk: {target}: cannot write: No such file or directory"


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_broker_is_one_line_for_topics_and_replay() -> None:
    bootstrap = f"127.0.0.1:{_dead_port()}"
    env = {
        **os.environ,
        "SIGNIN_RISK_KAFKA_BOOTSTRAP": bootstrap,
        "SIGNIN_RISK_CONNECT_TIMEOUT_S": "3",
    }
    commands = (["topics", "create"], ["replay", "--quiet", str(SAMPLE)])
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=env,
        )
        for args in commands
    ]
    for proc in procs:  # both wait out the 3 s bootstrap timeout (30 s unset) together
        out, err = proc.communicate(timeout=25)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        assert result.returncode == 2
        assert one_line(result).startswith(
            f"signin-risk: cannot use the Kafka broker at {bootstrap}: "
        )
        assert one_line(result).endswith(
            "is it running and reachable? (set SIGNIN_RISK_KAFKA_BOOTSTRAP, and SASL/TLS "
            "settings if it needs them)"
        )
