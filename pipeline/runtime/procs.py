"""Child processes the demo, the benchmark and the tests start, and how every long-running
command stops: within ``STOP_WITHIN_S`` of SIGTERM or SIGINT, whatever it was waiting for.

A service that is retrying against a dead broker spends nearly all its time in a backoff
sleep or in a client call that will not return for tens of seconds; both must give way to
the stop signal. What was acknowledged is committed; what was in flight gets a short
``FLUSH_S`` to finish, and is otherwise left uncommitted, to be read again after a restart
(at least once, never lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from types import FrameType
from typing import IO, Any, Protocol, TypeVar

from pipeline.runtime.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")

STOP_WITHIN_S = 5.0
"""What every long-running command promises (Kubernetes' grace period is 30 s; a rolling
restart of many pods adds them up)."""
FLUSH_S = 1.0
"""How long in-flight work (a send, a commit) may still finish once a stop was asked for."""
SHUTDOWN_S = 2.0
"""How long closing the clients may take, all together, after the in-flight work."""
FORCE_EXIT_S = 4.0
"""After this long past the signal, a process still shutting down exits without finishing:
a library that ignores cancellation must not break the promise."""
RETRY_MAX_S = 30.0
"""Longest backoff between two attempts to reach Kafka."""
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(Exception):
    """The stop event was set before what was awaited finished; it was cancelled."""


class Interrupted(KeyboardInterrupt):
    """A stop signal in a synchronous command (replay, demo), raised where it was waiting;
    a ``KeyboardInterrupt`` so that ``except Exception`` blocks let it through."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        """128 + the signal, as a shell reports a process the signal ended."""
        return 128 + self.signum


def exit_after(seconds: float, what: str) -> threading.Timer:
    """Arm the backstop: ``os._exit(1)`` unless the process is gone in ``seconds``."""

    def force() -> None:
        log.warning("%s did not stop within %.0f s of the signal; exiting now", what, seconds)
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(1)

    timer = threading.Timer(seconds, force)
    timer.daemon = True
    timer.start()
    return timer


def stop_on_signals(what: str = "the service") -> asyncio.Event:
    """An event set by SIGTERM or SIGINT, for the asyncio services (bridge, forwarders);
    the first signal also arms ``exit_after``."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if not stopping.is_set():
            exit_after(FORCE_EXIT_S, what)
            stopping.set()

    for sig in SIGNALS:
        loop.add_signal_handler(sig, on_signal)
    return stopping


@contextlib.contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Within: the first SIGTERM or SIGINT raises ``Interrupted`` in the main thread, so
    ``finally`` blocks stop what the command started; later signals are ignored, so they
    do not cut that cleanup short."""
    received: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if not received:
            received.append(signum)
            raise Interrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


async def pause(stopping: asyncio.Event, seconds: float) -> bool:
    """A backoff sleep the stop event cuts short; False when it did (stop retrying)."""
    if stopping.is_set():
        return False
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except TimeoutError:
        return True
    return False


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Fetch a cancelled or abandoned task's outcome so asyncio does not log it at exit."""
    if not task.cancelled():
        task.exception()


async def unless_stopped(aw: Awaitable[T], stopping: asyncio.Event, grace_s: float = 0.0) -> T:
    """``aw``'s result; once ``stopping`` is set (before or meanwhile) it has ``grace_s``
    more to finish, then it is cancelled and ``Stopped`` raised."""
    task = asyncio.ensure_future(aw)
    task.add_done_callback(_retrieve)
    try:
        if not stopping.is_set():
            stop = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait([task, stop], return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
        if not task.done() and grace_s > 0:
            await asyncio.wait([task], timeout=grace_s)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if task.done():
        return task.result()
    task.cancel()
    raise Stopped


async def bounded(aw: Awaitable[Any], seconds: float, what: str) -> None:
    """Await a shutdown step for at most ``seconds``; past that it is abandoned (cancelled,
    not awaited: a step that ignores cancellation must not hold the process)."""
    task = asyncio.ensure_future(aw)
    task.add_done_callback(_retrieve)
    await asyncio.wait([task], timeout=max(seconds, 0.0))
    if not task.done():
        task.cancel()
        log.warning("%s did not finish within %.1f s; left unfinished", what, seconds)
    elif not task.cancelled() and task.exception() is not None:
        log.warning("%s failed: %s", what, type(task.exception()).__name__)


class Deadline:
    """``SHUTDOWN_S`` shared by every closing step of one shutdown, counted from the first
    step: each gets what the steps before it left, so the whole stop stays within
    ``STOP_WITHIN_S``."""

    def __init__(self, seconds: float = SHUTDOWN_S) -> None:
        self._seconds = seconds
        self._until: float | None = None

    def left(self) -> float:
        if self._until is None:
            self._until = time.monotonic() + self._seconds
        return max(self._until - time.monotonic(), 0.0)

    async def close(self, aw: Awaitable[Any], what: str) -> None:
        await bounded(aw, self.left(), what)


class Startable(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


Client = TypeVar("Client", bound=Startable)


async def start_kafka(
    make: Callable[[], Client], stopping: asyncio.Event, what: str
) -> Client | None:
    """A started aiokafka client, retrying with backoff while Kafka is unreachable; None
    when stopped first."""
    from aiokafka.errors import KafkaError

    delay = 0.5
    while True:
        client = make()
        try:
            await unless_stopped(client.start(), stopping)
            return client
        except Stopped:
            await bounded(client.stop(), FLUSH_S, f"closing {what}")
            return None
        except KafkaError as exc:
            await bounded(client.stop(), FLUSH_S, f"closing {what}")
            log.warning(
                "Kafka unreachable for %s (%s); retrying in %.1f s", what, type(exc).__name__, delay
            )
        if not await pause(stopping, delay):
            return None
        delay = min(delay * 2, RETRY_MAX_S)


async def in_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in a daemon thread: like ``asyncio.to_thread``, except that a stopping
    service can walk away from a blocking call (``asyncio.run`` joins its executor's
    threads at exit; nothing joins a daemon thread)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(outcome: Callable[[], object]) -> None:
        if not future.done():  # cancelled when the service walked away
            outcome()

    def run() -> None:
        outcome: Callable[[], object]
        try:
            outcome = functools.partial(future.set_result, fn())
        except BaseException as exc:
            outcome = functools.partial(future.set_exception, exc)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            loop.call_soon_threadsafe(settle, outcome)

    threading.Thread(target=run, daemon=True, name=getattr(fn, "__name__", "blocking")).start()
    return await future


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
