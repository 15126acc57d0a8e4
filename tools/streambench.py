"""The streaming worker against what it is built from, all on one embedded broker and one
dataset (issue 15's benchmark):

- drain: a bare aiokafka ``getmany`` loop over the raw topic, fetching and nothing else;
- core: the same loop feeding ``receive`` and the ``Driver`` over dicts, in this process:
  the project's own cost per sign-in without Faust, tables or sends;
- pipeline: a real worker process over the same raw topic, then 2,000 sign-ins/s for
  latency, then the table changelogs it wrote, its peak RSS and one scrape of ``/metrics``;
- two workers over the same data (each owns half the partitions, so both re-key through
  the signins and by-ip topics), for scale-out and the cost of the hops;
- state: a stream of distinct users, RSS at half and all of them, then a restart that
  restores them from the changelog.

A worker's progress is what its consumer group committed on the broker, read at most
``SAMPLE_HZ`` times a second, so the measurement costs the worker nothing; ``/metrics`` is
read once, after the timed part. Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from aiokafka import AIOKafkaConsumer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pipeline.core.codec import RULE_STATES
from pipeline.core.detect import Engine
from pipeline.core.driver import Driver
from pipeline.core.ingest import receive
from pipeline.core.policy import Policy
from pipeline.core.state import KeyedState
from pipeline.runtime.broker import EmbeddedBroker, free_port
from pipeline.runtime.demo import embedded_settings
from pipeline.runtime.procs import spawn_worker, terminate
from pipeline.runtime.settings import Settings
from pipeline.runtime.topics import TABLES, admin_client, create_topics

PER_ENVELOPE = 20
"""Sign-ins per raw event, as diagnostic settings deliver them to Event Hubs, roughly."""
SAMPLE_HZ = 2.0
"""How often a worker's committed offsets are read from the broker."""
SETTLED_S = 3.0
"""Committed offsets unchanged this long, with the raw topic all committed: the work is done
(the worker commits every second while it has work)."""
RECOVERY_TIMEOUT_S = 90.0
"""How long a restarted worker may take to restore its state and judge a new sign-in; past
it the restart is reported as not done (``nan``). Tansu 0.6's in-memory store answers each
fetch of a long changelog with a few records, at a CPU cost that grows with the partition's
length: 100k users' state took 42 s to read back, 200k more than 300 s."""
TICK_S = 1 / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    """A timed stretch of work: sign-ins done, wall seconds and CPU seconds spent on them."""

    signins: int
    seconds: float
    cpu_s: float
    broker_cpu_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.signins / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_us(self) -> float:
        """CPU microseconds per sign-in (all the processes measured, added up)."""
        return self.cpu_s / self.signins * 1e6 if self.signins else float("nan")

    @property
    def broker_us(self) -> float:
        return self.broker_cpu_s / self.signins * 1e6 if self.signins else float("nan")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident set size (``VmHWM``: its peak) of a process, in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# -- data ---------------------------------------------------------------------------------


def _records(envelopes: Sequence[bytes]) -> list[dict[str, Any]]:
    return [record for data in envelopes for record in orjson.loads(data)["records"]]


def _as(record: dict[str, Any], user: str, signin_id: str) -> dict[str, Any]:
    """``record`` as a sign-in of another user, with its own id (the rest unchanged)."""
    properties = record["properties"] | {
        "userId": str(uuid.uuid5(uuid.NAMESPACE_OID, user)),
        "userPrincipalName": f"{user}@contoso.com",
        "userDisplayName": user,
        "id": signin_id,
        "originalRequestId": signin_id,
    }
    return record | {"identity": user, "properties": properties}


def _marked(record: dict[str, Any], marker: str) -> dict[str, Any]:
    """``record`` as a successful IMAP sign-in with the id ``marker``: legacy-auth raises an
    alert naming it, so its way through the worker can be timed."""
    properties = record["properties"] | {
        "id": marker,
        "clientAppUsed": "IMAP4",
        "status": {"errorCode": 0},
    }
    return record | {"resultType": "0", "properties": properties}


def _marker(pool: Sequence[dict[str, Any]], marker: str) -> bytes:
    """An envelope of one marked sign-in of a user of its own."""
    return _envelope([_marked(_as(pool[0], marker, marker), marker)])


def _envelope(records: Sequence[dict[str, Any]]) -> bytes:
    return orjson.dumps({"records": list(records)})


def tenant(pool: Sequence[dict[str, Any]], first: int, count: int, tag: str) -> list[bytes]:
    """Envelopes of one sign-in each of users ``first`` to ``first + count - 1``: the bench
    mix's records (``pool``, cycled) as those users' sign-ins, for state per user."""
    records = [
        _as(
            pool[j % len(pool)], f"user{j}-{tag}", str(uuid.uuid5(uuid.NAMESPACE_URL, f"{tag}/{j}"))
        )
        for j in range(first, first + count)
    ]
    return [_envelope(records[i : i + PER_ENVELOPE]) for i in range(0, count, PER_ENVELOPE)]


# -- broker side --------------------------------------------------------------------------


def _stage(bootstrap: str, tag: str, **update: Any) -> Settings:
    """A fresh set of topics and a consumer group of their own."""
    settings = embedded_settings(bootstrap, free_port()).model_copy(
        update={"topic_prefix": f"bench{tag}.", "app_id": f"signin-risk-bench{tag}", **update}
    )
    create_topics(settings)
    return settings


def _fill(producer: KafkaProducer, settings: Settings, envelopes: Sequence[bytes]) -> None:
    for value in envelopes:
        producer.send(settings.topic("raw"), value)
    producer.flush()


def _work_topics(settings: Settings) -> list[str]:
    return [settings.topic(name) for name in ("raw", "signins", "by-ip")]


class Committed:
    """The offsets a worker group has committed, per topic, as the broker reports them."""

    def __init__(self, settings: Settings) -> None:
        self._admin = admin_client(settings)
        self._group = settings.group_id
        self._topics = _work_topics(settings)

    def __call__(self) -> dict[str, int]:
        answer = self._admin.list_group_offsets({self._group: None}).get(self._group, {})
        totals = dict.fromkeys(self._topics, 0)
        for tp, committed in answer.items():
            if tp.topic in totals and committed.offset > 0:
                totals[tp.topic] += committed.offset
        return totals

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._admin.close()


@dataclass(frozen=True)
class _Sample:
    at: float
    offsets: dict[str, int]
    cpu_s: float
    broker_cpu_s: float


def _samples(
    committed: Committed, workers: Sequence[subprocess.Popen[bytes]], broker: int | None
) -> Iterator[_Sample]:
    """Committed offsets and CPU used, ``SAMPLE_HZ`` times a second."""
    while True:
        started = time.perf_counter()
        for worker in workers:
            if worker.poll() is not None:
                raise RuntimeError(f"worker pid {worker.pid} exited with {worker.returncode}")
        offsets = committed()
        cpu = sum(cpu_seconds(w.pid) for w in workers)
        yield _Sample(started, offsets, cpu, cpu_seconds(broker) if broker else 0.0)
        time.sleep(max(0.0, started + 1 / SAMPLE_HZ - time.perf_counter()))


def watch(
    settings: Settings,
    workers: Sequence[subprocess.Popen[bytes]],
    raw_events: int,
    broker: int | None = None,
    timeout_s: float = 900,
) -> Run:
    """The workers' throughput over ``raw_events`` raw events, from their group's first
    commit (the group has joined and fetched: joins take seconds on the embedded broker and
    are not throughput) to the first sample at which every work topic's committed offset
    stood where it stays, the raw topic all committed."""
    committed = Committed(settings)
    raw = settings.topic("raw")
    seen: list[_Sample] = []
    deadline = time.monotonic() + timeout_s
    try:
        for sample in _samples(committed, workers, broker):
            seen.append(sample)
            settled = [s for s in seen if s.offsets == sample.offsets]
            if sample.offsets[raw] >= raw_events and sample.at - settled[0].at >= SETTLED_S:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{raw}: {sample.offsets[raw]} of {raw_events} committed")
    finally:
        committed.close()
    end = next(s for s in seen if s.offsets == seen[-1].offsets)
    started = [s for s in seen if s.offsets[raw] > 0 and s.at < end.at]
    # Everything done within one sample (tiny runs): count from the last sample before.
    start = started[0] if started else seen[max(0, seen.index(end) - 1)]
    return Run(
        (end.offsets[raw] - start.offsets[raw]) * PER_ENVELOPE,
        end.at - start.at,
        end.cpu_s - start.cpu_s,
        end.broker_cpu_s - start.broker_cpu_s,
    )


def _wait_committed(settings: Settings, raw_events: int, worker: subprocess.Popen[bytes]) -> None:
    committed = Committed(settings)
    try:
        for sample in _samples(committed, [worker], None):
            if sample.offsets[settings.topic("raw")] >= raw_events:
                return
    finally:
        committed.close()


def changelog_bytes(settings: Settings) -> tuple[int, int]:
    """(messages, key and value bytes) in the table changelogs, read to their ends."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    consumer.assign(
        [
            TopicPartition(settings.changelog(table), p)
            for table in TABLES
            for p in range(settings.partitions)
        ]
    )
    consumer.seek_to_beginning()
    messages = size = idle = 0
    # Tansu's ListOffsets under-reports log ends: read until fetches come back empty.
    while idle < 3:
        batch = consumer.poll(timeout_ms=500)
        idle = 0 if batch else idle + 1
        for records in batch.values():
            messages += len(records)
            size += sum(len(m.key or b"") + len(m.value or b"") for m in records)
    consumer.close()
    return messages, size


def scrape(port: int) -> dict[str, float]:
    """Each metric's samples added up, from one read of ``/metrics``."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("{", 1)[0].split(" ", 1)[0], line.rsplit(" ", 1)[1]
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


# -- in-process phases --------------------------------------------------------------------


def _raw_consumer(settings: Settings) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        settings.topic("raw"),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )


async def _drain(settings: Settings, events: int, broker: int) -> Run:
    consumer = _raw_consumer(settings)
    await consumer.start()
    try:
        started, cpu, broker_cpu, seen = (
            time.perf_counter(),
            time.process_time(),
            cpu_seconds(broker),
            0,
        )
        while seen < events:
            batch = await consumer.getmany(timeout_ms=500)
            seen += sum(len(records) for records in batch.values())
        return Run(
            seen * PER_ENVELOPE,
            time.perf_counter() - started,
            time.process_time() - cpu,
            cpu_seconds(broker) - broker_cpu,
        )
    finally:
        await consumer.stop()


async def _core(settings: Settings, events: int, broker: int) -> Run:
    """The drain feeding the project's core as a lone worker runs it: takes of up to
    ``batch_events`` raw events judged directly, state in dicts flushed after each take."""
    driver = Driver(
        Engine(Policy()), KeyedState(RULE_STATES), KeyedState(RULE_STATES), settings.partitions
    )
    consumer = _raw_consumer(settings)
    await consumer.start()
    try:
        started, cpu, broker_cpu = time.perf_counter(), time.process_time(), cpu_seconds(broker)
        seen = signins = 0
        while seen < events:
            batch = await consumer.getmany(timeout_ms=500, max_records=settings.batch_events)
            messages = [m for records in batch.values() for m in records]
            seen += len(messages)
            received = receive(
                [(m.value, m.timestamp) for m in messages],
                settings.max_event_bytes,
                [(m.partition, m.offset) for m in messages],
            )
            driver.segments(received.segments, direct=True)
            driver.flush()
            signins += received.records
        return Run(
            signins,
            time.perf_counter() - started,
            time.process_time() - cpu,
            cpu_seconds(broker) - broker_cpu,
        )
    finally:
        await consumer.stop()


# -- latency ------------------------------------------------------------------------------


class Alerts:
    """The alerts topic from its end: which marked sign-ins have an alert, and when it was
    sent (its timestamp) and received here."""

    def __init__(self, settings: Settings) -> None:
        self._consumer = KafkaConsumer(
            settings.topic("alerts"),
            bootstrap_servers=settings.kafka_bootstrap,
            auto_offset_reset="latest",
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
        )
        self._consumer.poll(timeout_ms=500)  # join and position at the end before sending
        self.seen: dict[str, tuple[float, float]] = {}
        """Marked sign-in id -> (alert's timestamp, arrival here), epoch s."""

    def collect(self, wait_s: float) -> None:
        batch = self._consumer.poll(timeout_ms=max(1, int(wait_s * 1000)))
        now = time.time()
        for messages in batch.values():
            for message in messages:
                for signin_id in orjson.loads(message.value)["signin_ids"]:
                    self.seen.setdefault(signin_id, (message.timestamp / 1000, now))

    def wait_for(self, marker: str, timeout_s: float) -> float:
        """When an alert naming ``marker`` was sent (epoch s)."""
        deadline = time.monotonic() + timeout_s
        while marker not in self.seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no alert for {marker} in {timeout_s:.0f} s")
            self.collect(0.1)
        return self.seen[marker][0]

    def close(self) -> None:
        self._consumer.close()


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    arrival_p99_ms: float
    timed: int
    sent: int


def latency(
    settings: Settings,
    producer: KafkaProducer,
    pool: Sequence[dict[str, Any]],
    rate: int,
    seconds: float,
    tag: str,
) -> Latency:
    """Offer ``rate`` sign-ins/s; each envelope's first sign-in is marked, and its latency is
    from the raw message's timestamp to its alert's: both are the producers' send times, as
    the embedded broker keeps a message's CreateTime (it does not stamp appends)."""
    alerts = Alerts(settings)
    count = max(1, int(rate * seconds / PER_ENVELOPE))
    sent: dict[str, float] = {}
    interval = PER_ENVELOPE / rate
    start = time.perf_counter()
    for i in range(count):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            alerts.collect(delay)
        marker = f"lat{tag}-{i}"
        first = i * PER_ENVELOPE % len(pool)
        records = [pool[(first + k) % len(pool)] for k in range(PER_ENVELOPE)]
        value = _envelope([_marked(records[0], marker), *records[1:]])
        sent[marker] = time.time()
        producer.send(settings.topic("raw"), value, timestamp_ms=int(sent[marker] * 1000))
        producer.flush()
    deadline = time.perf_counter() + 30
    while not sent.keys() <= alerts.seen.keys() and time.perf_counter() < deadline:
        alerts.collect(0.1)
    alerts.close()
    timed = [(alerts.seen[m], at) for m, at in sent.items() if m in alerts.seen]
    appended = [stamp - at for (stamp, _), at in timed]
    arrived = [arrival - at for (_, arrival), at in timed]
    return Latency(
        _percentile(appended, 0.5) * 1000,
        _percentile(appended, 0.99) * 1000,
        _percentile(arrived, 0.99) * 1000,
        len(timed),
        len(sent),
    )


# -- the run ------------------------------------------------------------------------------


@contextlib.contextmanager
def _workers(
    settings: Sequence[Settings], log: IO[bytes]
) -> Iterator[list[subprocess.Popen[bytes]]]:
    workers = [spawn_worker(s, log) for s in settings]
    try:
        yield workers
    finally:
        for worker in workers:
            terminate(worker, 30, "worker")


def _log_tail(log: IO[bytes]) -> str:
    log.flush()
    with open(log.name, "rb") as f:
        return f.read()[-3000:].decode(errors="replace")


@dataclass(frozen=True)
class StateFigures:
    users: int
    rss_half_mb: float
    rss_all_mb: float
    bytes_per_user: float
    startup_s: float
    recovery_s: float
    recovery_disk_s: float


def _state(
    bootstrap: str,
    producer: KafkaProducer,
    pool: Sequence[dict[str, Any]],
    users: int,
    tag: str,
    log: IO[bytes],
) -> StateFigures:
    """RSS at ``users // 2`` and ``users`` distinct users (the slope is what a user costs),
    then how long a restarted worker takes, restoring them, to judge a new sign-in. And
    the same restart of a worker on the RocksDB store restarted on its own files (a pod
    that keeps its volume): it reads only the changelog written after them."""
    settings = _stage(bootstrap, f"{tag}users")
    half = users // 2
    alerts = Alerts(settings)
    try:
        _fill(producer, settings, [_marker(pool, f"start{tag}")])
        _fill(producer, settings, tenant(pool, 0, half, tag))
        with _workers([settings], log) as workers:
            spawned = time.time()
            startup_s = alerts.wait_for(f"start{tag}", 120) - spawned
            events = 1 + -(-half // PER_ENVELOPE)
            _wait_committed(settings, events, workers[0])
            time.sleep(2)  # past the next commit: state written
            rss_half = rss_mb(workers[0].pid)
            _fill(producer, settings, tenant(pool, half, users - half, tag))
            events += -(-(users - half) // PER_ENVELOPE)
            _wait_committed(settings, events, workers[0])
            time.sleep(2)
            rss_all = rss_mb(workers[0].pid)
        recovery_s = _timed_restart(settings, producer, pool, alerts, f"restart{tag}", log)
    finally:
        alerts.close()
    with tempfile.TemporaryDirectory(prefix="streambench-rocksdb-") as data_dir:
        disk = _stage(bootstrap, f"{tag}disk", store="rocksdb://", data_dir=data_dir)
        alerts = Alerts(disk)
        try:
            _fill(producer, disk, [_marker(pool, f"diskstart{tag}"), *tenant(pool, 0, users, tag)])
            with _workers([disk], log) as workers:
                alerts.wait_for(f"diskstart{tag}", 120)
                _wait_committed(disk, 1 + -(-users // PER_ENVELOPE), workers[0])
            disk_s = _timed_restart(disk, producer, pool, alerts, f"diskrestart{tag}", log)
        finally:
            alerts.close()
    slope = (rss_all - rss_half) * 1024 * 1024 / max(1, users - half)
    return StateFigures(users, rss_half, rss_all, slope, startup_s, recovery_s, disk_s)


def _timed_restart(
    settings: Settings,
    producer: KafkaProducer,
    pool: Sequence[dict[str, Any]],
    alerts: Alerts,
    marker: str,
    log: IO[bytes],
) -> float:
    """Seconds from a worker's start to its alert on a new marked sign-in; nan past
    ``RECOVERY_TIMEOUT_S``."""
    _fill(producer, settings, [_marker(pool, marker)])
    with _workers([settings], log):
        spawned = time.time()
        try:
            return alerts.wait_for(marker, RECOVERY_TIMEOUT_S) - spawned
        except TimeoutError:
            return float("nan")


def run_stream_bench(envelopes: Sequence[bytes], rate: int, seconds: float, users: int) -> None:
    """Print each phase's figures as it ends, then the ``bench`` lines."""
    tag = uuid.uuid4().hex[:8]
    pool = _records(envelopes[:100])
    log = tempfile.NamedTemporaryFile(prefix="streambench-", suffix=".log", delete=False)  # noqa: SIM115
    try:
        with EmbeddedBroker() as broker:
            _run(broker, envelopes, pool, rate, seconds, users, tag, log)
    except Exception:
        print(f"worker output (tail of {log.name}):\n{_log_tail(log)}", flush=True)
        raise
    log.close()
    Path(log.name).unlink()


def _emit(line: str) -> None:
    print(line, flush=True)


def _run(
    broker: EmbeddedBroker,
    envelopes: Sequence[bytes],
    pool: Sequence[dict[str, Any]],
    rate: int,
    seconds: float,
    users: int,
    tag: str,
    log: IO[bytes],
) -> None:
    pid = broker.pid or 0
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap,
        linger_ms=5,
        batch_size=1 << 20,
        max_request_size=4 << 20,
    )
    events = len(envelopes)
    one = _stage(broker.bootstrap, f"{tag}one")
    _fill(producer, one, envelopes)
    _emit(
        f"stream: {events * PER_ENVELOPE} sign-ins in {events} envelopes of {PER_ENVELOPE}, "
        f"~5 KB each, embedded broker (pid {pid}); a worker's progress read from its "
        f"committed offsets at {SAMPLE_HZ:.0f} Hz"
    )
    drain = asyncio.run(_drain(one, events, pid))
    _emit(_row("bare aiokafka getmany drain", drain))
    core = asyncio.run(_core(one, events, pid))
    _emit(_row("bare consumer + core (receive, Driver over dicts)", core))
    with _workers([one], log) as workers:
        pipeline = watch(one, workers, events, pid)
        _emit(_row("one worker process (direct: no re-key hops)", pipeline))
        lat = latency(one, producer, pool, rate, seconds, tag)
        _emit(
            f"latency at {rate} sign-ins/s for {seconds:.0f} s ({lat.timed} of {lat.sent} "
            f"marked sign-ins timed): raw send to alert send p50 {lat.p50_ms:.0f} ms, p99 "
            f"{lat.p99_ms:.0f} ms; to the alert's arrival here p99 {lat.arrival_p99_ms:.0f} ms"
        )
        peak = rss_mb(workers[0].pid, "VmHWM")
        metrics = scrape(one.metrics_port)
    messages, size = changelog_bytes(one)
    signins = metrics.get("signin_risk_signins_total", 0.0)
    _emit(
        f"changelogs: {messages} messages, {size:,} bytes for {signins:.0f} sign-ins "
        f"(the worker's count); worker peak RSS {peak:.0f} MB"
    )

    two = _stage(broker.bootstrap, f"{tag}two")
    _fill(producer, two, envelopes)
    pair = [two, two.model_copy(update={"metrics_port": free_port()})]
    with _workers(pair, log) as workers:
        split = watch(two, workers, events, pid)
    _emit(_row("two worker processes (re-key hops; CPU of both)", split))
    _emit(
        f"two workers vs one: {split.rps / pipeline.rps:.2f}x the sign-ins/s, "
        f"{split.cpu_us / pipeline.cpu_us:.2f}x the CPU per sign-in (the hops' cost over the "
        f"direct path a lone worker takes)"
    )

    state = _state(broker.bootstrap, producer, pool, users, tag, log)
    producer.close()
    restart = (
        f"{state.recovery_s:.1f} s after a restart with it"
        if math.isfinite(state.recovery_s)
        else f"none within {RECOVERY_TIMEOUT_S:.0f} s of a restart with it (recovery_s=nan)"
    )
    _emit(
        f"state: RSS {state.rss_half_mb:.0f} MB at {state.users // 2} distinct users, "
        f"{state.rss_all_mb:.0f} MB at {state.users} ({state.bytes_per_user:.0f} bytes a "
        f"user); first alert {state.startup_s:.1f} s after start with no state, {restart}; "
        f"on the RocksDB store restarted on its own files, {state.recovery_disk_s:.1f} s"
    )
    per_signin = size / signins if signins else float("nan")
    _emit(
        f"bench drain_rps={drain.rps:.0f} core_rps={core.rps:.0f} "
        f"pipeline_rps={pipeline.rps:.0f} pipeline_vs_core={pipeline.rps / core.rps:.2f} "
        f"core_vs_drain={core.rps / drain.rps:.2f} changelog_bytes_per_signin={per_signin:.0f} "
        f"p50_ms={lat.p50_ms:.0f} p99_ms={lat.p99_ms:.0f} rss_mb={peak:.0f}"
    )
    _emit(
        f"bench users={state.users} bytes_per_user={state.bytes_per_user:.0f} "
        f"recovery_s={state.recovery_s:.1f} recovery_disk_s={state.recovery_disk_s:.1f}"
    )


def _row(what: str, run: Run) -> str:
    return (
        f"{what + ':':<52} {run.rps:>9,.0f} sign-ins/s  {run.cpu_us:6.0f} us CPU/sign-in  "
        f"(broker {run.broker_us:.0f} us; {run.signins} in {run.seconds:.1f} s)"
    )
