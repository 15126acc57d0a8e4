"""Capture the real demo's screen into docs/demo.txt, and its excerpt into the README.

``make demo-capture`` runs this after the demo or the sample changes; tests/test_docs.py
checks that the README's excerpt is the one :func:`excerpt` makes of the committed capture,
and that the capture's summary agrees with ``scan`` of the sample.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAPTURE = ROOT / "docs" / "demo.txt"
README = ROOT / "README.md"
START, END = "<!-- demo:start -->", "<!-- demo:end -->"
ROWS = 8
"""Alert rows the front page shows; the capture keeps them all."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
SUMMARY = re.compile(r"^(\d+) alert\(s\) in [0-9.]+ s: (.*)$")
"""The line that ends the alert rows: how many distinct alerts, and how many per rule."""


def cli(*args: str) -> str:
    """What ``signin-risk ARGS`` prints on stdout, run from this checkout."""
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return done.stdout


def capture() -> str:
    """The demo's stdout as a terminal would show it once it has finished."""
    lines = [_ANSI.sub("", line).rstrip() for line in cli("demo").splitlines()]
    return "\n".join(lines).strip("\n") + "\n"


def excerpt(screen: str) -> str:
    """The capture up to the table header, its first rows, and the alerts' summary line."""
    lines = screen.rstrip("\n").split("\n")
    header = next((i for i, line in enumerate(lines) if line.startswith("TIME ")), 0)
    summary = next(i for i, line in enumerate(lines) if SUMMARY.match(line))
    rows = [line for line in lines[header + 1 : summary] if line.strip()]
    shown = lines[: header + 1] + rows[:ROWS]
    if len(rows) > ROWS:
        shown.append(f"... {len(rows) - ROWS} more rows in docs/demo.txt")
    shown += ["", lines[summary]]
    rest = [line for line in lines[summary + 1 :] if line.strip()]
    if rest:
        shown.append(f"... then {len(rest)} more lines (incidents, the inventory) in docs/demo.txt")
    return "\n".join(shown) + "\n"


def readme_block(readme: str) -> str:
    """What the README holds between the demo markers, fences excluded."""
    inside = readme.split(START, 1)[1].split(END, 1)[0]
    return inside.strip("\n").removeprefix("```").removesuffix("```").strip("\n") + "\n"


def with_block(readme: str, screen: str) -> str:
    head, rest = readme.split(START, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{START}\n```\n{excerpt(screen)}```\n{END}{tail}"


def main() -> None:
    screen = capture()
    CAPTURE.write_text(screen)
    README.write_text(with_block(README.read_text(), screen))
    print(f"wrote {CAPTURE.relative_to(ROOT)} and the excerpt in README.md")


if __name__ == "__main__":
    main()
