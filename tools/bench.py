"""Throughput of the offline path, next to the cost of bare JSON decoding of the same bytes.

The ratio is the figure that matters: orjson is the floor every record pays, so the ratio
says how much the normalization, client identity, risk and rules add on top, independent of
the machine the benchmark runs on.

``python -m tools.bench`` (``make bench``, or ``signin-risk bench`` from a checkout) prints
this scan figure, then the streaming worker's (``tools/streambench.py``) over the same
dataset, and with ``--bridge`` the Event Hubs bridge's (``tools/bridgebench.py``). The
lines that start with ``bench `` are for machines: ``key=value`` pairs, always the same keys.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Sequence

import orjson

from pipeline.core.policy import Policy, policy_from_data
from pipeline.core.rules import REGISTRY, StatefulRule
from pipeline.core.scan import scan
from tools.synth import bench_envelope

RECORDS_PER_ENVELOPE = 20  # what diagnostic settings deliver per Event Hubs event, roughly


def _best_rate(records: int, seconds: list[float]) -> float:
    return records / min(seconds)


def dataset(n_records: int) -> list[bytes]:
    """The bench mix: envelopes of ~5 KB sign-ins of the sample tenant's everyday users."""
    return [
        bench_envelope(RECORDS_PER_ENVELOPE, seed)
        for seed in range(max(1, n_records // RECORDS_PER_ENVELOPE))
    ]


def run_scan_bench(envelopes: list[bytes], repeat: int) -> str:
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
        ]
    )


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Throughput of scan, the streaming worker and the bridge."
    )
    parser.add_argument(
        "--records", type=int, default=100_000, help="~5 KB sign-ins in the dataset"
    )
    parser.add_argument(
        "--scan-records", type=int, default=20_000, help="of them, how many scan reads"
    )
    parser.add_argument("--repeat", type=int, default=5, help="scan runs; the best one counts")
    parser.add_argument("--scan-only", action="store_true", help="skip the streaming benchmark")
    parser.add_argument("--rate", type=int, default=2000, help="sign-ins/s for the latency phase")
    parser.add_argument("--seconds", type=float, default=10, help="length of the latency phase")
    parser.add_argument(
        "--users", type=int, default=200_000, help="distinct users for the state figures"
    )
    parser.add_argument("--bridge", action="store_true", help="also the Event Hubs bridge")
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    args = build_parser(prog).parse_args(argv)
    records = min(args.scan_records, args.records) if args.scan_only else args.records
    envelopes = dataset(records)
    print(run_scan_bench(envelopes[: args.scan_records // RECORDS_PER_ENVELOPE or 1], args.repeat))
    sys.stdout.flush()
    if not args.scan_only:
        from pipeline.runtime.app import quiet_libraries
        from tools.streambench import run_stream_bench

        quiet_libraries()
        run_stream_bench(envelopes, args.rate, args.seconds, args.users)
    if args.bridge:
        from tools.bridgebench import run_bridge_bench

        print(run_bridge_bench(len(envelopes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
