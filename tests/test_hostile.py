"""The worker and the forwarder under hostile input and SIGKILL, on the real broker.

The decoders' probe corpus (tests/hostile.py) through a real worker: it keeps consuming and
every message is alerted, counted or dead-lettered. Then crashes: a worker SIGKILLed mid-
replay of several days, and a forwarder SIGKILLed mid-flush, lose no alert of ``scan``'s.
"""

from __future__ import annotations

import random
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from builders import dumps
from hostile import GOOD_IP, GOOD_UPN, corpus, good
from kafka import KafkaProducer
from test_streaming import (
    Worker,
    consume,
    last_versions,
    metric_sum,
    mismatches,
    scan_alerts,
    series,
    streaming,  # noqa: F401  (fixture)
    wait_for,
)

from pipeline.core.rules import REGISTRY
from pipeline.runtime.broker import free_port
from pipeline.runtime.procs import spawn, terminate
from pipeline.runtime.settings import Settings
from pipeline.sources.replay import replay
from tools.synth import sample_days

LETTER_LIMIT = 64 * 1024


def test_the_probe_corpus_through_a_worker_is_all_accounted_for(
    streaming: tuple[Settings, Worker],  # noqa: F811
    tmp_path: Path,
) -> None:
    settings, start = streaming
    probes = corpus(settings.max_event_bytes)
    worker = start(max_deadletter_bytes=LETTER_LIMIT)
    producer = KafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, max_request_size=8 * settings.max_event_bytes
    )
    for data, _, _ in probes.values():
        producer.send(settings.topic("raw"), data)
    producer.send(settings.topic("raw"), dumps({"records": [good("last")]}))
    producer.flush()
    producer.close()

    survivors = {rid for _, _, ids in probes.values() for rid in ids} | {"last"}
    reasons = sorted(r for _, rs, _ in probes.values() for r in rs)
    alerts = consume(
        settings,
        "alerts",
        lambda v: {orjson.loads(a)["signin_ids"][0] for a in v} >= survivors,
    )
    assert {orjson.loads(a)["signin_ids"][0] for a in alerts} == survivors
    dead = consume(settings, "deadletter", lambda v: len(v) >= len(reasons))
    letters = [orjson.loads(v) for v in dead]
    assert sorted(letter["reason"] for letter in letters) == reasons
    assert max(map(len, dead)) <= LETTER_LIMIT
    (big,) = [x for x in letters if x["reason"] == "too-large"]
    assert big["truncated"] and big["length"] == len(probes["oversized-3mb"][0])
    assert metric_sum(settings.metrics_port, "signin_risk_rejected_total") == len(reasons)
    assert metric_sum(settings.metrics_port, "signin_risk_deadletter_failures_total") == 0
    assert worker.poll() is None
    # Every raw offset committed: no lag on the work topics, and none reported for the
    # changelogs, which a worker never commits.
    lag = wait_for(
        "raw lag to drain",
        lambda: series(
            settings.metrics_port, "signin_risk_consumer_lag_messages", topic=settings.topic("raw")
        ),
        lambda v: v == 0,
        timeout_s=20,
    )
    assert lag == 0
    text = _metrics(settings.metrics_port)
    lagging = [x for x in text.splitlines() if x.startswith("signin_risk_consumer_lag_messages{")]
    assert lagging and all("changelog" not in x for x in lagging), lagging
    assert terminate(worker, 30, "worker") == 0
    log = b"".join(p.read_bytes() for p in tmp_path.glob("worker-*.log"))
    assert GOOD_UPN.encode() not in log and GOOD_IP.encode() not in log


def _metrics(port: int) -> str:
    import urllib.request

    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def split(alerts: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], set[Any]]:
    """Alerts of the rules keyed by user or sign-in, and the (rule, address) pairs of the
    incidents keyed by address."""
    ip = {k for k, a in alerts.items() if getattr(REGISTRY[a["rule"]], "keyed_by", "") == "ip"}
    others = {k: a for k, a in alerts.items() if k not in ip}
    return others, {(alerts[k]["rule"], alerts[k]["ip"]) for k in ip}


def test_a_worker_killed_mid_replay_alerts_as_scan_does(
    streaming: tuple[Settings, Worker],  # noqa: F811
    tmp_path: Path,
) -> None:
    """Three SIGKILLs while three days are replayed: the restarted worker resumes from its
    last commits with state that may hold what followed them, and alerts as scan does.

    Exactly so for every rule keyed by user or sign-in. A worker that restarts beside the
    dead members it replaces shares the group until their sessions expire and goes through
    the hops meanwhile, where users' records reach the address-keyed windows in partition
    order rather than event time: over a backlog of days, one address's daily sprays can
    become one incident. For those the worker must raise each (rule, address) scan does.
    """
    settings, start = streaming
    days = tmp_path / "days.ndjson"
    days.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in sample_days(3)))
    expected = scan_alerts(days)
    want, want_ip = split(expected)

    def complete(values: list[bytes]) -> bool:
        have, have_ip = split(last_versions(values))
        return not mismatches(have, want) and have_ip == want_ip

    rng = random.Random(13)
    worker = start()
    feeder = threading.Thread(
        target=replay, args=([str(days)], settings), kwargs={"rate": 250, "progress": False}
    )
    feeder.start()
    kills = 0
    for _ in range(3):
        time.sleep(rng.uniform(1.0, 3.0))
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        kills += 1
        worker = start()
    feeder.join()
    values = consume(
        settings,
        "alerts",
        complete,
        timeout_s=90,
    )
    assert kills == 3
    got, got_ip = split(last_versions(values))
    assert mismatches(got, want) == []
    assert got_ip == want_ip
    wait_for(
        "every raw offset committed",
        lambda: series(
            settings.metrics_port, "signin_risk_consumer_lag_messages", topic=settings.topic("raw")
        ),
        lambda v: v == 0,
        timeout_s=30,
    )


def test_a_forwarder_killed_mid_flush_loses_no_alert(
    streaming: tuple[Settings, Worker],  # noqa: F811
    tmp_path: Path,
) -> None:
    settings, _ = streaming
    out = tmp_path / "alerts.jsonl"
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"sinks:\n  out:\n    type: file\n    path: {out}\n    format: native\n    syslog: false\n"
    )
    ids = [f"alert-{i:04d}" for i in range(3000)]
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for alert_id in ids:
        alert = {
            "id": alert_id,
            "rule": "legacy-auth",
            "severity": "medium",
            "title": "t",
            "time": "2026-01-15T10:00:00.000000Z",
            "summary": "s",
        }
        producer.send(settings.topic("alerts"), key=alert_id.encode(), value=orjson.dumps(alert))
    producer.flush()
    producer.close()

    def forwarder() -> subprocess.Popen[bytes]:
        log = (tmp_path / "forward.log").open("ab")
        return spawn(
            ["forward", "--sink", "out", "--policy", str(policy)],
            settings.model_copy(update={"metrics_port": free_port()}),
            log,
        )

    rng = random.Random(3)
    for _ in range(3):
        proc = forwarder()
        wait_for(
            "the file to grow",
            lambda: out.stat().st_size if out.exists() else 0,
            lambda n: n > 0,
            timeout_s=30,
        )
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc = forwarder()
    try:
        delivered = wait_for(
            "every alert in the file",
            lambda: {orjson.loads(x)["id"] for x in out.read_bytes().splitlines() if x.strip()},
            lambda seen: seen >= set(ids),
            timeout_s=60,
        )
    finally:
        terminate(proc, 10, "forward")
    assert delivered == set(ids)
