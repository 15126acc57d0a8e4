"""The wheel holds the runtime only: the sample generator and the benchmarks are tools/ of the
checkout, and ``signin-risk bench`` says so in one line when run from an installed package."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLING = {"synth", "bench", "bridgebench", "streambench"}
SCRIPT = Path(sys.executable).parent / "signin-risk"


def _signin_risk(*args: str) -> list[str]:
    if SCRIPT.is_file():
        return [str(SCRIPT), *args]
    return [sys.executable, "-m", "pipeline.cli", *args]


def _imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_the_runtime_package_neither_holds_nor_imports_the_tooling() -> None:
    modules = list((REPO / "pipeline").rglob("*.py"))
    assert not [m for m in modules if m.stem in TOOLING]
    for module in modules:
        for name in _imported(module):
            top, _, rest = name.partition(".")
            assert top != "tools", f"{module.relative_to(REPO)} imports {name}"
            assert rest.split(".")[-1] not in TOOLING, f"{module.relative_to(REPO)} imports {name}"
    assert {m.stem for m in (REPO / "tools").glob("*.py")} >= TOOLING


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds from a copy of the checkout (tools/ included, so excluding it is
    the packaging's doing; a copy, so the build leaves nothing in the working tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    junk = shutil.ignore_patterns("__pycache__", "*.pyc")
    for tree in ("pipeline", "tools"):
        shutil.copytree(REPO / tree, src / tree, ignore=junk)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp), str(src)],
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr.decode()
    (built,) = tmp.glob("signin_risk-*.whl")
    return built


def test_the_wheel_holds_the_runtime_and_its_data_but_no_tooling(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "pipeline",
        wheel.name.split("-py")[0] + ".dist-info",
    }
    assert not [n for n in names if Path(n).stem in TOOLING], names
    assert "pipeline/data/sample-signins.ndjson" in names
    assert "pipeline/runtime/broker.py" in names and "pipeline/runtime/demo.py" in names


def test_bench_of_an_installed_package_says_where_the_benchmark_is(
    wheel: Path, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    # The unpacked wheel comes before the venv's editable install of this checkout.
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import pipeline.cli; print(pipeline.cli.__file__)"],
        capture_output=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=True,
    )
    assert Path(where.stdout.decode().strip()).is_relative_to(site)

    result = subprocess.run(
        _signin_risk("bench", "--scan-only"),
        capture_output=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1, result.stderr.decode()
    assert "source checkout" in lines[0] and "make bench" in lines[0], lines[0]


def test_bench_from_the_checkout_runs_the_tools_wherever_it_is_started(tmp_path: Path) -> None:
    result = subprocess.run(
        _signin_risk("bench", "--scan-only", "--records", "40", "--repeat", "1"),
        capture_output=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert b"bench scan_rps=" in result.stdout


def test_bench_options_are_the_tools_and_other_commands_still_refuse_unknown_ones() -> None:
    usage = subprocess.run(
        _signin_risk("bench", "--help"),
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert usage.returncode == 0
    assert b"usage: signin-risk bench" in usage.stdout and b"--scan-only" in usage.stdout
    unknown = subprocess.run(
        _signin_risk("check-config", "--scan-only"),
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert unknown.returncode == 2
    assert b"unrecognized arguments: --scan-only" in unknown.stderr
