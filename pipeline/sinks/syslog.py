"""Alerts as RFC 5424 syslog messages over TCP, TLS (RFC 5425) or UDP (RFC 5426).

One message per alert::

    <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [signinrisk@32473 id= rule= severity=] MSG

- PRI = facility * 8 + the alert severity as a syslog severity (critical 2 .. informational 6),
  so a receiver's ordinary severity filters work without reading MSG.
- TIMESTAMP is the alert's ``time`` (the sign-in's, as CEF's ``rt``: SIEMs order by event
  time) in UTC with at most 6 fraction digits (RFC 5424 allows no more; Entra writes 7);
  ``-`` when it cannot be read, and the receiver stamps the arrival time.
- PROCID is the forwarder's pid, so a receiver sees where a restart re-sent alerts.
- MSGID is the rule id; the structured data repeats the alert id, rule and severity (fields
  that always pass the sink's privacy controls) so a receiver can drop repeats of the
  at-least-once delivery and route by rule without parsing MSG. 32473 is the private
  enterprise number RFC 5612 reserves for documentation: no IANA number is registered.
- MSG is ``line(alert, format)`` in UTF-8 *without* the BOM that RFC 5424 puts before
  MSG-UTF8: the RFC also allows MSG-ANY, and CEF parsers (ArcSight, QRadar, Sentinel's AMA)
  look for ``CEF:`` at the very start of MSG, as JSON parsers look for ``{``.
- Header fields are cut to the RFC's lengths and charset (printable ASCII, no spaces).

``tcp`` and ``tls`` frame each message with octet counting (``LEN SP MSG``, RFC 6587 3.4.1
and RFC 5425), so a newline inside a message cannot split it. The connection is opened on
the first send and kept; a connection the receiver has closed is detected before writing
and replaced, because TCP syslog has no acknowledgement: bytes written into a half-closed
socket are lost without an error. That check cannot close the last window (the receiver
going away after the write, with data still in the kernel's buffers): plain syslog
delivers at least once only as far as TCP does. RELP would close it; not implemented.
Receivers must accept the message size (rsyslog's ``maxMessageSize`` is 8k by default).

``udp`` sends one datagram per message with no framing and no delivery guarantee; a
message above the UDP payload limit is refused (dead-lettered), not truncated. A "port
unreachable" answer fails the next send, so an outage shows in the forwarder's metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import socket
import ssl
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from pipeline.alerts.formats import line
from pipeline.core.timeparse import parse_time
from pipeline.sinks import AlertDict, Format, Refusal, SendError, SinkBase, SinkType


class SyslogConfig(SinkBase):
    type: Literal["syslog"]
    format: Format = "cef"
    host: str = "127.0.0.1"
    port: int = Field(514, ge=1, le=65535)
    transport: Literal["tcp", "tls", "udp"] = "tcp"
    ca_file: str = ""
    """CA bundle for ``tls`` (default: the system's)."""
    facility: int = Field(13, ge=0, le=23)
    """13 = log audit (RFC 5424); 10 = authpriv and 16-23 = local0-7 are common choices."""
    app_name: str = "signin-risk"
    hostname: str = ""
    """HOSTNAME field; empty: this machine's name."""


NIL = "-"
SD_ID = "signinrisk@32473"
TIMEOUT = 10.0
"""Seconds for connecting (with the TLS handshake) and for writing one batch."""
UDP_LIMIT = {socket.AF_INET: 65_507, socket.AF_INET6: 65_527}
"""The largest UDP payload: 65,535 less the IP (IPv4 only) and UDP headers."""
SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5, "informational": 6}
"""Alert severity to syslog severity (2 critical, 3 error, 4 warning, 5 notice, 6 info);
anything else is 5."""
_UNKNOWN_SEVERITY = 5
_RDHUP = getattr(select, "POLLRDHUP", 0)  # Linux: the peer shut down its side


def header_field(value: str, limit: int) -> str:
    """A header field as RFC 5424 allows it: printable ASCII without spaces, ``limit``
    characters at most, ``-`` when empty."""
    cleaned = "".join(c if "!" <= c <= "~" else "_" for c in value)[:limit]
    return cleaned or NIL


def sd_value(value: str) -> str:
    """A PARAM-VALUE with ``"``, ``\\`` and ``]`` escaped (RFC 5424 6.3.3)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def timestamp(value: object) -> str:
    """The alert time as an RFC 5424 TIMESTAMP: UTC, ``Z``, microseconds at most."""
    try:
        parsed = parse_time(str(value)) if value else None
    except ValueError:
        parsed = None
    if parsed is None:
        return NIL
    return parsed.replace(tzinfo=None).isoformat() + "Z"


class _Datagrams(asyncio.DatagramProtocol):
    """Keeps the last socket error (ICMP port unreachable, message too long)."""

    def __init__(self) -> None:
        self.error: Exception | None = None

    def error_received(self, exc: Exception) -> None:
        self.error = exc

    def take_error(self) -> Exception | None:
        error, self.error = self.error, None
        return error


class Rfc5424:
    """Alerts as RFC 5424 messages (without framing), for the syslog and file sinks."""

    def __init__(self, fmt: Format, facility: int, hostname: str, app_name: str) -> None:
        self._format, self._facility = fmt, facility
        self._header = " ".join(
            (
                header_field(hostname or socket.gethostname(), 255),
                header_field(app_name, 48),
                str(os.getpid()),
            )
        )

    def __call__(self, alert: AlertDict) -> bytes:
        severity = str(alert.get("severity", ""))
        pri = self._facility * 8 + SEVERITY.get(severity, _UNKNOWN_SEVERITY)
        params = " ".join(
            f'{key}="{sd_value(str(alert.get(key, "")))}"' for key in ("id", "rule", "severity")
        )
        head = (
            f"<{pri}>1 {timestamp(alert.get('time'))} {self._header} "
            f"{header_field(str(alert.get('rule', '')), 32)} [{SD_ID} {params}] "
        )
        return (head + line(alert, self._format)).encode("utf-8")


class SyslogSink:
    """Delivers one batch at a time (the forwarder never sends concurrently on a sink)."""

    def __init__(
        self,
        name: str,
        config: SyslogConfig,
        *,
        ssl_context: ssl.SSLContext | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        self.name = name
        self.max_batch = config.max_batch
        self._config = config
        self._timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        if config.transport == "tls":
            # Built now, so a missing CA file fails at start-up rather than at the first alert.
            self._ssl = ssl_context or ssl.create_default_context(cafile=config.ca_file or None)
        self.encode = Rfc5424(config.format, config.facility, config.hostname, config.app_name)
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._datagrams: tuple[asyncio.DatagramTransport, _Datagrams] | None = None

    async def send(self, alerts: Sequence[AlertDict]) -> list[Refusal]:
        if self._config.transport == "udp":
            return await self._send_udp(alerts)
        if not alerts:
            return []
        frames = []
        for alert in alerts:
            message = self.encode(alert)
            frames.append(b"%d %s" % (len(message), message))
        try:
            writer = await self._connection()
            writer.writelines(frames)
            await asyncio.wait_for(writer.drain(), self._timeout)
        except OSError as exc:  # as are ssl.SSLError and TimeoutError
            self._drop()
            raise SendError(self._failure(exc)) from exc
        return []

    def _failure(self, exc: BaseException) -> str:
        reason = str(exc) or type(exc).__name__
        return f"syslog {self._config.transport} {self._config.host}:{self._config.port}: {reason}"

    async def _connection(self) -> asyncio.StreamWriter:
        if self._stream is not None and self._peer_closed(*self._stream):
            self._drop()
        if self._stream is None:
            self._stream = await asyncio.wait_for(
                asyncio.open_connection(
                    self._config.host,
                    self._config.port,
                    ssl=self._ssl,
                    server_hostname=self._config.host if self._ssl else None,
                ),
                self._timeout,
            )
        return self._stream[1]

    @staticmethod
    def _peer_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """True when the receiver has closed or reset the connection.

        The socket is polled directly: the event loop may not have run since the FIN came,
        and with TLS a close_notify can still be unread in front of it. A syslog receiver
        sends nothing else, so plain readable data does not mean the peer is gone.
        """
        if writer.is_closing() or reader.at_eof():
            return True
        sock = writer.get_extra_info("socket")
        if sock is None:
            return True
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN | _RDHUP)
        for _, events in poller.poll(0):
            if events & (select.POLLHUP | select.POLLERR | _RDHUP):
                return True
            if not _RDHUP and events & select.POLLIN:  # no POLLRDHUP: peek for EOF
                with sock.dup() as copy:
                    try:
                        return bool(copy.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"")
                    except BlockingIOError:
                        return False
                    except OSError:
                        return True
        return False

    def _drop(self) -> None:
        if self._stream is not None:
            self._stream[1].transport.abort()
        self._stream = None

    async def _send_udp(self, alerts: Sequence[AlertDict]) -> list[Refusal]:
        if self._datagrams is None:
            try:
                self._datagrams = await asyncio.wait_for(
                    asyncio.get_running_loop().create_datagram_endpoint(
                        _Datagrams, remote_addr=(self._config.host, self._config.port)
                    ),
                    self._timeout,
                )
            except OSError as exc:
                raise SendError(self._failure(exc)) from exc
        transport, protocol = self._datagrams
        if error := protocol.take_error():  # an ICMP answer to an earlier datagram
            raise SendError(self._failure(error))
        family = transport.get_extra_info("socket").family
        limit = UDP_LIMIT.get(family, UDP_LIMIT[socket.AF_INET])
        refused: list[Refusal] = []
        for index, alert in enumerate(alerts):
            message = self.encode(alert)
            if len(message) > limit:
                refused.append(Refusal(index, "too large for UDP"))
                continue
            transport.sendto(message)
            if error := protocol.take_error():  # this datagram was not sent
                raise SendError(self._failure(error), done=index, refused=refused)
        return refused

    async def close(self) -> None:
        if self._datagrams is not None:
            self._datagrams[0].close()
            self._datagrams = None
        stream, self._stream = self._stream, None
        if stream is not None:
            writer = stream[1]
            writer.close()
            with contextlib.suppress(OSError):
                await asyncio.wait_for(writer.wait_closed(), self._timeout)


SINK = SinkType(SyslogConfig, lambda name, config, _: SyslogSink(name, config), order=1)
