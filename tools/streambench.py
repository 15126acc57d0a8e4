"""End-to-end benchmark of the streaming worker against the raw consumption ceiling.

One run, one process tree: an embedded broker, realistic Event Hubs envelopes (20 sign-ins
of ~5 KB) on the raw topic, then (1) a bare aiokafka consumer draining that topic (the
ceiling: fetching and nothing else), (2) a real worker process draining the same topic into
alerts, and (3) a paced phase at a fixed offered rate for end-to-end latency (produce time of
an envelope to its alert arriving on the alerts topic). Figures are printed, never asserted.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
import urllib.request
from uuid import uuid4

import orjson
from aiokafka import AIOKafkaConsumer
from kafka import KafkaConsumer, KafkaProducer

from pipeline.runtime.broker import EmbeddedBroker, free_port
from pipeline.runtime.demo import embedded_settings
from pipeline.runtime.procs import spawn_worker, terminate
from pipeline.runtime.settings import Settings
from pipeline.runtime.topics import create_topics
from tools.synth import bench_envelope

PER_ENVELOPE = 20


def _envelopes(count: int, tag: str) -> list[tuple[str, bytes]]:
    """Envelopes whose first record is a successful IMAP sign-in with a known id, so every
    envelope yields one alert whose arrival can be timed."""
    out = []
    for seed in range(count):
        doc = orjson.loads(bench_envelope(PER_ENVELOPE, seed))
        marker = f"{tag}-{seed}"
        props = doc["records"][0]["properties"]
        props.update(id=marker, clientAppUsed="IMAP4", status={"errorCode": 0})
        doc["records"][0]["resultType"] = "0"
        out.append((marker, orjson.dumps(doc)))
    return out


async def _drain_raw(settings: Settings, messages: int) -> float:
    consumer = AIOKafkaConsumer(
        settings.topic("raw"),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    await consumer.start()
    try:
        started, seen = time.perf_counter(), 0
        while seen < messages:
            batch = await consumer.getmany(timeout_ms=500)
            seen += sum(len(records) for records in batch.values())
        return time.perf_counter() - started
    finally:
        await consumer.stop()


def _metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
    )


def _wait_for(port: int, name: str, target: float, timeout_s: float) -> tuple[float, float]:
    """(when, value) once the worker's metric ``name`` reaches ``target``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = _metric(port, name)
        except OSError:
            value = 0.0  # the worker is still starting
        if value >= target:
            return time.perf_counter(), value
        time.sleep(0.25)
    raise TimeoutError(f"{name} did not reach {target} in {timeout_s} s")


def _peak_rss_mb(pid: int) -> float:
    status = open(f"/proc/{pid}/status").read()  # noqa: SIM115
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def run_stream_bench(n_records: int, rate: int, seconds: float) -> str:
    tag = uuid4().hex[:8]
    with EmbeddedBroker() as broker:
        producer = KafkaProducer(
            bootstrap_servers=broker.bootstrap, linger_ms=5, max_request_size=4 << 20
        )
        bulk = _envelopes(max(1, n_records // PER_ENVELOPE), f"bulk{tag}")
        records = len(bulk) * PER_ENVELOPE

        one = _stage_settings(broker.bootstrap, f"{tag}one")
        _fill(producer, one, bulk)
        raw_rps = len(bulk) * PER_ENVELOPE / asyncio.run(_drain_raw(one, len(bulk) + 1))
        workers = [spawn_worker(one, subprocess.DEVNULL)]
        try:
            pipeline_rps = _throughput(one, records)
            p50, p99 = _latency(one, producer, rate, seconds, tag)
            rss = _peak_rss_mb(workers[0].pid)
        finally:
            _stop(workers)

        split = _stage_settings(broker.bootstrap, f"{tag}split")
        _fill(producer, split, bulk)
        stages = [split.model_copy(update={"stage": "detect"})]
        stages.append(split.model_copy(update={"stage": "ingest", "metrics_port": free_port()}))
        workers = [spawn_worker(stage, subprocess.DEVNULL) for stage in stages]
        try:
            split_rps = _throughput(split, records)
            split_rss = [_peak_rss_mb(worker.pid) for worker in workers]
        finally:
            _stop(workers)
        producer.close()
    return "\n".join(
        [
            f"stream: {records} sign-ins in {len(bulk)} envelopes of {PER_ENVELOPE}, "
            f"~5 KB each, embedded broker",
            f"raw ceiling (aiokafka, no processing): {raw_rps:,.0f} sign-ins/s",
            f"one worker process (raw -> signins -> alerts): {pipeline_rps:,.0f} sign-ins/s",
            f"ingest and detect in a process each:           {split_rps:,.0f} sign-ins/s "
            f"(ratio {split_rps / raw_rps:.2f}; RSS detect {split_rss[0]:.0f} MB, "
            f"ingest {split_rss[1]:.0f} MB)",
            f"latency at {rate} sign-ins/s for {seconds:.0f} s: p50 {p50:.0f} ms, "
            f"p99 {p99:.0f} ms; worker peak RSS {rss:.0f} MB",
            f"bench pipeline_rps={pipeline_rps:.0f} raw_rps={raw_rps:.0f} "
            f"ratio={pipeline_rps / raw_rps:.2f} p50_ms={p50:.0f} p99_ms={p99:.0f} "
            f"rss_mb={rss:.0f} split_rps={split_rps:.0f}",
        ]
    )


def _stage_settings(bootstrap: str, tag: str) -> Settings:
    settings = embedded_settings(bootstrap, free_port()).model_copy(
        update={"topic_prefix": f"bench{tag}.", "app_id": f"signin-risk-bench{tag}"}
    )
    create_topics(settings)
    return settings


def _fill(producer: KafkaProducer, settings: Settings, bulk: list[tuple[str, bytes]]) -> None:
    """The bulk envelopes after one warm-up envelope: the clock starts at the first alert."""
    for _, value in _envelopes(1, f"warm{settings.topic_prefix}") + bulk:
        producer.send(settings.topic("raw"), value)
    producer.flush()


def _throughput(settings: Settings, records: int) -> float:
    """Sign-ins/s from the first processed (the group has joined) to the last: group joins
    on the embedded broker take seconds and are not throughput."""
    port = settings.metrics_port
    first, at_first = _wait_for(port, "signin_risk_signins_total", 1, 60)
    done, at_done = _wait_for(port, "signin_risk_signins_total", records + PER_ENVELOPE, 600)
    return (at_done - at_first) / (done - first)


def _stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        terminate(worker, 30, "worker")


def _latency(
    settings: Settings, producer: KafkaProducer, rate: int, seconds: float, tag: str
) -> tuple[float, float]:
    """Offer ``rate`` sign-ins/s; time each envelope from send to its alert on the topic."""
    consumer = KafkaConsumer(
        settings.topic("alerts"),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="latest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
    )
    consumer.poll(timeout_ms=500)  # join and position at the end before sending
    count = max(1, int(rate * seconds / PER_ENVELOPE))
    paced = _envelopes(count, f"lat{tag}")
    sent: dict[str, float] = {}
    latencies: list[float] = []
    interval = PER_ENVELOPE / rate
    start = time.perf_counter()
    for i, (marker, value) in enumerate(paced):
        delay = start + i * interval - time.perf_counter()
        if delay > 0:
            _collect(consumer, sent, latencies, delay)
        sent[marker] = time.perf_counter()
        producer.send(settings.topic("raw"), value)
        producer.flush()
    deadline = time.perf_counter() + 30
    while len(latencies) < len(paced) and time.perf_counter() < deadline:
        _collect(consumer, sent, latencies, 0.1)
    consumer.close()
    return _percentile(latencies, 0.5) * 1000, _percentile(latencies, 0.99) * 1000


def _collect(
    consumer: KafkaConsumer, sent: dict[str, float], out: list[float], wait_s: float
) -> None:
    batch = consumer.poll(timeout_ms=max(1, int(wait_s * 1000)))
    now = time.perf_counter()
    for messages in batch.values():
        for message in messages:
            for signin_id in orjson.loads(message.value)["signin_ids"]:
                if signin_id in sent:
                    out.append(now - sent.pop(signin_id))
