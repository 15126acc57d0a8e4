"""Alerts appended to a file, one line each: what Azure Monitor Agent, Elastic Agent or a
Splunk forwarder tail when a collector on the host is the way into the SIEM, and what the
demo writes so a newcomer can read CEF without a syslog server.

A line is an RFC 5424 message (as the syslog sink sends it) or just the formatted alert.
Newlines inside an alert are escaped by every format, so one line is one alert. The file is
flushed and fsynced per batch before the forwarder commits. It is opened per batch with the
sink's private mode, so a file a shipper rotated away is recreated private too.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from pipeline.alerts.formats import line
from pipeline.runtime.files import open_private
from pipeline.sinks import AlertDict, Format, Refusal, SinkBase, SinkType
from pipeline.sinks.syslog import Rfc5424


class FileConfig(SinkBase):
    type: Literal["file"]
    path: str
    """Appended to; a log shipper (Azure Monitor Agent, Elastic Agent, a Splunk forwarder)
    tails it. Each line is an RFC 5424 syslog message when ``syslog`` is on."""
    format: Format = "cef"
    syslog: bool = True
    facility: int = Field(13, ge=0, le=23)
    app_name: str = "signin-risk"
    hostname: str = ""
    mode: str | None = Field(None, pattern=r"^0?[0-7]{3}$")
    """Octal mode of the file (alerts carry users and addresses); None:
    ``SIGNIN_RISK_FILE_MODE`` (0600). A shipper running as another user needs e.g. 0640
    and a shared group, not a world-readable file."""

    @property
    def mode_bits(self) -> int | None:
        return None if self.mode is None else int(self.mode, 8)


class FileSink:
    def __init__(self, name: str, config: FileConfig, default_mode: int) -> None:
        """``default_mode`` (``SIGNIN_RISK_FILE_MODE``) applies when the config names none."""
        self.name = name
        self.max_batch = config.max_batch
        self._path = Path(config.path)
        self._path.parent.mkdir(parents=True, exist_ok=True)
        mode = config.mode_bits if config.mode_bits is not None else default_mode
        self._mode = mode
        open_private(self._path, mode, append=True).close()  # private before the first alert
        fmt = config.format
        self._encode: Callable[[AlertDict], bytes] = (
            Rfc5424(fmt, config.facility, config.hostname, config.app_name)
            if config.syslog
            else lambda alert: line(alert, fmt).encode()
        )

    async def send(self, alerts: Sequence[AlertDict]) -> list[Refusal]:
        data = b"".join(self._encode(alert) + b"\n" for alert in alerts)
        await asyncio.to_thread(self._append, data)
        return []

    def _append(self, data: bytes) -> None:
        with open_private(self._path, self._mode, append=True) as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())

    async def close(self) -> None:
        pass


SINK = SinkType(
    FileConfig,
    lambda name, config, settings: FileSink(name, config, settings.file_mode_bits),
    order=5,
)
