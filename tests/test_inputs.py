"""What ``scan`` accepts as input: gzip (by name or magic), directories, stdin, many files;
and what it writes: every ``--format``, to stdout or ``--output``."""

from __future__ import annotations

import gzip
import io
import re
import shutil
import sys
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.alerts.formats import line
from pipeline.cli import main
from pipeline.core import detect
from pipeline.sources.inputs import InputError, expand, read_input

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"


def scan(capsysbinary: pytest.CaptureFixture[bytes], *args: str) -> tuple[int, bytes, str]:
    code = main(["scan", *args])
    out, err = capsysbinary.readouterr()
    return code, out, err.decode()


class _Frozen(datetime):
    """``detected_at`` is the clock's: frozen, two runs' documents can be compared."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> _Frozen:
        return cls(2026, 12, 1, 12, 0, tzinfo=tz)


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detect, "datetime", _Frozen)


@pytest.fixture
def expected(frozen_clock: None) -> bytes:
    """The sample's alerts as scan writes them from the plain file."""
    out = io.BytesIO()
    from pipeline.core.policy import Policy
    from pipeline.core.scan import scan as run

    run([(SAMPLE.name, SAMPLE.read_bytes())], Policy(), out)
    assert out.getvalue().count(b"\n") > 30
    return out.getvalue()


def _ids(data: bytes) -> list[str]:
    return [orjson.loads(x)["id"] for x in data.splitlines()]


def test_gzip_is_read_by_its_magic_bytes_whatever_the_name(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes], expected: bytes
) -> None:
    named = tmp_path / "signins.ndjson.gz"
    named.write_bytes(gzip.compress(SAMPLE.read_bytes()))
    renamed = tmp_path / "blob"
    shutil.copy(named, renamed)
    for path in (named, renamed):
        code, out, err = scan(capsysbinary, str(path))
        assert code == 0
        assert "rejected: none" in err
        assert _ids(out) == _ids(expected)


def test_a_corrupt_gzip_is_one_line_naming_it(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    broken = tmp_path / "cut.gz"
    broken.write_bytes(gzip.compress(SAMPLE.read_bytes())[:500])
    code, out, err = scan(capsysbinary, str(broken))
    assert code == 2
    assert out == b""
    assert err.splitlines() == [
        f"signin-risk: {broken}: not a readable gzip file (Compressed file ended before the "
        "end-of-stream marker was reached)"
    ]


def test_a_directory_is_every_file_below_it_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.json").write_text("{}")
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / ".hidden").write_text("{}")
    (tmp_path / "b" / "1.json.gz").write_bytes(gzip.compress(b"{}"))
    assert expand([str(tmp_path), "-"]) == [
        str(tmp_path / "a.json"),
        str(tmp_path / "b" / "1.json.gz"),
        str(tmp_path / "b" / "2.json"),
        "-",
    ]


def test_a_directory_of_exports_gives_the_alerts_of_its_files(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes], expected: bytes
) -> None:
    lines = SAMPLE.read_bytes().splitlines(keepends=True)
    (tmp_path / "day1").mkdir()
    (tmp_path / "day1" / "part-1.json").write_bytes(b"".join(lines[:4]))
    (tmp_path / "day2.json.gz").write_bytes(gzip.compress(b"".join(lines[4:])))
    code, out, err = scan(capsysbinary, str(tmp_path))
    assert code == 0, err
    assert sorted(_ids(out)) == sorted(_ids(expected))


@pytest.mark.parametrize(
    ("path", "message"),
    [("nowhere.json", "no such file or directory"), ("empty", "directory holds no files")],
)
def test_a_path_without_input_is_one_line_and_exit_2(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes], path: str, message: str
) -> None:
    (tmp_path / "empty").mkdir()
    code, out, err = scan(capsysbinary, str(tmp_path / path))
    assert (code, out) == (2, b"")
    assert err == f"signin-risk: {tmp_path / path}: {message}\n"


def test_stdin_and_files_together(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes], expected: bytes
) -> None:
    lines = SAMPLE.read_bytes().splitlines(keepends=True)
    stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(gzip.compress(b"".join(lines[5:])))))
    monkeypatch.setattr(sys, "stdin", stdin)
    head = SAMPLE.parent / "head.ndjson"
    try:
        head.write_bytes(b"".join(lines[:5]))
        code, out, err = scan(capsysbinary, str(head), "-")
    finally:
        head.unlink()
    assert code == 0, err
    assert "reading records from the terminal" not in err
    assert sorted(_ids(out)) == sorted(_ids(expected))


def test_stdin_on_a_terminal_says_it_waits(
    monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    class Terminal(io.TextIOWrapper):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal(io.BufferedReader(io.BytesIO(b""))))
    code, _, err = scan(capsysbinary, "-")
    assert code == 0
    assert err.splitlines()[0] == (
        "signin-risk: reading records from the terminal; paste them and end with Ctrl-D, "
        "or give files: signin-risk scan FILE|DIR..."
    )


def test_read_input_of_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="No such file"):
        read_input(str(tmp_path / "x"))


def _alerts(data: bytes) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in data.splitlines()]


@pytest.mark.parametrize("fmt", ["ocsf", "ecs"])
def test_ocsf_and_ecs_are_the_forwarders_documents(
    capsysbinary: pytest.CaptureFixture[bytes], expected: bytes, fmt: str
) -> None:
    code, out, _ = scan(capsysbinary, "--format", fmt)
    assert code == 0
    wanted = [line(alert, fmt).encode() for alert in _alerts(expected)]  # type: ignore[arg-type]
    assert out.splitlines() == wanted


def test_cef_is_the_file_sinks_rfc5424_line(
    capsysbinary: pytest.CaptureFixture[bytes], expected: bytes
) -> None:
    code, out, _ = scan(capsysbinary, "--format", "cef")
    assert code == 0
    rows = out.decode().splitlines()
    assert len(rows) == len(_alerts(expected))
    for row, alert in zip(rows, _alerts(expected), strict=True):
        head, cef = row.split(" CEF:", 1)
        assert re.fullmatch(r"<1\d\d>1 \S+Z \S+ signin-risk \d+ \S+ \[signinrisk@32473 .*\]", head)
        assert f'id="{alert["id"]}"' in head
        assert "CEF:" + cef == line(alert, "cef")


def test_json_to_an_output_file_is_what_stdout_gets(
    tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes], expected: bytes
) -> None:
    target = tmp_path / "alerts.jsonl"
    code, out, _ = scan(capsysbinary, "--format", "json", "--output", str(target))
    assert (code, out) == (0, b"")
    assert _ids(target.read_bytes()) == _ids(expected)
    assert target.stat().st_mode & 0o077 == 0  # alerts name users: private


def test_table_rows_in_event_time_and_summary(
    capsysbinary: pytest.CaptureFixture[bytes], expected: bytes
) -> None:
    code, out, _ = scan(capsysbinary, "--format", "table")
    assert code == 0
    text = out.decode()
    assert "\x1b[" not in text  # not a terminal: no colour codes
    header, *rows, summary = text.splitlines()
    assert header.split() == [
        "TIME", "ALERT", "RULE", "SEVERITY", "USER", "CLIENT", "IP", "LOCATION", "SUMMARY"
    ]  # fmt: skip
    alerts = _alerts(expected)
    assert len(rows) == len(alerts)
    assert [r[:23] for r in rows] == sorted(a["time"][:23] for a in alerts)
    assert summary.startswith(f"{len(alerts)} alert(s): ")
    assert any("…" in r for r in rows)  # long values end in an ellipsis
