"""A real rsyslogd on loopback for testing the syslog sink: TCP, TLS and UDP inputs.

It runs ``rsyslogd -n`` with its own configuration, work directory and pid file in a temp
directory, so the system's ``/etc/rsyslog.conf``, ``/dev/log`` and kernel log are never
touched (no imuxsock, no imklog). Every message received on the three inputs is written as
one JSON object per line with the fields rsyslog's RFC 5424 parser found, so a test checks
what a real receiver understood, not what the sink meant to send. The TLS input uses the
``ossl`` stream driver with a certificate for ``127.0.0.1``/``localhost`` from a private CA
made here with ``cryptography``.

``stop()`` then ``start()`` reuses the ports (an outage and a recovery); ``lines()`` keeps
what was received across restarts.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tlsca import CertificateAuthority

PACKAGES = "rsyslog rsyslog-openssl"
_FIELDS = {
    # output name: rsyslog property (see rsyslog's "property replacer" documentation)
    "pri": "pri",
    "facility": "syslogfacility",
    "severity": "syslogseverity",
    "version": "protocol-version",
    "timestamp": "timereported",
    "hostname": "hostname",
    "app_name": "app-name",
    "procid": "procid",
    "msgid": "msgid",
    "sd": "structured-data",
    "msg": "msg",
    "input": "inputname",
}


def rsyslogd_path() -> str:
    """The rsyslogd binary (with its TLS driver), or a failure naming the Debian packages."""
    path = shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin:/sbin")
    if path is None:
        raise RuntimeError(f"rsyslogd not found: apt-get install {PACKAGES} (or make peers)")
    if not any(glob.glob(f"/usr/lib/{arch}rsyslog/lmnsd_ossl.so") for arch in ("*/", "")):
        raise RuntimeError("rsyslog's OpenSSL driver not found: apt-get install rsyslog-openssl")
    return path


def _free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _template() -> str:
    properties = "\n".join(
        f'  property(outname="{out}" name="{name}" format="jsonf"'
        + (' dateFormat="rfc3339"' if name == "timereported" else "")
        + ")"
        for out, name in _FIELDS.items()
    )
    return f'template(name="received" type="list" option.jsonf="on") {{\n{properties}\n}}\n'


class Rsyslog:
    """One rsyslogd receiving on ``tcp_port`` (plain), ``tls_port`` and ``udp_port``."""

    def __init__(self, directory: Path | None = None) -> None:
        self._own_dir = directory is None
        self.dir = Path(tempfile.mkdtemp(prefix="rsyslog-")) if directory is None else directory
        self.binary = rsyslogd_path()
        self.tcp_port = _free_port(socket.SOCK_STREAM)
        self.tls_port = _free_port(socket.SOCK_STREAM)
        self.udp_port = _free_port(socket.SOCK_DGRAM)
        self.output = self.dir / "received.jsonl"
        self.log = self.dir / "rsyslogd.log"
        self.ca = CertificateAuthority()
        self.ca_file = str(self.dir / "ca.pem")
        cert, key = self.ca.issue()
        (self.dir / "ca.pem").write_bytes(self.ca.pem())
        (self.dir / "server.pem").write_bytes(cert)
        (self.dir / "server.key").write_bytes(key)
        (self.dir / "server.key").chmod(0o600)
        (self.dir / "work").mkdir(exist_ok=True)
        self.conf = self.dir / "rsyslog.conf"
        self.conf.write_text(self._config())
        self._process: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        d = self.dir
        return f"""# written by tests/rsyslog.py; no imuxsock, no imklog: only the inputs below
global(
  workDirectory="{d}/work"
  maxMessageSize="64k"
  net.enableDNS="off"
  parser.escapeControlCharactersOnReceive="off"
)
module(load="imtcp" maxSessions="100")
module(load="imudp")
{_template()}
ruleset(name="received") {{
  action(type="omfile" file="{self.output}" template="received")
}}
input(type="imtcp" address="127.0.0.1" port="{self.tcp_port}" ruleset="received"
      name="tcp")
input(type="imtcp" address="127.0.0.1" port="{self.tls_port}" ruleset="received"
      name="tls" streamDriver.name="ossl" streamDriver.mode="1"
      streamDriver.authMode="anon" streamDriver.CAFile="{d}/ca.pem"
      streamDriver.CertFile="{d}/server.pem" streamDriver.KeyFile="{d}/server.key")
input(type="imudp" address="127.0.0.1" port="{self.udp_port}" ruleset="received"
      name="udp")
# rsyslogd's own messages (start, stop, TLS errors) for diagnosis
*.* action(type="omfile" file="{self.log}")
"""

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self, timeout: float = 10.0) -> Rsyslog:
        """Start rsyslogd and return once its three sockets are bound."""
        if self._process is not None:
            raise RuntimeError("rsyslogd already running")
        pidfile = self.dir / "rsyslogd.pid"
        pidfile.unlink(missing_ok=True)
        with (self.dir / "stderr.log").open("ab") as stderr:
            self._process = subprocess.Popen(
                [self.binary, "-n", "-f", str(self.conf), "-i", str(pidfile)],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )
        deadline = time.monotonic() + timeout
        while not self._listening():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"rsyslogd did not start: {self.diagnostics()}")
            time.sleep(0.01)
        return self

    def _listening(self) -> bool:
        """True when rsyslogd's own sockets are bound to all three ports (by inode, so a
        port taken by another process does not count)."""
        assert self._process is not None
        fd_dir = Path(f"/proc/{self._process.pid}/fd")
        try:
            inodes = {os.readlink(fd) for fd in fd_dir.iterdir()}
        except (FileNotFoundError, ProcessLookupError):
            return False
        wanted = {("tcp", self.tcp_port), ("tcp", self.tls_port), ("udp", self.udp_port)}
        found = set()
        for proto in ("tcp", "udp"):
            for row in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
                cols = row.split()
                port = int(cols[1].rsplit(":", 1)[1], 16)
                listening = proto == "udp" or cols[3] == "0A"
                if listening and f"socket:[{cols[9]}]" in inodes:
                    found.add((proto, port))
        return wanted <= found

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; always reaps the process."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and remove the directory (when this harness made it)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Rsyslog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lines(self) -> list[dict[str, Any]]:
        """Every message received so far, as rsyslog parsed it (complete lines only)."""
        try:
            text = self.output.read_text("utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]

    def wait_for(
        self,
        count: int,
        match: Callable[[dict[str, Any]], bool] = lambda message: True,
        timeout: float = 5.0,
    ) -> list[dict[str, Any]]:
        """The received messages that ``match``, once there are at least ``count`` (or fail
        after ``timeout``); a short settle lets a test see extra ones arriving with the last."""
        deadline = time.monotonic() + timeout
        while len(found := [m for m in self.lines() if match(m)]) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"rsyslogd received {len(found)} of {count} messages; {self.diagnostics()}"
                )
            time.sleep(0.01)
        time.sleep(0.05)
        return [m for m in self.lines() if match(m)]

    def diagnostics(self) -> str:
        parts = []
        for path in (self.dir / "stderr.log", self.log):
            if path.exists() and (text := path.read_text(errors="replace").strip()):
                parts.append(f"{path.name}:\n{text[-4000:]}")
        return "\n".join(parts) or "(no output)"
