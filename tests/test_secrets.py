"""Secrets stay in the process, and files with personal data are private to the service.

Every secret the pipeline knows is set at once (Kafka SASL, both Event Hubs, the Blob
checkpoint store, the pseudonym key and each sink's credential), every command runs with
its receivers dead, failing and retrying as in an outage, and then its output, its
``/metrics`` and every file it wrote are searched for each secret.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import stat
import subprocess
import sys
import time
import traceback
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from eventhub_peer import EventHubPeer
from kafka import KafkaProducer
from pydantic import SecretStr
from test_stopping import wait_until
from test_streaming import SAMPLE, reader

from pipeline import cli
from pipeline.runtime.broker import free_port
from pipeline.runtime.files import open_private
from pipeline.runtime.procs import terminate
from pipeline.runtime.settings import Settings
from pipeline.runtime.topics import create_topics
from pipeline.sinks.file import FileConfig, FileSink
from pipeline.sources.checkpoints import SqliteCheckpointStore, checkpoint_store

SINKS = ("splunk", "teams", "sentinel", "alerts-file", "eventhub")


def _secret(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


class Secrets:
    """One distinct value per secret, and the environment that sets all of them."""

    def __init__(self, dead: int, hub: int | None = None) -> None:
        """``hub``: the port of a live Event Hubs peer for the bridge (default: dead)."""
        self.dead = dead
        self.sasl = _secret("sasl-password")
        self.eventhub_key = base64.b64encode(_secret("eventhub-key").encode()).decode()
        self.blob_key = base64.b64encode(_secret("blob-key").encode()).decode()
        self.alerts_key = base64.b64encode(_secret("alerts-key").encode()).decode()
        self.pseudonym = _secret("pseudonym-key")
        self.hec = _secret("hec-token")
        self.webhook_path = _secret("webhook-path")
        self.client_secret = _secret("sentinel-client-secret")
        where = f"127.0.0.1:{dead}"
        self.eventhub = (
            f"Endpoint=sb://127.0.0.1:{hub or dead}/;SharedAccessKeyName=bridge;"
            f"SharedAccessKey={self.eventhub_key};EntityPath=signins"
            + (";UseDevelopmentEmulator=true" if hub else "")
        )
        self.blob = (
            "DefaultEndpointsProtocol=http;AccountName=devstore;"
            f"AccountKey={self.blob_key};BlobEndpoint=http://{where}/devstore;"
        )
        self.alerts = (
            f"Endpoint=sb://{where}/;SharedAccessKeyName=sink;"
            f"SharedAccessKey={self.alerts_key};EntityPath=alerts"
        )
        self.webhook = f"http://{where}/workflows/{self.webhook_path}/invoke?sig=x"

    def values(self) -> dict[str, str]:
        return {k: v for k, v in vars(self).items() if isinstance(v, str)}

    def env(self) -> dict[str, str]:
        return {
            "SIGNIN_RISK_SASL_USERNAME": "signin-risk",
            "SIGNIN_RISK_SASL_PASSWORD": self.sasl,
            "SIGNIN_RISK_EVENTHUB_CONNECTION_STRING": self.eventhub,
            "SIGNIN_RISK_EVENTHUB_BLOB_CONNECTION_STRING": self.blob,
            "SIGNIN_RISK_ALERTS_EVENTHUB_CONNECTION_STRING": self.alerts,
            "SIGNIN_RISK_PSEUDONYM_KEY": self.pseudonym,
            "SIGNIN_RISK_SINK_SPLUNK_TOKEN": self.hec,
            "SIGNIN_RISK_SINK_TEAMS_URL": self.webhook,
            "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000001",
            "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000002",
            "AZURE_CLIENT_SECRET": self.client_secret,
            "AZURE_AUTHORITY_HOST": f"https://127.0.0.1:{self.dead}",
        }


def write_policy(path: Path, secrets: Secrets, alerts_file: Path) -> Path:
    dead = f"127.0.0.1:{secrets.dead}"
    sinks = {
        "splunk": {"type": "hec", "url": f"http://{dead}", "verify_tls": False},
        "teams": {"type": "webhook", "template": "teams", "min_severity": "informational"},
        "sentinel": {"type": "sentinel", "endpoint": f"https://{dead}", "rule_id": "dcr-0"},
        "alerts-file": {"type": "file", "path": str(alerts_file), "pseudonymize": ["user"]},
    }
    path.write_text(yaml.safe_dump({"sinks": sinks}))
    return path


class Commands:
    """``signin-risk`` processes with the secrets' environment; each logs to its own file."""

    def __init__(self, tmp_path: Path, secrets: Secrets) -> None:
        self.tmp_path = tmp_path
        self.secrets = secrets
        self.env = secrets.env()
        self.procs: dict[str, tuple[subprocess.Popen[bytes], Path, int]] = {}
        self.metrics: list[str] = []

    def start(self, name: str, *args: str, **settings: str) -> None:
        port = free_port()
        log_path = self.tmp_path / f"{name}.log"
        env = os.environ | self.env | {"SIGNIN_RISK_METRICS_PORT": str(port)}
        env |= {f"SIGNIN_RISK_{k.upper()}": v for k, v in settings.items()}
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli", *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = (proc, log_path, port)

    def log(self, name: str) -> str:
        return self.procs[name][1].read_text(errors="replace")

    def scrape_and_stop(self) -> None:
        """Every live service's ``/metrics``, then SIGTERM to all."""
        for name, (proc, _, port) in self.procs.items():
            if name.split("-")[0] in ("worker", "bridge", "forward") and proc.poll() is None:
                self.metrics.append(scrape(port))
        for proc, _, _ in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # all at once; then wait for each
        for name, (proc, _, _) in self.procs.items():
            terminate(proc, 10, name)


def scrape(port: int) -> str:
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                return str(answer.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def hub() -> Iterator[EventHubPeer]:
    """The bridge's hub, alive with one envelope, so its key is actually used."""
    with EventHubPeer() as peer:
        peer.append("0", SAMPLE.read_bytes().splitlines()[0])
        yield peer


@pytest.fixture
def make_commands(tmp_path: Path) -> Iterator[Callable[[int | None], Commands]]:
    made: list[Commands] = []

    def make(hub: int | None = None) -> Commands:
        made.append(Commands(tmp_path, Secrets(free_port(), hub)))
        return made[-1]

    try:
        yield make
    finally:
        for commands in made:
            for name, (proc, _, _) in commands.procs.items():
                terminate(proc, 10, name)


def assert_nothing_leaked(secrets: Secrets, tmp_path: Path, metrics: list[str]) -> None:
    """No secret in any log, file or scrape; which secret leaked where, not its value."""
    texts = {str(p.relative_to(tmp_path)): p.read_bytes() for p in tmp_path.rglob("*")}
    texts |= {f"/metrics #{i}": m.encode() for i, m in enumerate(metrics)}
    leaks = [
        f"{name} in {where}"
        for name, value in secrets.values().items()
        for where, data in texts.items()
        if value.encode() in data
    ]
    assert leaks == []


def test_the_search_finds_a_planted_secret(tmp_path: Path) -> None:
    secrets = Secrets(free_port())
    (tmp_path / "a.log").write_text(f"token {secrets.hec} in a log line")
    with pytest.raises(AssertionError, match=r"hec in a\.log"):
        assert_nothing_leaked(secrets, tmp_path, [])
    with pytest.raises(AssertionError, match=r"sasl in /metrics #0"):
        assert_nothing_leaked(secrets, tmp_path / "none", [f'x{{p="{secrets.sasl}"}} 1'])


def test_no_secret_leaks_while_every_receiver_is_dead(
    make_commands: Callable[[int | None], Commands], tmp_path: Path
) -> None:
    """Kafka, Event Hubs, the sinks: nothing listens. The services retry at start."""
    commands = make_commands(None)
    secrets = commands.secrets
    policy = write_policy(tmp_path / "policy.yaml", secrets, tmp_path / "alerts.log")
    dead = {
        "kafka_bootstrap": f"127.0.0.1:{secrets.dead}",
        "security_protocol": "SASL_PLAINTEXT",
        "eventhub_checkpoint_path": str(tmp_path / "checkpoints.sqlite"),
    }
    commands.start("worker", "worker", **dead)
    commands.start("bridge", "bridge", **dead)
    for sink in SINKS:
        commands.start(
            f"forward-{sink}", "forward", "--sink", sink, "--policy", str(policy), **dead
        )
    commands.start("replay", "replay", str(SAMPLE), **dead)
    commands.start("scan", "scan", str(SAMPLE), "--rejects", str(tmp_path / "rejects.jsonl"))
    commands.start("check-config", "check-config", str(policy))
    wait_until("the bridge retries", lambda: "retrying in 1.0 s" in commands.log("bridge"))
    commands.scrape_and_stop()
    assert "Kafka unreachable" in commands.log("forward-splunk")
    assert_nothing_leaked(secrets, tmp_path, commands.metrics)
    assert mode_of(tmp_path / "checkpoints.sqlite") == mode_of(tmp_path / "rejects.jsonl") == 0o600


def test_no_secret_leaks_while_sinks_and_stores_fail(
    make_commands: Callable[[int | None], Commands],
    hub: EventHubPeer,
    kafka_settings: Settings,
    tmp_path: Path,
) -> None:
    """Kafka is up and holds an alert: each sink tries its receiver with its credential and
    fails (the alerts hub too). One bridge signs in to a live hub with its key and bridges
    an envelope; another runs against a Blob checkpoint store that is not there (its SDK
    retries longer than this test runs; ``test_a_failing_blob_store_names_no_secret`` has
    its error)."""
    commands = make_commands(hub.port)
    secrets = commands.secrets
    alerts_file = tmp_path / "alerts.log"
    policy = write_policy(tmp_path / "policy.yaml", secrets, alerts_file)
    create_topics(kafka_settings)
    producer = KafkaProducer(bootstrap_servers=kafka_settings.kafka_bootstrap)
    alert = {
        "id": "a-1",
        "rule": "legacy-auth",
        "severity": "high",
        "time": "2026-11-20T09:05:06.562959Z",
        "title": "Legacy authentication sign-in",
        "user": "grace.kim@contoso.com",
        "user_id": "u-1",
        "ip": "203.0.113.10",
    }
    producer.send(kafka_settings.topic("alerts"), orjson.dumps(alert))
    producer.close()
    live = {
        "kafka_bootstrap": kafka_settings.kafka_bootstrap,
        "topic_prefix": kafka_settings.topic_prefix,
        "app_id": kafka_settings.app_id,
        "session_timeout_s": "3",
        "rebalance_timeout_s": "3",
        "heartbeat_interval_s": "0.5",
        "sink_backoff_max_s": "0.5",
    }
    for sink in SINKS:
        commands.start(
            f"forward-{sink}", "forward", "--sink", sink, "--policy", str(policy), **live
        )
    quick = {"eventhub_load_balancing_interval_s": "1", "eventhub_lag_interval_s": "0.5"}
    commands.start("bridge-blob", "bridge", eventhub_checkpoint_store="blob", **quick, **live)
    checkpoints = str(tmp_path / "checkpoints.sqlite")
    commands.start("bridge", "bridge", eventhub_checkpoint_path=checkpoints, **quick, **live)
    commands.start("worker", "worker", security_protocol="SASL_PLAINTEXT", **live)

    def failed(name: str) -> Callable[[], bool]:
        return lambda: "retrying in" in commands.log(f"forward-{name}")

    for sink in ("splunk", "teams", "sentinel", "eventhub"):
        wait_until(f"sink {sink} failed", failed(sink))
    wait_until(
        "the file sink wrote", lambda: alerts_file.exists() and alerts_file.stat().st_size > 0
    )
    wait_until("the bridge bridged", lambda: bool(read_raw(kafka_settings)))
    commands.scrape_and_stop()
    assert "grace.kim" not in alerts_file.read_text()  # pseudonymised with the key
    assert stat.S_IMODE(alerts_file.stat().st_mode) == 0o600
    assert_nothing_leaked(secrets, tmp_path, commands.metrics)


@pytest.mark.parametrize("credential", ["AccountKey", "SharedAccessSignature"])
def test_a_failing_blob_store_names_no_secret(credential: str) -> None:
    """The error the bridge's SDK logs when the Blob checkpoint store is unreachable."""
    secret = base64.b64encode(_secret("blob").encode()).decode()
    connection = (
        f"DefaultEndpointsProtocol=http;AccountName=devstore;{credential}={secret};"
        f"BlobEndpoint=http://127.0.0.1:{free_port()}/devstore;"
    )
    settings = Settings(
        eventhub_checkpoint_store="blob", eventhub_blob_connection_string=SecretStr(connection)
    )

    async def fail() -> BaseException:
        store = checkpoint_store(settings)
        try:
            await store.list_ownership("ns", "hub", "$Default", retry_total=0)
        except Exception as exc:
            return exc
        finally:
            await store.close()
        raise AssertionError("the store answered")

    error = asyncio.run(fail())
    text = "".join(traceback.format_exception(error)) + repr(error)
    assert "Cannot connect" in text
    assert secret not in text and connection not in text


def read_raw(settings: Settings) -> list[Any]:
    consumer = reader(settings, "raw", idle_ms=300)
    try:
        return list(consumer)
    finally:
        consumer.close()


def test_settings_shown_masked_hold_no_secret(
    make_commands: Callable[[int | None], Commands], tmp_path: Path
) -> None:
    commands = make_commands(None)
    secrets = commands.secrets
    masked = orjson.dumps(Settings(**settings_of(secrets.env())).masked())
    assert not [name for name, v in secrets.values().items() if v.encode() in masked]


def settings_of(env: dict[str, str]) -> dict[str, Any]:
    prefix = "SIGNIN_RISK_"
    fields = Settings.model_fields
    named = {k.removeprefix(prefix).lower(): v for k, v in env.items() if k.startswith(prefix)}
    return {k: v for k, v in named.items() if k in fields}


# -- files with personal data ---------------------------------------------------------------


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would leave new files world-writable: the mode must not depend on it."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_private_files_get_their_mode_new_or_existing(tmp_path: Path) -> None:
    new = tmp_path / "new.jsonl"
    with open_private(new, 0o600) as out:
        out.write(b"one\n")
    assert mode_of(new) == 0o600
    old = tmp_path / "old.jsonl"
    old.write_bytes(b"before\n")
    old.chmod(0o644)
    with open_private(old, 0o640, append=True) as out:
        out.write(b"after\n")
    assert mode_of(old) == 0o640 and old.read_bytes() == b"before\nafter\n"
    with open_private(old, 0o600) as out:  # truncating
        out.write(b"x")
    assert mode_of(old) == 0o600 and old.read_bytes() == b"x"


@pytest.mark.usefixtures("open_umask")
def test_checkpoint_store_and_its_journals_are_private(tmp_path: Path) -> None:
    path = tmp_path / "checkpoints" / "c.sqlite"
    store = SqliteCheckpointStore(path)
    store._db.execute("PRAGMA journal_mode=PERSIST")  # keeps the journal file to look at
    store._db.execute("INSERT INTO checkpoint VALUES ('ns', 'h', 'g', '0', '1', 1)")
    assert mode_of(path) == mode_of(Path(f"{path}-journal")) == 0o600
    store._db.execute("PRAGMA journal_mode=WAL")
    store._db.execute("INSERT INTO checkpoint VALUES ('ns', 'h', 'g', '1', '1', 1)")
    assert mode_of(Path(f"{path}-wal")) == mode_of(Path(f"{path}-shm")) == 0o600
    store.close()

    older = tmp_path / "older.sqlite"  # an older version's store, and stray sidecars
    SqliteCheckpointStore(older).close()
    for suffix in ("", "-wal", "-journal"):
        Path(f"{older}{suffix}").touch()
        Path(f"{older}{suffix}").chmod(0o644)
    settings = Settings(eventhub_checkpoint_path=str(older), file_mode="0640")
    reopened = checkpoint_store(settings)
    assert [mode_of(Path(f"{older}{s}")) for s in ("", "-wal", "-journal")] == [0o640] * 3
    reopened.close()


@pytest.mark.usefixtures("open_umask")
def test_the_file_sink_keeps_its_file_private(tmp_path: Path) -> None:
    path = tmp_path / "alerts.log"
    path.write_text("")
    path.chmod(0o644)
    sink = FileSink("f", FileConfig(type="file", path=str(path), syslog=False), 0o640)
    assert mode_of(path) == 0o640  # at start, before any alert
    path.unlink()  # rotated away by a log shipper
    alert = {"id": "a", "rule": "r", "severity": "low", "time": "2026-01-01T00:00:00Z"}
    asyncio.run(sink.send([alert | {"title": "t"}]))
    assert mode_of(path) == 0o640
    own = FileSink("f", FileConfig(type="file", path=str(path), mode="0600"), 0o644)
    assert mode_of(path) == 0o600  # the sink's own mode beats the setting
    assert own.name == "f"


def test_rejects_and_alerts_out_files_are_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(b'{"records": [{"category": "SignInLogs"}]}\nnot json\n')
    rejects = tmp_path / "rejects.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "scan", str(bad), "--rejects", str(rejects)],
        env=os.environ | {"SIGNIN_RISK_FILE_MODE": "0640"},
        capture_output=True,
        preexec_fn=lambda: os.umask(0),
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert rejects.read_bytes() and mode_of(rejects) == 0o640

    import pipeline.runtime.demo

    written: list[int] = []

    def demo(paths: Any, policy: Any, alerts_out: Any, *args: Any, **kwargs: Any) -> int:
        written.append(stat.S_IMODE(os.fstat(alerts_out.fileno()).st_mode))
        return 0

    monkeypatch.setattr(pipeline.runtime.demo, "run_demo", demo)
    monkeypatch.setenv("SIGNIN_RISK_FILE_MODE", "0600")
    alerts_out = tmp_path / "alerts.jsonl"
    alerts_out.write_text("")
    alerts_out.chmod(0o644)
    assert cli.main(["demo", "--alerts-out", str(alerts_out)]) == 0
    assert written == [0o600]
