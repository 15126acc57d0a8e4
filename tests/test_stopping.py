"""Every long-running command is gone within five seconds of SIGTERM, whatever it was doing:
waiting for a broker that is not there, backing off after the broker died under it, or
running normally. Real processes, real signals; the stop time of each is measured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from eventhub_peer import EventHubPeer
from kafka import KafkaProducer
from pydantic import SecretStr
from test_streaming import SAMPLE, metric_sum, series

from pipeline.runtime.broker import EmbeddedBroker, free_port
from pipeline.runtime.demo import embedded_settings
from pipeline.runtime.procs import FORCE_EXIT_S, STOP_WITHIN_S, spawn
from pipeline.runtime.settings import Settings
from pipeline.runtime.topics import create_topics

Proc = subprocess.Popen[bytes]
COOPERATIVE = "did not stop within"
"""What the backstop logs when it ends a process; only the worker may need it."""


class Running:
    """``signin-risk`` processes of one test, each logging to a file; all killed at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: dict[str, tuple[Proc, Path]] = {}

    def start(self, name: str, args: list[str], settings: Settings) -> Proc:
        log_path = self.tmp_path / f"{name}.log"
        with log_path.open("wb") as log:
            proc = spawn(args, settings, log)
        self.procs[name] = (proc, log_path)
        return proc

    def log(self, name: str) -> str:
        return self.procs[name][1].read_text(errors="replace")

    def wait_for_log(self, name: str, text: str, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while text not in self.log(name):
            assert self.procs[name][0].poll() is None, self.log(name)[-3000:]
            assert time.monotonic() < deadline, f"{name} never logged {text!r}"
            time.sleep(0.1)

    def stop_all(self) -> dict[str, tuple[int | None, float]]:
        """SIGTERM every process at once; (exit status or None, seconds) of each."""
        signalled = time.monotonic()
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        stopped: dict[str, tuple[int | None, float]] = {}
        deadline = signalled + STOP_WITHIN_S + 5
        while len(stopped) < len(self.procs) and time.monotonic() < deadline:
            for name, (proc, _) in self.procs.items():
                if name not in stopped and proc.poll() is not None:
                    stopped[name] = (proc.returncode, time.monotonic() - signalled)
            time.sleep(0.02)
        for name in self.procs.keys() - stopped.keys():
            stopped[name] = (None, time.monotonic() - signalled)
        return stopped

    def kill_all(self) -> None:
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    procs = Running(tmp_path)
    try:
        yield procs
    finally:
        procs.kill_all()


def report(stopped: dict[str, tuple[int | None, float]]) -> None:
    """The measured stop times, for the log of the run (``pytest -s`` or ``-rA``)."""
    for name, (code, seconds) in sorted(stopped.items()):
        print(f"{name}: exit {code} after {seconds:.2f} s")


def assert_stopped_in_time(
    running: Running, stopped: dict[str, tuple[int | None, float]], backstop: frozenset[str]
) -> None:
    for name, (code, seconds) in stopped.items():
        log = running.log(name)
        assert code is not None and seconds < STOP_WITHIN_S, (
            f"{name}: {seconds:.1f} s\n{log[-3000:]}"
        )
        if name not in backstop:
            assert COOPERATIVE not in log, f"{name} needed the backstop:\n{log[-3000:]}"
            assert "Traceback" not in log, f"{name}:\n{log[-3000:]}"


def test_commands_waiting_for_a_dead_broker_stop_on_sigterm(
    running: Running, tmp_path: Path
) -> None:
    """Nothing listens on the port: bridge and forwarder retry with backoff, replay waits in
    kafka-python's bootstrap, the worker gives up by itself (Faust does not wait)."""
    dead = f"127.0.0.1:{free_port()}"
    with EventHubPeer() as peer:
        settings = Settings(
            kafka_bootstrap=dead,
            metrics_port=0,
            eventhub_connection_string=SecretStr(peer.connection_string()),
            alerts_eventhub_connection_string=SecretStr(peer.connection_string("alerts")),
            eventhub_checkpoint_path=str(tmp_path / "checkpoints.sqlite"),
        )
        running.start("bridge", ["bridge"], settings)
        running.start("forward", ["forward", "--sink", "eventhub"], settings)
        running.start("replay", ["replay", str(SAMPLE)], settings)
        worker = running.start("worker", ["worker"], settings)
        running.wait_for_log("bridge", "retrying in 1.0 s")
        running.wait_for_log("forward", "retrying in 1.0 s")
        time.sleep(0.5)  # well into the second backoff
        gave_up = worker.poll()
        stopped = running.stop_all()
    report(stopped)
    assert_stopped_in_time(running, stopped, backstop=frozenset({"worker"}))
    assert stopped["bridge"][0] == stopped["forward"][0] == 0  # a stop, not a failure
    assert stopped["replay"][0] == 128 + signal.SIGTERM
    assert "replay stopped by SIGTERM" in running.log("replay")
    if gave_up is not None:
        assert gave_up != 0 and "Unable to bootstrap" in running.log("worker")


def test_services_stop_after_the_broker_died_under_them(running: Running) -> None:
    """Worker, bridge and forwarder ran on a broker that then died: the bridge is backing
    off on a batch Kafka will not take, the forwarder's consumer and the worker's agents are
    reconnecting. The worker's Faust stop never ends then; the backstop ends it."""
    with EventHubPeer() as peer, EmbeddedBroker() as broker:
        settings = embedded_settings(broker.bootstrap, 0).model_copy(
            update={
                "eventhub_connection_string": SecretStr(peer.connection_string()),
                "alerts_eventhub_connection_string": SecretStr(peer.connection_string("alerts")),
                "eventhub_checkpoint_path": str(running.tmp_path / "checkpoints.sqlite"),
                "eventhub_load_balancing_interval_s": 1.0,
                "eventhub_max_wait_s": 0.2,
            }
        )
        create_topics(settings)
        ports = {name: free_port() for name in ("worker", "bridge", "forward")}
        for name, args in (
            ("worker", ["worker"]),
            ("bridge", ["bridge"]),
            ("forward", ["forward", "--sink", "eventhub"]),
        ):
            running.start(name, args, settings.model_copy(update={"metrics_port": ports[name]}))
        peer.append("0", b'{"records": []}')
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        producer.send(settings.topic("alerts"), orjson.dumps({"id": "a-1", "user_id": "u"}))
        producer.close()
        wait_until("the forwarder delivered", lambda: bool(peer.events("0", "alerts")))
        wait_until(
            "the bridge produced",
            lambda: metric_sum(ports["bridge"], "signin_risk_bridge_events_total") >= 1,
        )
        wait_until(
            "the worker owns raw partitions",
            lambda: (
                (
                    series(
                        ports["worker"],
                        "signin_risk_partitions_assigned",
                        topic=settings.topic("raw"),
                    )
                    or 0
                )
                > 0
            ),
        )
        assert broker.pid is not None
        os.killpg(broker.pid, signal.SIGKILL)  # Tansu waits for its clients on SIGTERM
        peer.append("1", b'{"records": []}')  # a batch for the bridge that Kafka will not take
        time.sleep(2.0)  # aiokafka holds it for its 40 s request timeout before a retry
        stopped = running.stop_all()
    report(stopped)
    assert_stopped_in_time(running, stopped, backstop=frozenset({"worker"}))
    assert stopped["bridge"][0] == stopped["forward"][0] == 0
    assert stopped["worker"][1] < FORCE_EXIT_S + 0.5
    assert "1 event(s) of partition 1 not acknowledged" in running.log("bridge")


def wait_until(what: str, check: Callable[[], bool], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def test_the_demo_stops_on_sigterm_and_leaves_no_process() -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "demo", "--follow"],
        env=os.environ | {"SIGNIN_RISK_METRICS_PORT": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        assert demo.stdout is not None
        head = b""
        while b"worker pid" not in head:
            line = demo.stdout.readline()
            assert line, head.decode()
            head += line
        worker_pid = int(head.split(b"worker pid ")[1].split(b";")[0])
        time.sleep(1.0)
        signalled = time.monotonic()
        demo.send_signal(signal.SIGTERM)
        code = demo.wait(STOP_WITHIN_S + 10)
        seconds = time.monotonic() - signalled
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    print(f"demo: exit {code} after {seconds:.2f} s")
    assert code == 128 + signal.SIGTERM
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)
    assert seconds < STOP_WITHIN_S
