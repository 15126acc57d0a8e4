"""Child processes the demo, the benchmark and the tests start: worker spawn and shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from typing import IO, Any

from pipeline.settings import Settings

log = logging.getLogger(__name__)


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, for the asyncio services (bridge, forwarders)."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    return stopping


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as a worker process reads them: ``SIGNIN_RISK_*`` variables."""
    env: dict[str, str] = {}
    for name in Settings.model_fields:
        value: Any = getattr(settings, name)
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"SIGNIN_RISK_{name.upper()}"] = str(value)
    return env


def spawn_worker(settings: Settings, output: IO[bytes] | int) -> subprocess.Popen[bytes]:
    """``signin-risk worker`` in its own process group, configured by ``settings`` only."""
    return spawn(["worker"], settings, output)


def spawn(args: list[str], settings: Settings, output: IO[bytes] | int) -> subprocess.Popen[bytes]:
    """``signin-risk ARGS...`` in its own process group, configured by ``settings`` only."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *args],
        env=os.environ | settings_env(settings),
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def terminate(proc: subprocess.Popen[bytes], grace_s: float, what: str) -> int:
    """SIGTERM the process group, wait up to ``grace_s``, then SIGKILL; the exit status.

    Only while the leader is unreaped: until ``proc`` is waited for, its pid (the group id)
    cannot be reused, so signalling the group never reaches a stranger.
    """
    if proc.poll() is not None:
        return proc.returncode
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        log.warning("%s pid %s ignored SIGTERM; killing it", what, proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()
