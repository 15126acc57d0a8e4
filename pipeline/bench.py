"""Throughput of the offline path, next to the cost of bare JSON decoding of the same bytes.

The ratio is the figure that matters: orjson is the floor every record pays, so the ratio
says how much the normalization, client identity, risk and rules add on top, independent of
the machine the benchmark runs on.
"""

from __future__ import annotations

import io
import os
import time

import orjson

from pipeline.policy import Policy, policy_from_data
from pipeline.rules import REGISTRY, StatefulRule
from pipeline.scan import scan
from pipeline.synth import bench_envelope

RECORDS_PER_ENVELOPE = 20  # what diagnostic settings deliver per Event Hubs event, roughly


def _best_rate(records: int, seconds: list[float]) -> float:
    return records / min(seconds)


def run_scan_bench(n_records: int, repeat: int) -> str:
    envelopes = [
        bench_envelope(RECORDS_PER_ENVELOPE, seed)
        for seed in range(max(1, n_records // RECORDS_PER_ENVELOPE))
    ]
    total = len(envelopes) * RECORDS_PER_ENVELOPE
    mean_kb = sum(map(len, envelopes)) / total / 1024
    inputs = [(f"envelope-{i}", data) for i, data in enumerate(envelopes)]
    policy = Policy()
    # The same scan with the stateful rules switched off: what their windows and state cost.
    stateless = policy_from_data(
        {
            "rules": {
                r.id: {"enabled": False} for r in REGISTRY.values() if isinstance(r, StatefulRule)
            }
        }
    )

    decode_times, scan_times, stateless_times = [], [], []
    for _ in range(repeat):
        started = time.perf_counter()
        for data in envelopes:
            orjson.loads(data)
        decode_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        scan(inputs, policy, io.BytesIO())
        scan_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        scan(inputs, stateless, io.BytesIO())
        stateless_times.append(time.perf_counter() - started)

    scan_rps = _best_rate(total, scan_times)
    orjson_rps = _best_rate(total, decode_times)
    stateless_rps = _best_rate(total, stateless_times)
    return "\n".join(
        [
            f"records: {total} in {len(envelopes)} envelopes, mean {mean_kb:.1f} KB/record, "
            f"best of {repeat}, one core (pid {os.getpid()})",
            f"scan:   {scan_rps:,.0f} records/s ({1e6 / scan_rps:.1f} us/record)",
            f"orjson: {orjson_rps:,.0f} records/s ({1e6 / orjson_rps:.1f} us/record)",
            f"without the stateful rules: {stateless_rps:,.0f} records/s",
            f"bench scan_rps={scan_rps:.0f} orjson_rps={orjson_rps:.0f} "
            f"ratio={scan_rps / orjson_rps:.2f}",
            f"bench stateful_rps={scan_rps:.0f} stateless_rps={stateless_rps:.0f}",
        ]
    )
