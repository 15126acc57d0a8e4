"""Baselines warmed from exported history: a new deployment alerts from day one."""

from __future__ import annotations

from pathlib import Path

import orjson
from test_cli import run

from pipeline.core.baseline import merge, warm
from pipeline.core.codec import RULE_STATES, dump_user_risk, load_user_risk
from pipeline.core.detect import Engine
from pipeline.core.parse import parse_file
from pipeline.core.policy import Policy
from pipeline.core.records import Record
from pipeline.core.state import RISK, Entry, KeyedState, RuleStates
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
        users.put(key, merge(users.get(key), entries))
    users.flush()
    book = Entry(users, RISK, load_user_risk, dump_user_risk)
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


def test_merge_never_overwrites_what_a_worker_learned() -> None:
    learned = {"new-country": [2.0, {"first": 1.0, "count": 11, "seen": {"US": 2.0}}, None]}
    warmed = {
        "new-country": [1.0, {"first": 0.0, "count": 11, "seen": {"NL": 1.0}}, None],
        "workload-new-network": [1.0, {"first": 0.0, "count": 3, "seen": {}}, None],
    }
    merged = merge(learned, warmed)
    assert merged is not None
    assert merged["new-country"] == learned["new-country"]
    assert merged["workload-new-network"] == warmed["workload-new-network"]
    assert merge(merged, warmed) is None  # nothing left to add: no write
    assert merge(None, warmed) == warmed


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
