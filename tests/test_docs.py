"""The README and docs/ stay true: they render as CommonMark as written, every relative link
and anchor leads somewhere, every command they show exists, every setting they name is real
and listed in the configuration reference, and the figures they quote from the bundled
sample are what ``scan`` of the sample gives."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import orjson
import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token
from pydantic import SecretStr

from pipeline.core.rules import REGISTRY
from pipeline.runtime.settings import Settings
from tools import democapture

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "deploy" / "README.md"]
SAMPLE = ROOT / "pipeline" / "data" / "sample-signins.ndjson"
SHELLS = {"sh", "bash", "console", "shell"}
SETTING = re.compile(r"SIGNIN_RISK_[A-Z0-9_]*[A-Z0-9]\b(?![<*])")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")

MD = MarkdownIt("commonmark").enable("table")


def _inline_text(inline: Token) -> str:
    """A heading's text as GitHub reads it for its anchor: markup dropped, code kept."""
    return "".join(
        child.content for child in inline.children or [] if child.type in ("text", "code_inline")
    )


def slug(text: str, taken: Counter[str]) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped but hyphens and
    underscores, spaces as hyphens; a repeated heading gets -1, -2, ..."""
    base = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
    n = taken[base]
    taken[base] += 1
    return base if n == 0 else f"{base}-{n}"


def headings(text: str) -> frozenset[str]:
    tokens = MD.parse(text)
    taken: Counter[str] = Counter()
    return frozenset(
        slug(_inline_text(tokens[i + 1]), taken)
        for i, token in enumerate(tokens)
        if token.type == "heading_open"
    )


@cache
def anchors(path: Path) -> frozenset[str]:
    return headings(path.read_text())


def _walk(tokens: list[Token]) -> Iterator[Token]:
    for token in tokens:
        yield token
        if token.children:
            yield from _walk(token.children)


@cache
def subcommands() -> frozenset[str]:
    """What ``signin-risk --help`` lists, asked once."""
    shown = democapture.cli("--help")
    listed = re.search(r"\{([a-z,-]+)\}", shown)
    assert listed, shown
    return frozenset(listed.group(1).split(","))


@cache
def make_targets() -> frozenset[str]:
    text = (ROOT / "Makefile").read_text()
    return frozenset(re.findall(r"^([a-z][a-z-]*):", text, re.MULTILINE))


def _command_problems(line: str) -> list[str]:
    words = line.strip().removeprefix("$ ").split()
    if "#" in [w[:1] for w in words]:  # a comment ends the command
        words = words[: [w[:1] for w in words].index("#")]
    while words and re.fullmatch(r"\w+=\S*", words[0]):  # VAR=value before the command
        words.pop(0)
    if not words:
        return []
    if words[0] == "make":
        targets = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
        return [
            f"`{line.strip()}`: no make target {t!r}" for t in targets if t not in make_targets()
        ]
    if words[0] != "signin-risk" and not words[0].endswith("/signin-risk"):
        return []
    rest = [w for w in words[1:] if not w.startswith("-")]
    if not rest or rest[0] not in subcommands():
        return [f"`{line.strip()}`: signin-risk --help lists no such subcommand"]
    return []


def problems(path: Path, text: str) -> list[str]:
    """What is wrong with one page: unclosed fences, dead relative links and anchors, and
    commands in shell blocks that do not exist."""
    found: list[str] = []
    lines = text.split("\n")
    tokens = MD.parse(text)
    for token in tokens:
        if token.type != "fence" or token.map is None:
            continue
        start, end = token.map
        fence = re.escape(token.markup[0]) + f"{{{len(token.markup)},}}"
        if end - 1 <= start or not re.fullmatch(rf"\s*{fence}\s*", lines[end - 1]):
            found.append(f"{path.name}:{start + 1}: code fence never closed")
        # A line like "``` more text" inside a fence: meant to close it, it does not, and
        # the fence runs on over what follows until some later bare fence.
        for offset, line in enumerate(lines[start + 1 : end - 1], start + 2):
            if re.match(rf"\s*{fence}\s*\S", line):
                found.append(f"{path.name}:{offset}: text after a fence's backticks keeps it open")
                break
        if token.info.split()[:1] and token.info.split()[0] in SHELLS:
            for line in token.content.splitlines():
                found += [f"{path.name}:{start + 1}: {p}" for p in _command_problems(line)]
    for token in _walk(tokens):
        target = token.attrs.get("href") or token.attrs.get("src")
        if not isinstance(target, str) or not target or SCHEME.match(target):
            continue
        file, _, fragment = target.partition("#")
        if not file:
            if fragment not in headings(text):
                found.append(f"{path.name}: link to {target}: no such heading")
            continue
        dest = (path.parent / file).resolve()
        if not dest.exists():
            found.append(f"{path.name}: link to {target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            found.append(f"{path.name}: link to {target}: no such heading")
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_renders_and_its_links_and_commands_hold(page: Path) -> None:
    assert problems(page, page.read_text()) == []


def test_the_checks_catch_what_they_are_for(tmp_path: Path) -> None:
    """Each defect of a page is reported: the test above would fail on it."""
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading, twice\n")
    page = tmp_path / "page.md"
    good = (
        "# Page\n\n[ok](other.md#a-code-heading-twice) [self](#page) [web](https://x.org/a)\n\n"
        "```sh\n.venv/bin/signin-risk --debug scan x.json\nmake demo\n```\n"
    )
    assert problems(page, good) == []
    bad = {
        "[gone](missing.md)": "no such file",
        "[gone](other.md#no-such-part)": "no such heading",
        "[gone](#nowhere)": "no such heading",
        "```sh\nsignin-risk frobnicate x\n```": "no such subcommand",
        "```console\n$ make nothing-here\n```": "no make target",
        "```\nnever closed\nmore\n": "never closed",
        "```\na\n``` text after\n\n## Swallowed\n\n```sh\nls\n```": "keeps it open",
    }
    for snippet, reason in bad.items():
        reported = problems(page, f"# Page\n\n{snippet}\n")
        assert len(reported) == 1 and reason in reported[0], (snippet, reported)


def test_slugs_follow_github() -> None:
    taken: Counter[str] = Counter()
    assert slug("What the demo shows", taken) == "what-the-demo-shows"
    assert slug("Inputs and outputs: `scan`, v1.0!", taken) == "inputs-and-outputs-scan-v10"
    assert slug("What the demo shows", taken) == "what-the-demo-shows-1"


def _default(value: object) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _rows(text: str) -> list[list[Token]]:
    """Every table body row of a page, as its cells' inline tokens."""
    rows: list[list[Token]] = []
    tokens = MD.parse(text)
    for i, token in enumerate(tokens):
        if token.type == "tr_open":
            cells = []
            for t in tokens[i + 1 :]:
                if t.type == "tr_close":
                    break
                if t.type == "inline":
                    cells.append(t)
            rows.append(cells)
    return rows


def _codes(cell: Token) -> list[str]:
    return [c.content for c in cell.children or [] if c.type == "code_inline"]


def test_configuration_reference_lists_every_setting_with_its_default() -> None:
    listed: dict[str, list[str]] = {}
    for cells in _rows((ROOT / "docs" / "configuration.md").read_text()):
        name = _codes(cells[0])
        if name and name[0].startswith("SIGNIN_RISK_"):
            listed[name[0]] = _codes(cells[1])
    fields = {f"SIGNIN_RISK_{name.upper()}": f for name, f in Settings.model_fields.items()}
    assert sorted(listed) == sorted(fields)
    for name, field in fields.items():
        shown = listed[name][0] if listed[name] else ""
        assert shown == _default(field.default), name


def test_every_setting_named_in_the_docs_exists() -> None:
    real = {f"SIGNIN_RISK_{name.upper()}" for name in Settings.model_fields}
    for page in PAGES:
        unknown = set(SETTING.findall(page.read_text())) - real
        assert not unknown, (page.name, sorted(unknown))


@pytest.fixture(scope="module")
def sample_counts() -> Counter[str]:
    """Alerts per rule, as ``scan`` of the bundled sample gives them."""
    out = democapture.cli("scan", str(SAMPLE))
    return Counter(orjson.loads(line)["rule"] for line in out.splitlines())


def test_rule_table_matches_the_registry_and_the_sample(sample_counts: Counter[str]) -> None:
    rows = {}
    for cells in _rows((ROOT / "README.md").read_text()):
        ids = _codes(cells[0])
        if len(cells) == 6 and ids and re.fullmatch(r"[a-z]+(-[a-z]+)*", ids[0]):
            rows[ids[0]] = cells
    assert sorted(rows) == sorted(REGISTRY)
    for rule_id, (_, _, severity, mitre, _, sample) in rows.items():
        rule = REGISTRY[rule_id]
        assert _codes(severity)[:1] == [rule.severity], rule_id
        assert sorted(_codes(mitre)) == sorted(rule.mitre), rule_id
        assert int(sample.content) == sample_counts[rule_id], rule_id


def test_demo_capture_is_the_samples_and_the_readme_shows_it(
    sample_counts: Counter[str],
) -> None:
    screen = democapture.CAPTURE.read_text()
    assert democapture.readme_block((ROOT / "README.md").read_text()) == democapture.excerpt(
        screen
    ), "run `make demo-capture` (or fix the README's demo block)"
    summary = next(m for line in screen.splitlines() if (m := democapture.SUMMARY.match(line)))
    per_rule = dict(pair.split("=") for pair in summary.group(2).split(", "))
    assert {rule: int(n) for rule, n in per_rule.items()} == dict(sample_counts)
    assert int(summary.group(1)) == sum(sample_counts.values())


def test_sample_size_quoted_is_the_samples() -> None:
    """ "N records of a fictional tenant, in ten Event Hubs envelopes", wherever it is said."""
    envelopes = [orjson.loads(line) for line in SAMPLE.read_bytes().splitlines() if line.strip()]
    records = sum(len(envelope["records"]) for envelope in envelopes)
    words = {10: "ten"}
    quoted = re.compile(r"(\d+)\s+records of a fictional tenant[^.]*?in (\w+) Event Hubs envelopes")
    found = 0
    for page in PAGES:
        for count, shown_envelopes in quoted.findall(page.read_text()):
            found += 1
            assert int(count) == records, page.name
            assert shown_envelopes == words.get(len(envelopes), str(len(envelopes))), page.name
    assert found >= 2
