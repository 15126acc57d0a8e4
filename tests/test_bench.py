"""``make bench`` end to end at toy sizes: every phase runs against the real embedded broker
and real worker processes, and prints the machine-readable lines with every key issue 15
asks for. The figures themselves are not judged here (toy sizes make them noise)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

KEYS = [
    {
        "drain_rps",
        "core_rps",
        "pipeline_rps",
        "pipeline_vs_core",
        "core_vs_drain",
        "changelog_bytes_per_signin",
        "p50_ms",
        "p99_ms",
        "rss_mb",
    },
    {"scan_rps", "orjson_rps", "ratio"},
    {"users", "bytes_per_user", "recovery_s", "recovery_disk_s"},
]


def _bench_lines(stdout: str) -> list[dict[str, float]]:
    lines = []
    for line in stdout.splitlines():
        if line.startswith("bench "):
            pairs = [pair.split("=", 1) for pair in line.split()[1:]]
            assert all(len(pair) == 2 for pair in pairs), line
            lines.append({key: float(value) for key, value in pairs})
    return lines


TOY = ["--records", "200", "--repeat", "1", "--rate", "200", "--seconds", "1", "--users", "200"]


def test_bench_prints_every_figure_of_one_run_as_key_value_lines() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.bench", *TOY],
        capture_output=True,
        cwd=REPO,
        timeout=170,
        check=False,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = _bench_lines(result.stdout)
    assert sorted(map(sorted, (line.keys() for line in lines))) == sorted(map(sorted, KEYS))
    figures = {key: value for line in lines for key, value in line.items()}
    assert all(math.isfinite(value) for value in figures.values()), figures
    # Every phase did its work: the worker was timed, its marked sign-ins were alerted on,
    # it wrote state to the changelogs, and the restarted worker judged a new sign-in.
    assert figures["drain_rps"] > 0 and figures["core_rps"] > 0 and figures["pipeline_rps"] > 0
    assert figures["p99_ms"] >= figures["p50_ms"] > 0
    assert figures["changelog_bytes_per_signin"] > 0
    assert figures["users"] == 200 and figures["recovery_s"] > 0
    assert figures["recovery_disk_s"] > 0
    assert "two worker processes" in result.stdout
