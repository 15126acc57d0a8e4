"""``signin-risk demo``: the whole pipeline on one machine with nothing installed.

Starts the embedded broker, creates the topics, runs a real worker process, replays files
into the raw topic and prints alerts as the worker produces them (the alert table of
``pipeline.alerts.table``, each moment's rows in event time, ``--alerts-out`` written as
they come), then the incidents they form (the incidents topic) and where the worker serves
the mail-client inventory. It ends when the worker's committed offsets reach the end of the
raw and signins topics (every alert is then on the alerts topic, because the worker commits
only acknowledged outputs), or with ``--follow`` at Ctrl-C, and stops everything it started.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import orjson
import yaml
from kafka import KafkaConsumer, TopicPartition

from pipeline.alerts.table import Table, colour_wanted, terminal_width
from pipeline.runtime.broker import EmbeddedBroker, free_port
from pipeline.runtime.procs import Interrupted, spawn, spawn_worker, terminate
from pipeline.runtime.settings import Settings
from pipeline.runtime.topics import create_topics
from pipeline.sources.replay import replay

INVENTORY_VIEW_PORT = 9465


def embedded_settings(bootstrap: str, metrics_port: int) -> Settings:
    """Short group timeouts: Tansu holds a join for about half the rebalance timeout; and
    log ends confirmed by fetch, as Tansu's ListOffsets under-reports them."""
    return Settings(
        kafka_bootstrap=bootstrap,
        verify_log_end=True,
        session_timeout_s=3,
        rebalance_timeout_s=3,
        heartbeat_interval_s=0.5,
        metrics_port=metrics_port,
    )


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _drained(settings: Settings, group: KafkaConsumer) -> bool:
    """Has the worker committed everything on the raw and signins topics?

    ``group`` carries the worker's group id but never joins: it only reads committed offsets.
    """
    partitions = [
        TopicPartition(settings.topic(name), p)
        for name, count in (("raw", settings.raw_partitions), ("signins", settings.partitions))
        for p in range(count)
    ]
    for tp, end in group.end_offsets(partitions).items():
        if end and (group.committed(tp) or 0) < end:
            return False
    return True


CEF_SINK = "demo-cef"
HOLD_S = 0.5
"""How long an alert waits to be shown, so the alerts of one moment are shown in event time
(the worker judges in event time; the alerts topic's partitions interleave)."""
FOLLOW_HINT = (
    "following: the broker is {bootstrap}; replay more into it from another terminal with\n"
    "  SIGNIN_RISK_KAFKA_BOOTSTRAP={bootstrap} signin-risk replay FILE|DIR...\n"
    "Ctrl-C stops the worker and the broker and prints the summary"
)
DASHBOARD_HINT = (
    "dashboard: with --follow, scrape 127.0.0.1:{port} from Prometheus and import "
    "deploy/grafana/dashboards/signin-risk.json into Grafana (docs/dashboards.md)"
)


def _with_cef_sink(policy_file: str | None, cef_out: str, tmp: str) -> str:
    """The demo's policy plus a file sink writing RFC 5424 + CEF lines to ``cef_out``."""
    data = yaml.safe_load(Path(policy_file).read_text()) if policy_file else None
    data = data or {}
    sink = {"type": "file", "path": str(Path(cef_out).resolve()), "format": "cef"}
    data["sinks"] = (data.get("sinks") or {}) | {CEF_SINK: sink}
    path = Path(tmp) / "policy.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _lines(path: str) -> int:
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except FileNotFoundError:
        return 0


def run_demo(
    paths: Sequence[str],
    policy_file: str | None,
    alerts_out: BinaryIO | None,
    follow: bool,
    metrics_port: int = 9464,
    out: Any = sys.stdout,
    cef_out: str | None = None,
) -> int:
    if not _port_free(metrics_port):
        metrics_port = 0
    view_port = INVENTORY_VIEW_PORT if _port_free(INVENTORY_VIEW_PORT) else free_port()
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        # The inventory view on loopback, where it needs no token.
        settings = embedded_settings(broker.bootstrap, metrics_port).model_copy(
            update={"inventory_view": True, "inventory_view_port": view_port}
        )
        create_topics(settings)
        if cef_out:
            Path(cef_out).unlink(missing_ok=True)
            policy_file = _with_cef_sink(policy_file, cef_out, tmp)
        if policy_file:
            settings = settings.model_copy(update={"policy_file": str(Path(policy_file).resolve())})
        log_path = Path(tmp) / "worker.log"
        with log_path.open("wb") as log:
            worker = spawn_worker(settings, log)
            forwarder = None
            if cef_out:  # the forwarder's metrics would take the worker's port: none
                quiet = settings.model_copy(update={"metrics_port": 0})
                forwarder = spawn(["forward", "--sink", CEF_SINK], quiet, log)
        try:
            code, messages = _watch(settings, paths, worker, log_path, alerts_out, follow, out)
            if forwarder is not None and cef_out and code == 0:
                code = _await_cef(forwarder, cef_out, messages, out)
            return code
        finally:
            if forwarder is not None:
                terminate(forwarder, 20, "forwarder")
            terminate(worker, 20, "worker")


def _await_cef(forwarder: subprocess.Popen[bytes], cef_out: str, messages: int, out: Any) -> int:
    """Wait for the forwarder to write a line for every alert message on the topic."""
    deadline = time.monotonic() + 30
    while _lines(cef_out) < messages and time.monotonic() < deadline:
        if forwarder.poll() is not None:
            return 1
        time.sleep(0.2)
    print(f"{_lines(cef_out)} CEF line(s) (RFC 5424 syslog) in {cef_out}", file=out)
    return 0 if _lines(cef_out) >= messages else 1


def _watch(
    settings: Settings,
    paths: Sequence[str],
    worker: subprocess.Popen[bytes],
    log_path: Path,
    alerts_out: BinaryIO | None,
    follow: bool,
    out: Any,
) -> tuple[int, int]:
    """Print alerts until the input is drained; (exit status, alert messages seen)."""
    started = time.monotonic()
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        **settings.kafka_client_config(),
    )
    consumer.assign(
        [
            TopicPartition(settings.topic(topic), p)
            for topic in ("alerts", "incidents")
            for p in range(settings.partitions)
        ]
    )
    consumer.seek_to_beginning()
    group = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.app_id,
        enable_auto_commit=False,
        **settings.kafka_client_config(),
    )
    try:
        return _show(settings, paths, worker, alerts_out, follow, out, consumer, group, started)
    finally:  # the embedded broker ignores SIGTERM while clients are connected
        consumer.close()
        group.close()


def _show(
    settings: Settings,
    paths: Sequence[str],
    worker: subprocess.Popen[bytes],
    alerts_out: BinaryIO | None,
    follow: bool,
    out: Any,
    consumer: KafkaConsumer,
    group: KafkaConsumer,
    started: float,
) -> tuple[int, int]:
    table = Table(colour_wanted(out), terminal_width(out))
    incidents: dict[str, dict[str, Any]] = {}
    held: list[dict[str, Any]] = []
    seen = code = 0
    try:
        stats = replay(paths, settings, progress=False)
        where = "off"
        if settings.metrics_port:
            where = f"http://127.0.0.1:{settings.metrics_port}/metrics"
        print(
            f"replayed {stats.messages} event(s) from {len(paths)} file(s); "
            f"worker pid {worker.pid}; metrics {where}",
            file=out,
        )
        if settings.metrics_port:
            print(DASHBOARD_HINT.format(port=settings.metrics_port), file=out)
        if follow:
            print(FOLLOW_HINT.format(bootstrap=settings.kafka_bootstrap), file=out)
        print(table.header(), file=out, flush=True)
        quiet_since = held_since = time.monotonic()
        while True:
            if worker.poll() is not None:
                return 1, seen
            batch = consumer.poll(timeout_ms=200)
            for tp, messages in batch.items():
                if tp.topic == settings.topic("incidents"):
                    for message in messages:
                        incident = orjson.loads(message.value)
                        incidents[incident["id"]] = incident
                        if follow:
                            print(_incident_row(incident), file=out, flush=True)
                    continue
                seen += len(messages)
                for message in messages:
                    if alerts_out is not None:
                        alerts_out.write(message.value + b"\n")
                        alerts_out.flush()
                    if not held:
                        held_since = time.monotonic()
                    held.append(orjson.loads(message.value))
                    quiet_since = time.monotonic()
            if held and time.monotonic() - held_since > HOLD_S:
                _print_rows(table, held, out)
            if not follow and time.monotonic() - quiet_since > 1.0 and _drained(settings, group):
                break
    except KeyboardInterrupt as exc:  # what was shown is the demo's result either way
        # Ctrl-C ends a demo as its user meant (exit 0); SIGTERM keeps the shell's 143, so
        # a supervisor sees the demo was stopped.
        if isinstance(exc, Interrupted) and exc.signum == signal.SIGTERM:
            code = exc.exit_code
    _print_rows(table, held, out)
    print(f"\n{table.summary(time.monotonic() - started)}", file=out)
    print(f"\n{len(incidents)} incident(s):", file=out)
    for incident in sorted(incidents.values(), key=lambda i: (i["first"], i["id"])):
        print(_incident_row(incident), file=out)
    view = f"http://127.0.0.1:{settings.inventory_view_port}"
    print(
        f"\ninventory view: {view}/inventory and {view}/inventory.csv while the worker runs "
        "(--follow keeps it running); offline: signin-risk inventory FILE...",
        file=out,
    )
    return code, seen


def _print_rows(table: Table, held: list[dict[str, Any]], out: Any) -> None:
    """The alerts held, in event time (the alerts topic's partitions interleave), as rows."""
    for alert in sorted(held, key=lambda a: str(a.get("time", ""))):
        print(table.row(alert), file=out)
    out.flush()
    held.clear()


def _incident_row(incident: dict[str, Any]) -> str:
    """An incident as one line: its severity, then its narrative (who, what, where, when)."""
    return f"{incident['severity']:<9}{incident['summary']}"
