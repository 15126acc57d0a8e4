"""Baselines warmed from exported history: a new deployment alerts from day one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
from test_cli import run
from test_streaming import Worker, consume, streaming  # noqa: F401  (fixture)

from pipeline.core.baseline import warm
from pipeline.core.codec import RULE_STATES
from pipeline.core.detect import Engine
from pipeline.core.parse import parse_file
from pipeline.core.policy import Policy
from pipeline.core.records import Record
from pipeline.core.state import KeyedState, RuleStates, user_risk
from pipeline.core.timeparse import parse_time
from pipeline.runtime.procs import settings_env
from pipeline.runtime.settings import Settings
from pipeline.sources.replay import replay
from tools.synth import _START, INCIDENTS

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"
RECORDS = parse_file(SAMPLE.read_bytes()).records
HISTORY = [r for r in RECORDS if r.time < _START]
TODAY = [r for r in RECORDS if r.time >= _START]


def baseline_alerts(records: list[Record], warmed: dict[str, RuleStates]) -> dict[str, str]:
    """User -> baseline rule of every baseline alert, with ``warmed`` put into the state first."""
    engine = Engine(Policy())
    users = KeyedState(RULE_STATES)
    for key, entries in warmed.items():
        users.put(key, entries)
    users.flush()
    book = user_risk(users)
    found: dict[str, str] = {}
    for record in sorted(records, key=lambda r: r.time):
        for alert in engine.process(record, book, users).alerts:
            if alert.rule in ("new-country", "workload-new-network"):
                found[alert.user] = alert.rule
    return found


def test_a_cold_start_learns_and_a_warmed_one_alerts_from_day_one() -> None:
    assert HISTORY and TODAY
    expected = {
        INCIDENTS["new_country"]: "new-country",
        "contoso-hr-sync": "workload-new-network",
    }
    assert baseline_alerts(TODAY, {}) == {}  # no history: both still learning
    assert baseline_alerts(TODAY, warm(HISTORY, Policy())) == expected
    assert baseline_alerts(HISTORY + TODAY, {}) == expected  # as scan of everything


def test_warmed_state_is_the_baselines_only_and_small() -> None:
    warmed = warm(HISTORY, Policy())
    assert warmed
    for entries in warmed.values():
        assert set(entries) <= {"new-country", "workload-new-network"}
        assert all(incident is None for _, _, incident in entries.values())
        assert len(orjson.dumps(entries)) < 300
    newest = max(r.time for r in HISTORY).timestamp()
    assert all(e[0] <= newest for entries in warmed.values() for e in entries.values())


def test_the_baseline_command_writes_the_warmed_state_privately(tmp_path: Path) -> None:
    out = tmp_path / "baseline.jsonl"
    result = run("baseline", str(SAMPLE), "-o", str(out))
    assert result.returncode == 0, result.stderr.decode()
    assert out.stat().st_mode & 0o777 == 0o600
    rows = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {r["key"]: r["state"] for r in rows} == orjson.loads(
        orjson.dumps(warm(RECORDS, Policy()))
    )
    assert "users and workloads from 471 records" in result.stderr.decode()
    missing = run("baseline", str(tmp_path / "none.json"), "-o", str(out))
    assert missing.returncode == 2 and len(missing.stderr.decode().splitlines()) == 1


def test_baselines_loaded_before_the_first_worker_alert_from_its_first_day(
    streaming: tuple[Settings, Worker],  # noqa: F811
    tmp_path: Path,
) -> None:
    """baseline --load writes the learned history into the user_state changelog; the first
    worker restores it and raises on today's records alone what scan of history and today
    raises. A deployment that has run is refused."""
    settings, start = streaming
    history, today = tmp_path / "history.ndjson", tmp_path / "today.ndjson"
    for path, wanted in ((history, lambda t: t < _START), (today, lambda t: t >= _START)):
        path.write_bytes(
            b"".join(
                orjson.dumps({"records": [r]}) + b"\n"
                for line in SAMPLE.read_bytes().splitlines()
                for r in orjson.loads(line)["records"]
                if wanted(parse_time(r.get("time") or r["properties"]["createdDateTime"]))
            )
        )

    def load() -> subprocess.CompletedProcess[bytes]:
        command = [sys.executable, "-m", "pipeline.cli", "baseline", str(history), "--load"]
        env = os.environ | settings_env(settings)
        return subprocess.run(command, capture_output=True, env=env, timeout=60, check=False)

    loaded = load()
    assert loaded.returncode == 0, loaded.stderr.decode()
    start()
    replay([str(today)], settings, progress=False)
    wanted = {INCIDENTS["new_country"]: "new-country", "contoso-hr-sync": "workload-new-network"}

    def baseline_rules(values: list[bytes]) -> dict[str, str]:
        alerts = map(orjson.loads, values)
        return {a["user"]: a["rule"] for a in alerts if a["rule"] in set(wanted.values())}

    values = consume(settings, "alerts", lambda v: baseline_rules(v) == wanted)
    worker_log = (tmp_path / "worker-0.log").read_text(errors="replace")[-4000:]
    assert baseline_rules(values) == wanted, f"{len(values)} alerts; worker log:\n{worker_log}"
    again = load()
    assert again.returncode == 2
    assert "already holds user state" in again.stderr.decode()
