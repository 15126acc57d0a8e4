"""A real Prometheus for the tests: Debian's ``/usr/bin/prometheus`` on a free loopback port.

The config is the repository's ``deploy/prometheus/prometheus.yml`` with its Compose targets
swapped for the loopback ones a test gives per job, scrape and rule evaluation every second,
and its ``rule_files`` made absolute, so the project's own rules run. Storage lives in a
temporary directory. Queries go through the HTTP API; a query Prometheus refuses raises
``PromQLError`` with its message. ``stop()`` ends the process by its pid and checks it is gone.

Missing binaries fail (never skip): ``make peers`` installs the Debian package ``prometheus``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from pipeline.runtime.broker import free_port
from pipeline.runtime.procs import terminate

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
PACKAGE = "prometheus"
START_ATTEMPTS = 3
READY_TIMEOUT_S = 30.0


class PrometheusMissing(RuntimeError):
    """The Prometheus binaries are not installed."""


class PromQLError(RuntimeError):
    """Prometheus answered a query with ``status: error``."""

    def __init__(self, expr: str, error_type: str, error: str) -> None:
        super().__init__(f"{error_type}: {error}\n  in: {expr}")
        self.expr, self.error_type, self.error = expr, error_type, error


def binary(name: str = "prometheus") -> str:
    """Path of ``prometheus`` or ``promtool``; fails naming the Debian package when missing."""
    path = shutil.which(name)
    if path is None and os.access(f"/usr/bin/{name}", os.X_OK):  # PATH without /usr/bin
        path = f"/usr/bin/{name}"
    if path is None:
        raise PrometheusMissing(
            f"{name} is not installed: these tests need the Debian package {PACKAGE!r} "
            f"(apt-get install {PACKAGE}; `make peers` installs it when run as root)"
        )
    return path


def loopback_config(
    targets: Mapping[str, Sequence[str]],
    *,
    self_address: str | None = None,
    interval: str = "1s",
    source: Path = CONFIG,
) -> dict[str, Any]:
    """The repository's config with each job's targets replaced by ``targets[job]``.

    Every job of the file must be given (an empty list drops the job), except ``prometheus``,
    which scrapes ``self_address``; a job the file lacks is an error, so a renamed job in
    prometheus.yml breaks the tests rather than silently scraping nothing.
    """
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    config["global"] = {
        **config.get("global", {}),
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "evaluation_interval": interval,
    }
    config["rule_files"] = [str(source.parent / f) for f in config.get("rule_files", [])]
    given = dict(targets)
    if self_address is not None:
        given.setdefault("prometheus", [self_address])
    jobs = []
    for job in config["scrape_configs"]:
        name = job["job_name"]
        if name not in given:
            raise KeyError(f"no loopback targets given for job {name!r} of {source}")
        if given[name]:
            jobs.append({**job, "static_configs": [{"targets": list(given.pop(name))}]})
        else:
            given.pop(name)
    if given:
        raise KeyError(f"jobs not in {source}: {sorted(given)}")
    config["scrape_configs"] = jobs
    return config


class Prometheus:
    """One Prometheus process; use as a context manager or call ``start()``/``stop()``."""

    def __init__(
        self,
        targets: Mapping[str, Sequence[str]],
        directory: Path | None = None,
        interval: str = "1s",
    ) -> None:
        self.targets = targets
        self.interval = interval
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="prometheus-")
            directory = Path(self._tmp.name)
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.config_path = directory / "prometheus.yml"
        self.log_path = directory / "prometheus.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def write_config(self) -> Path:
        config = loopback_config(self.targets, self_address=self.address, interval=self.interval)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        return self.config_path

    def start(self) -> Prometheus:
        exe = binary("prometheus")
        for attempt in range(1, START_ATTEMPTS + 1):
            self.port = free_port()
            self.write_config()
            storage = self.directory / f"data-{attempt}"
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    [
                        exe,
                        f"--config.file={self.config_path}",
                        f"--storage.tsdb.path={storage}",
                        f"--web.listen-address={self.address}",
                        "--log.level=warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            if self._wait_ready():
                return self
            self.stop()  # the port was taken meanwhile, or it failed: try a fresh port
        raise RuntimeError(f"prometheus did not become ready:\n{self.log()}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_S
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        return True
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        """SIGTERM by pid (its own process group), then SIGKILL; the process must be gone."""
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate(proc, 10, "prometheus")
            try:
                os.kill(proc.pid, 0)
            except ProcessLookupError:
                pass
            else:  # pragma: no cover - terminate() reaped it, so the pid is free
                raise RuntimeError(f"prometheus pid {proc.pid} still exists")

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else ""

    # -- HTTP API ---------------------------------------------------------------------------

    def api(self, path: str, params: Sequence[tuple[str, str]] = (), expr: str = "") -> Any:
        """``GET /api/v1/<path>``; the ``data`` of a success, ``PromQLError`` otherwise."""
        query = urllib.parse.urlencode(list(params))
        url = f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                body = json.load(answer)
        except urllib.error.HTTPError as exc:  # 400/422/503 carry the error as JSON
            try:
                body = json.load(exc)
            except ValueError:
                raise PromQLError(expr or path, f"http {exc.code}", exc.reason) from None
        if body.get("status") != "success":
            raise PromQLError(expr or path, body.get("errorType", "?"), body.get("error", "?"))
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        """An instant query: ``{"resultType": ..., "result": ...}``."""
        params = [("query", expr)] + ([("time", str(at))] if at is not None else [])
        data: dict[str, Any] = self.api("query", params, expr)
        return data

    def vector(self, expr: str) -> list[tuple[dict[str, str], float]]:
        """An instant query's samples as (labels, value); a scalar is one sample, no labels."""
        data = self.query(expr)
        if data["resultType"] == "vector":
            return [(s["metric"], float(s["value"][1])) for s in data["result"]]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        raise ValueError(f"{expr}: {data['resultType']} result")

    def value(self, expr: str) -> float | None:
        """The single value of ``expr``, None when empty."""
        samples = self.vector(expr)
        if not samples:
            return None
        if len(samples) > 1:
            raise ValueError(f"{expr}: {len(samples)} series")
        return samples[0][1]

    def label_values(self, label: str, match: str) -> list[str]:
        values: list[str] = self.api(f"label/{label}/values", [("match[]", match)])
        return values

    def metric_names(self) -> set[str]:
        return set(self.api("label/__name__/values"))

    def active_targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self.api("targets", [("state", "active")])["activeTargets"]
        return targets

    def rule_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self.api("rules")["groups"]
        return groups

    def wait_for(
        self, what: str, check: Callable[[], bool], timeout_s: float = 60.0, every: float = 0.25
    ) -> None:
        """Poll ``check`` until true; fail naming ``what`` (and with the log) on timeout."""
        deadline = time.monotonic() + timeout_s
        while not check():
            if self.proc is None or self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited while waiting for {what}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            time.sleep(every)
