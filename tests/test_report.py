"""The HTML report, looked at in a real browser (Debian's chromium through chromedriver):
every chart drawn with data, no console errors, the numbers ``scan`` gives, offline."""

from __future__ import annotations

import io
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from builders import dumps, signin
from test_cli import REPO, SAMPLE, _command, error_line, run

from pipeline.core.policy import Policy
from pipeline.core.scan import scan
from tools.browser import chromium, open_report

CHARTS = {
    "alerts-by-rule",
    "alerts-by-severity",
    "incidents-by-severity",
    "top-users",
    "top-ips",
    "client-families",
    "outlook-builds",
    "non-compliant",
    "outcomes",
    "rejected",
}


CORPUS = REPO.parent / "shared" / "corpus" / "public"


@pytest.fixture(scope="module", params=["sample", "corpus"])
def inputs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The sample with a file of a good sign-in and two bad lines (for the rejects chart);
    or the public corpus."""
    if request.param == "corpus":
        if not CORPUS.is_dir():
            message = f"public corpus not found at {CORPUS}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        return sorted(p for p in CORPUS.iterdir() if p.suffix != ".md")
    extra = tmp_path_factory.mktemp("inputs") / "extra.ndjson"
    extra.write_bytes(
        dumps(signin({"id": "extra-1"})) + b"\n{not json\n" + b'{"records": [{"x": 1}]}\n'
    )
    return [SAMPLE, extra]


def _umask0(*args: str) -> subprocess.CompletedProcess[bytes]:
    old = os.umask(0)
    try:
        return run(*args)
    finally:
        os.umask(old)


@pytest.fixture(scope="module")
def report(inputs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("report") / "report.html"
    result = _umask0("report", *map(str, inputs), "-o", str(target))
    assert result.returncode == 0, result.stderr.decode()
    # Not a terminal: no progress bar, just the one line saying what was written.
    assert result.stderr.decode().splitlines() == [
        line for line in result.stderr.decode().splitlines() if line.startswith("report: ")
    ]
    return target


def scan_numbers(inputs: list[Path]) -> dict[str, int]:
    out, incidents = io.BytesIO(), io.BytesIO()
    stats = scan([(p.name, p.read_bytes()) for p in inputs], Policy(), out, incidents=incidents)
    alerts = out.getvalue().splitlines()
    numbers = {
        "records": stats.records,
        "signins": sum(n for c, n in stats.categories.items() if "SignIn" in c),
        "alerts": len(alerts),
        "incidents": len(incidents.getvalue().splitlines()),
        "rejected": sum(stats.rejected.values()),
    }
    numbers |= {f"alerts-{rule}": n for rule, n in stats.alerts.items()}
    numbers |= {f"rejected-{reason}": n for reason, n in stats.rejected.items()}
    return numbers


def test_the_report_renders_in_chromium_with_scans_numbers(
    report: Path, inputs: list[Path], tmp_path: Path
) -> None:
    with chromium() as driver:
        charts = open_report(driver, report)
        logs = driver.get_log("browser")
        shown = {
            e.get_attribute("data-number"): int(e.text)
            for e in driver.find_elements("css selector", "[data-number]")
        }
        picture = tmp_path / "report.png"
        assert driver.save_screenshot(str(picture))
    assert [entry for entry in logs if entry["level"] in ("SEVERE", "WARNING")] == []
    assert {c["id"] for c in charts} <= CHARTS
    if SAMPLE in inputs:
        assert {c["id"] for c in charts} == CHARTS
    for chart in charts:
        assert chart["rendered"], chart
        assert chart["points"] > 0 and chart["values"] > 0, chart
    expected = scan_numbers(inputs)
    assert {k: v for k, v in shown.items() if k in expected} == expected
    assert shown["rejected"] > 0
    assert shown["non-compliant-users"] > 0
    assert picture.stat().st_size > 10_000


def test_the_report_is_one_private_file_that_fetches_nothing(report: Path) -> None:
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    text = report.read_text()
    assert not re.search(r"<script[^>]*\bsrc=|<link\b|<img\b|<iframe\b", text)
    assert "Plotly.newPlot" in text


def test_the_report_pseudonymises_users_and_addresses(tmp_path: Path) -> None:
    refused = run("report", "-o", str(tmp_path / "r.html"), "--pseudonymize", "user,ip")
    assert refused.returncode == 2 and "SIGNIN_RISK_PSEUDONYM_KEY" in error_line(refused)
    target = tmp_path / "masked.html"
    subprocess.run(
        [*_command(), "report", "-o", str(target), "--pseudonymize", "user,ip"],
        cwd=REPO,
        env={**os.environ, "SIGNIN_RISK_PSEUDONYM_KEY": "k"},
        check=True,
        capture_output=True,
    )
    text = target.read_text()
    known: set[Any] = set()
    for line in SAMPLE.read_bytes().splitlines():
        for record in orjson.loads(line)["records"]:
            props = record.get("properties", {})
            known |= {props.get("userPrincipalName"), props.get("ipAddress")}
    leaked = sorted(v for v in known if v and v in text)
    assert leaked == []
    assert "anon-" in text
