"""Prometheus config, rules and the Grafana dashboard against the real tools and services.

- promtool checks the config, the rules and their unit tests (deploy/prometheus/tests), and
  lints the project's own metrics (every metric of pipeline/runtime/metrics.py, touched
  with labels).
- The dashboard JSON is checked against Grafana's dashboard model.
- A real Prometheus (Debian's) scrapes a real stack on loopback: an Event Hub peer, the
  bridge, a worker and a syslog forwarder whose receiver is down at first (so failures,
  retries and the circuit breaker happen) with an unreadable record on the alerts topic (a
  dead letter). Every PromQL expression of the dashboard and of the rules then runs through
  /api/v1/query: each must parse, each dashboard query and recording rule must return data,
  and each alerting rule's metrics must exist (a healthy alert condition is empty).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
import yaml
from eventhub_peer import EventHubPeer
from kafka import KafkaProducer
from prometheus import Prometheus as PrometheusServer
from prometheus import PrometheusMissing, PromQLError, binary, loopback_config
from pydantic import SecretStr

from pipeline.runtime.broker import EmbeddedBroker, free_port
from pipeline.runtime.demo import embedded_settings
from pipeline.runtime.procs import spawn, terminate
from pipeline.runtime.topics import create_topics

REPO = Path(__file__).resolve().parents[1]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "signin-risk.json"
DATASOURCES = GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yaml"
DASHBOARD_PROVIDERS = GRAFANA_DIR / "provisioning" / "dashboards" / "signin-risk.yaml"
SAMPLE = REPO / "pipeline" / "data" / "sample-signins.ndjson"
SAMPLE_TENANT = "5e1f0c2a-7d43-4b8e-a9f6-2c81d4e7b093"
SAMPLE_SIGNINS = 466
SINK = "soc-syslog"
JOBS = ("signin-risk-worker", "signin-risk-bridge", "signin-risk-forwarder")

# Panel plugins built into Grafana 10/11 (no plugin install needed).
GRAFANA_PANELS = frozenset(
    (
        "alertlist", "annolist", "barchart", "bargauge", "candlestick", "canvas", "dashlist",
        "datagrid", "flamegraph", "gauge", "geomap", "heatmap", "histogram", "logs", "news",
        "nodeGraph", "piechart", "row", "stat", "state-timeline", "status-history", "table",
        "text", "timeseries", "traces", "trend", "xychart",
    )
)  # fmt: skip
# Grafana's global variables (https://grafana.com/docs/grafana/latest/dashboards/variables/).
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}
VARIABLE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)|\[\[(\w+)\]\]")
METRIC_NAME = re.compile(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b")
BUILTIN_SERIES = {"up", "ALERTS", "ALERTS_FOR_STATE"}

# Expressions checked for syntax only against the live stack, with the reason. Every
# component whose metrics the dashboard and rules use runs in this test (bridge, worker,
# forwarder), so nothing is exempt today; a metric referenced before pipeline/runtime/metrics.py
# defines it belongs here ("not yet available") rather than being faked.
SYNTAX_ONLY: dict[str, str] = {}


def run(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    try:
        exe = binary(args[0])
    except PrometheusMissing as exc:
        pytest.fail(str(exc))
    return subprocess.run(
        [exe, *args[1:]],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"{' '.join(map(str, result.args))} exited {result.returncode}\n"
        f"{result.stdout}\n{result.stderr}"
    )


# -- expressions -------------------------------------------------------------------------


def load_dashboard() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Top-level panels and those inside (collapsed) rows."""
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out += panel.get("panels", [])
    return out


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, expr) of every PromQL expression: panel targets and annotation queries."""
    found = [
        (f"panel {p['id']} {p.get('title', '')!r} target {t.get('refId')}", t["expr"])
        for p in all_panels(dashboard)
        for t in p.get("targets", [])
        if "expr" in t
    ]
    found += [
        (f"annotation {a['name']!r}", a["expr"])
        for a in dashboard.get("annotations", {}).get("list", [])
        if a.get("expr")
    ]
    return found


def variable_query(var: dict[str, Any]) -> tuple[str, str]:
    """(label, metric) of a ``label_values(metric, label)`` variable query."""
    match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var["query"]["query"])
    assert match is not None, f"variable {var['name']}: {var['query']['query']}"
    return match[2], match[1]


def rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def rule_where(rule: dict[str, Any]) -> str:
    return f"record {rule['record']}" if "record" in rule else f"alert {rule['alert']}"


def metric_names(expr: str) -> set[str]:
    """Series names an expression selects (functions, labels and keywords left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    return {
        name
        for name in METRIC_NAME.findall(text)
        if name.startswith(("signin_risk", "process_", "python_")) or name in BUILTIN_SERIES
    }


# -- promtool ----------------------------------------------------------------------------


def test_the_compose_config_and_its_loopback_variant_pass_promtool(tmp_path: Path) -> None:
    assert_ok(run(["promtool", "check", "config", str(PROMETHEUS_CONFIG)]))
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} >= set(JOBS)
    compose_targets = [
        target
        for job in config["scrape_configs"]
        if job["job_name"] in JOBS
        for static in job["static_configs"]
        for target in static["targets"]
    ]
    assert compose_targets == ["worker:9464", "bridge:9464", "forwarder:9464"]
    loopback = loopback_config(
        {job: [f"127.0.0.1:{9464 + i}"] for i, job in enumerate(JOBS)},
        self_address="127.0.0.1:9090",
    )
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(loopback))
    result = run(["promtool", "check", "config", str(path)])
    assert_ok(result)
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout


def test_the_rules_pass_promtool_check_rules() -> None:
    assert RULE_FILES
    assert_ok(run(["promtool", "check", "rules", *map(str, RULE_FILES)]))


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    assert RULE_TESTS
    assert_ok(run(["promtool", "test", "rules", *map(str, RULE_TESTS)]))


def test_every_alerting_rule_has_firing_and_quiet_unit_tests() -> None:
    """Each alert is expected to fire in some case and to stay quiet in another."""
    fires: set[str] = set()
    quiet: set[str] = set()
    recorded: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
            recorded |= {c["expr"] for c in case.get("promql_expr_test", [])}
    alerts = {r["alert"] for r in rules() if "alert" in r}
    records = {r["record"] for r in rules() if "record" in r}
    assert alerts - fires == set(), "alerts never tested firing"
    assert alerts - quiet == set(), "alerts never tested quiet"
    assert records - recorded == set(), "recording rules without an expected value"
    for rule in rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
            assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule


REGISTRY_SCRIPT = """
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics import MetricWrapperBase
import pipeline.runtime.metrics as m

for obj in vars(m).values():
    if not isinstance(obj, MetricWrapperBase):
        continue
    names = obj._labelnames
    child = obj.labels(*[f"{n}-value" for n in names]) if names else obj
    {"counter": lambda: child.inc(3), "gauge": lambda: child.set(2),
     "histogram": lambda: child.observe(0.2), "summary": lambda: child.observe(0.2),
     "info": lambda: child.info({"k": "v"}), "enum": lambda: None}[obj._type]()
print(generate_latest(REGISTRY).decode(), end="")
"""


@pytest.fixture(scope="module")
def registry_text() -> str:
    """The exposition of the services' registry with every metric of pipeline/runtime/metrics.py
    given a child; in a subprocess, so this session's registry keeps no fake labels."""
    out = subprocess.run(
        [sys.executable, "-c", REGISTRY_SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return out.stdout


def families(text: str, prefix: str = "signin_risk_") -> str:
    """The exposition lines of the metric families whose name starts with ``prefix``."""
    kept = []
    for line in text.splitlines():
        name = line.split()[2] if line.startswith("# ") and len(line.split()) > 2 else line
        if name.startswith(prefix):
            kept.append(line)
    return "\n".join(kept) + "\n"


def series_names(text: str) -> set[str]:
    return {
        re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line[:1] not in "#"
    }


def promtool_lint(text: str) -> list[str]:
    """promtool's complaints about the exposition ``text`` (none: an empty list)."""
    result = run(["promtool", "check", "metrics"], stdin=text.encode())
    problems = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if result.returncode != 0 and not problems:
        problems = [f"promtool check metrics exited {result.returncode}"]
    return problems


def test_the_projects_metrics_pass_promtool_check_metrics(registry_text: str) -> None:
    ours = families(registry_text)
    assert ours.count("# TYPE ") >= 25, ours
    assert promtool_lint(ours) == []


def test_promtool_check_metrics_does_catch_a_badly_named_metric() -> None:
    """The lint above has teeth: a gauge named like a counter is reported."""
    bad = "# HELP signin_risk_bad_total A gauge.\n# TYPE signin_risk_bad_total gauge\n"
    bad += "signin_risk_bad_total 1\n"
    assert any("signin_risk_bad_total" in p for p in promtool_lint(bad))


def test_every_metric_the_dashboard_and_rules_use_is_defined(registry_text: str) -> None:
    """Metric names in every expression exist in pipeline/runtime/metrics.py (or are Prometheus' own
    or a recording rule): a typo or a metric not yet added fails here, by name."""
    defined = series_names(registry_text) | BUILTIN_SERIES
    defined |= {r["record"] for r in rules() if "record" in r}
    exprs = dashboard_exprs(load_dashboard()) + [(rule_where(r), r["expr"]) for r in rules()]
    missing = {
        where: sorted(metric_names(expr) - defined)
        for where, expr in exprs
        if metric_names(expr) - defined
    }
    assert missing == {}
    used = set().union(*(metric_names(e) for _, e in exprs))
    assert {"signin_risk_signins_total", "signin_risk_sink_send_seconds_bucket", "up"} <= used


# -- the Grafana dashboard -----------------------------------------------------------------


def provisioned_uid() -> str:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    uid: str = source["uid"]
    return uid


def test_the_provisioning_files_fit_the_dashboard() -> None:
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["access"] == "proxy"
    (provider,) = yaml.safe_load(DASHBOARD_PROVIDERS.read_text())["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"].startswith("/")
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    assert variables["datasource"]["current"]["value"] == provisioned_uid()


def test_the_dashboard_follows_grafanas_dashboard_model() -> None:
    dashboard = load_dashboard()
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"]
    panels = all_panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert {p["type"] for p in panels} <= GRAFANA_PANELS
    allowed_uids = {"${datasource}", "$datasource", provisioned_uid()}
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        where = f"panel {panel['id']} {panel.get('title')!r}"
        grid = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(grid) and all(isinstance(grid[k], int) for k in grid)
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, where
        for cell in itertools.product(
            range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])
        ):
            assert cell not in cells, f"{where} overlaps {cells[cell]}"
            cells[cell] = where
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["type"] == "prometheus", where
        assert panel["datasource"]["uid"] in allowed_uids, where
        targets = panel["targets"]
        assert targets, where
        assert len({t["refId"] for t in targets}) == len(targets), where
        for target in targets:
            assert target["expr"].strip() and target["refId"], where
            if "datasource" in target:
                assert target["datasource"]["uid"] in allowed_uids, where


def test_the_dashboards_variables_are_defined() -> None:
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name, metric in (
        ("tenant", "signin_risk_signins_total"),
        ("rule", "signin_risk_alerts_total"),
    ):
        var = variables[name]
        assert var["type"] == "query" and var["multi"] and var["includeAll"], name
        assert var["query"]["query"] == f"label_values({metric}, {name})"
        assert var["datasource"]["uid"] in {"${datasource}", provisioned_uid()}
    texts = [e for _, e in dashboard_exprs(dashboard)]
    texts += [json.dumps(p.get("datasource")) for p in all_panels(dashboard)]
    texts += [v["query"]["query"] for v in variables.values() if v["type"] == "query"]
    used = {next(g for g in m.groups() if g) for t in texts for m in VARIABLE.finditer(t)}
    assert used - set(variables) - set(GRAFANA_BUILTINS) == set()
    assert {"tenant", "rule", "datasource", "__rate_interval"} <= used
    exprs = " ".join(texts)
    assert 'tenant=~"$tenant"' in exprs and 'rule=~"$rule"' in exprs


def test_rate_queries_use_the_rate_interval() -> None:
    """A fixed window in rate() breaks at other scrape intervals: $__rate_interval, or
    $__range for totals over the time picker's range."""
    for where, expr in dashboard_exprs(load_dashboard()):
        for window in re.findall(r"(?:rate|increase)\([^\[]*\[([^\]]+)\]", expr):
            assert window in ("$__rate_interval", "$__range"), f"{where}: [{window}] in {expr}"


# -- the live stack --------------------------------------------------------------------------


class SyslogReceiver:
    """A TCP syslog receiver that refuses connections (bound, not listening) until opened."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.received = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def open(self) -> None:
        self.sock.listen()
        self.sock.settimeout(0.2)
        self._spawn(self._accept)

    def _spawn(self, target: Any, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(0.2)
            self._spawn(self._read, conn)

    def _read(self, conn: socket.socket) -> None:
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                self.received += len(data)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self.sock.close()


@dataclass
class Stack:
    prometheus: PrometheusServer
    ports: dict[str, int]
    receiver: SyslogReceiver


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text: str = answer.read().decode()
        return text


@pytest.fixture(scope="module")
def stack(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Prometheus scraping bridge, worker and forwarder over the sample, with one sink outage
    and one dead letter behind it; everything stopped (and checked gone) afterwards."""
    tmp = tmp_path_factory.mktemp("observability")
    tag = uuid4().hex[:8]
    receiver = SyslogReceiver()
    policy = tmp / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {"sinks": {SINK: {"type": "syslog", "host": "127.0.0.1", "port": receiver.port}}}
        )
    )
    ports = {job: free_port() for job in JOBS}
    started: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    feeder: threading.Thread | None = None
    with EventHubPeer(hub="signins", partitions=2) as peer:
        settings = embedded_settings(broker.bootstrap, 0).model_copy(
            update={
                "topic_prefix": f"o{tag}.",
                "app_id": f"signin-risk-o{tag}",
                "eventhub_connection_string": SecretStr(peer.connection_string("signins")),
                "eventhub_checkpoint_path": str(tmp / "checkpoints.sqlite"),
                "eventhub_load_balancing_interval_s": 1.0,
                "eventhub_max_wait_s": 0.2,
                "eventhub_lag_interval_s": 0.5,
                "sink_breaker_failures": 2,
                "sink_breaker_cooldown_s": 1.0,
                "sink_backoff_max_s": 0.5,
            }
        )
        create_topics(settings)
        prometheus = PrometheusServer(
            {job: [f"127.0.0.1:{port}"] for job, port in ports.items()}, tmp / "prometheus"
        ).start()
        prometheus_pid = prometheus.pid
        try:
            for job, args in (
                ("signin-risk-worker", ["worker"]),
                ("signin-risk-bridge", ["bridge"]),
                ("signin-risk-forwarder", ["forward", "--sink", SINK, "--policy", str(policy)]),
            ):
                log_path = tmp / f"{job}.log"
                with log_path.open("wb") as log:
                    service = settings.model_copy(update={"metrics_port": ports[job]})
                    started.append((job, spawn(args, service, log), log_path))
            stack = Stack(prometheus, ports, receiver)
            prom = prometheus

            def value(expr: str) -> float:
                return prom.value(expr) or 0.0

            def sink_failing() -> bool:
                failures = f'sum(increase(signin_risk_sink_failures_total{{sink="{SINK}"}}[1m]))'
                circuit = f'signin_risk_sink_circuit_open{{sink="{SINK}"}}'
                return value(failures) > 0 and bool(prom.vector(circuit))

            def delivered() -> bool:
                alerts = value("sum(signin_risk_alerts_total)")
                return (
                    value("sum(signin_risk_signins_total)") == SAMPLE_SIGNINS
                    and value("sum(signin_risk_rejected_total)") == 1  # the poison envelope
                    and alerts >= 20
                    and value(f'sum(signin_risk_sink_sent_total{{sink="{SINK}"}})') >= alerts
                    and prom.value(f'sum(signin_risk_sink_buffer_alerts{{sink="{SINK}"}})') == 0
                )

            def lags() -> bool:
                return bool(
                    prom.vector("signin_risk_consumer_lag_messages")
                    and prom.vector("signin_risk_eventhub_lag_events")
                )

            def settled() -> bool:
                series = prom.query('{__name__=~"signin_risk_.+"}[1m]')["result"]
                return bool(series) and min(len(s["values"]) for s in series) >= 2

            prom.wait_for("every target up", lambda: value("count(up == 1)") == len(JOBS) + 1, 40)
            # An unreadable record on the alerts topic: the forwarder dead-letters it.
            producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
            producer.send(settings.topic("alerts"), b"{not an alert")
            producer.flush()
            producer.close()
            # The sample's envelopes (and a poison one) arrive over a few seconds, so the
            # counters rise across scrapes and rates are not zero.
            envelopes = [*SAMPLE.read_bytes().splitlines(), b'{"records": [\xff']

            def feed() -> None:
                for i, body in enumerate(envelopes):
                    peer.append(peer.partition_ids[i % 2], body)
                    time.sleep(0.4)

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            prom.wait_for("sink failures rising while the receiver is down", sink_failing)
            receiver.open()
            feeder.join()
            prom.wait_for("every sign-in processed and every alert delivered", delivered)
            prom.wait_for("the worker's consumer lag and the bridge's Event Hubs lag", lags)
            # rate() and increase() need two samples: a series born at the last scrape has one
            prom.wait_for("two samples of every series", settled, timeout_s=20)
            after = time.time() + 1.0
            prom.wait_for(
                "every rule group evaluated after the data arrived",
                lambda: all(_epoch(g["lastEvaluation"]) > after for g in prom.rule_groups()),
                timeout_s=20,
            )
            yield stack
        finally:
            if feeder is not None:
                feeder.join()
            codes = {job: terminate(proc, 30, job) for job, proc, _ in started}
            receiver.close()
            prometheus.close()
            assert prometheus_pid is not None
            with pytest.raises(ProcessLookupError):
                os.kill(prometheus_pid, 0)
    for job, _, log_path in started:
        text = log_path.read_text(errors="replace")
        assert "Traceback" not in text, f"{job}:\n{text[-3000:]}"
        assert codes[job] == 0, f"{job} exited {codes[job]}:\n{text[-3000:]}"


def _epoch(stamp: str) -> float:
    """An RFC 3339 time of the Prometheus API (nanoseconds, any offset) as Unix seconds."""
    match = re.fullmatch(r"([\d-]+T[\d:]+)(?:\.(\d+))?(Z|[+-][\d:]+)", stamp)
    assert match is not None, stamp
    zone = "+00:00" if match[3] == "Z" else match[3]
    return datetime.fromisoformat(match[1] + zone).timestamp() + float(f"0.{match[2] or 0}")


def expand(expr: str, prometheus: PrometheusServer, variables: dict[str, Any]) -> str:
    """``expr`` as Grafana sends it with every variable at its default (All) value."""

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name in GRAFANA_BUILTINS:
            return GRAFANA_BUILTINS[name]
        var = variables[name]
        if var.get("allValue"):
            return str(var["allValue"])
        label, metric = variable_query(var)
        options = prometheus.label_values(label, metric)
        # Grafana's multi-value format for Prometheus: metacharacters escaped as \\
        escaped = (re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", o) for o in options)
        return "(" + "|".join(escaped) + ")"

    return VARIABLE.sub(value, expr)


def test_prometheus_scrapes_every_service_and_loads_every_rule(stack: Stack) -> None:
    prom = stack.prometheus
    targets = {t["labels"]["job"]: t for t in prom.active_targets()}
    assert set(targets) == {*JOBS, "prometheus"}
    assert {job: t["health"] for job, t in targets.items()} == dict.fromkeys(targets, "up")
    loaded = {r["name"]: r for g in prom.rule_groups() for r in g["rules"]}
    assert set(loaded) == {r.get("record") or r["alert"] for r in rules()}
    unhealthy = {name: r.get("lastError") for name, r in loaded.items() if r["health"] != "ok"}
    assert unhealthy == {}


def test_what_prometheus_stored_matches_what_the_services_did(stack: Stack) -> None:
    prom = stack.prometheus
    assert prom.value("sum(signin_risk_signins_total)") == SAMPLE_SIGNINS
    assert prom.label_values("tenant", "signin_risk_signins_total") == [SAMPLE_TENANT]
    assert prom.value('sum(signin_risk_rejected_total{reason="invalid-utf8"})') == 1
    assert prom.value("sum(signin_risk_bridge_events_total)") == 11  # 10 envelopes + poison
    assert prom.value(f'sum(signin_risk_sink_deadlettered_total{{sink="{SINK}"}})') == 1
    assert (prom.value(f'sum(signin_risk_sink_failures_total{{sink="{SINK}"}})') or 0) >= 2
    assert (prom.value(f'sum(signin_risk_sink_retries_total{{sink="{SINK}"}})') or 0) >= 1
    assert stack.receiver.received > 0  # the alerts really reached the syslog receiver
    assert set(prom.label_values("rule", "signin_risk_alerts_total")) >= {
        "legacy-auth",
        "unapproved-mobile-client",
        "risky-signin",
        "outdated-outlook-mobile",
    }
    platforms = prom.label_values("platform", "signin_risk_outlook_mobile_signins_total")
    assert set(platforms) == {"ios", "android"}
    prom.wait_for(
        "no Event Hubs lag",
        lambda: prom.value("sum(signin_risk_eventhub_lag_events)") == 0,
        timeout_s=10,
    )
    # the dead letter fires at once; the failing sink is pending (it needs 10 minutes)
    alerts = {
        (s["alertname"], s["alertstate"], s.get("sink", ""))
        for s, _ in prom.vector('ALERTS{alertname=~"SigninRisk.*"}')
    }
    assert ("SigninRiskSinkDeadLettered", "firing", SINK) in alerts
    assert ("SigninRiskSinkFailing", "pending", SINK) in alerts


def test_every_dashboard_query_runs_and_returns_data(stack: Stack) -> None:
    prom = stack.prometheus
    dashboard = load_dashboard()
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    failures, empty = [], []
    for where, expr in dashboard_exprs(dashboard):
        try:
            query = expand(expr, prom, variables)
            result = prom.query(query)["result"]
        except KeyError as exc:
            failures.append(f"{where}: undefined variable {exc}")
            continue
        except PromQLError as exc:
            failures.append(f"{where}: {exc}")
            continue
        if not result and expr not in SYNTAX_ONLY:
            empty.append(f"{where}: {query}")
    assert {"errors": failures, "empty": empty} == {"errors": [], "empty": []}


def test_the_dashboards_variables_have_values(stack: Stack) -> None:
    prom = stack.prometheus
    for var in load_dashboard()["templating"]["list"]:
        if var["type"] != "query":
            continue
        label, metric = variable_query(var)
        assert prom.label_values(label, metric), var["name"]
    assert set(prom.label_values("job", "signin_risk_records_in_flight")) == set(JOBS)


def test_every_rule_expression_runs_against_the_live_stack(stack: Stack) -> None:
    """Recording rules must return data; an alerting rule's condition is empty when healthy,
    so each series it selects must exist instead."""
    prom = stack.prometheus
    stored = prom.metric_names()
    failures, empty, absent = [], [], {}
    for rule in rules():
        where, expr = rule_where(rule), rule["expr"]
        try:
            result = prom.query(expr)["result"]
        except PromQLError as exc:
            failures.append(f"{where}: {exc}")
            continue
        if expr in SYNTAX_ONLY:
            continue
        if "record" in rule:
            if not result:
                empty.append(where)
            if rule["record"] not in stored:
                empty.append(f"{where} (never recorded)")
        elif missing := metric_names(expr) - stored - {"ALERTS", "ALERTS_FOR_STATE"}:
            absent[where] = sorted(missing)
    assert {"errors": failures, "empty": empty, "absent": absent} == {
        "errors": [],
        "empty": [],
        "absent": {},
    }


def test_a_broken_query_is_reported(stack: Stack) -> None:
    """The checks above do fail: a syntax error raises, a misspelt metric returns nothing."""
    prom = stack.prometheus
    with pytest.raises(PromQLError, match="bad_data"):
        prom.query("sum by (tenant (rate(signin_risk_signins_total[1m]))")
    assert prom.query("sum(rate(signin_risk_signin_total[1m]))")["result"] == []


def test_every_services_live_metrics_pass_promtool_check_metrics(stack: Stack) -> None:
    for job, port in stack.ports.items():
        text = families(scrape(port))
        assert "signin_risk_" in text, job
        assert promtool_lint(text) == [], job
