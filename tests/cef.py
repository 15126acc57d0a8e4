"""A strict CEF:0 parser for the tests: the format's round trip is only proven by reading
it back the way a receiver does.

Header fields are split on unescaped pipes; extension values run until the next `` key=``
(a key is letters, digits and underscores, followed by an unescaped ``=``), so values may
hold spaces. ``\\n`` and ``\\r`` decode to newlines in both parts.
"""

from __future__ import annotations

import re

_HEADER_FIELDS = 7
_KEY = re.compile(r"([A-Za-z0-9_]+)=")
_KEY_AFTER_SPACE = re.compile(r" (?=[A-Za-z0-9_]+=)")
_UNESCAPE_HEADER = {"\\": "\\", "|": "|", "n": "\n", "r": "\r"}
_UNESCAPE_VALUE = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """The 7 header fields (version first, without ``CEF:``) and the extensions, unescaped.

    Raises ``ValueError`` on anything a strict receiver would reject: a missing prefix,
    too few header fields, an unknown escape, a bare ``=`` in a value or a duplicate key.
    """
    if not line.startswith("CEF:"):
        raise ValueError("not a CEF line")
    header, rest = _split_header(line[4:])
    return header, _parse_extension(rest)


def _split_header(text: str) -> tuple[list[str], str]:
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while len(fields) < _HEADER_FIELDS:
        if i >= len(text):
            raise ValueError(f"only {len(fields)} header fields")
        char = text[i]
        if char == "\\":
            current.append(_unescape(text, i, _UNESCAPE_HEADER))
            i += 2
        elif char == "|":
            fields.append("".join(current))
            current = []
            i += 1
        else:
            current.append(char)
            i += 1
    return fields, text[i:]


def _parse_extension(text: str) -> dict[str, str]:
    if not text:
        return {}
    if not _KEY.match(text):
        raise ValueError(f"extension does not start with a key: {text[:40]!r}")
    # A space followed by ``key=`` ends a value: a value's own ``=`` is always escaped.
    starts = [0, *(m.end() for m in _KEY_AFTER_SPACE.finditer(text))]
    extensions: dict[str, str] = {}
    for n, start in enumerate(starts):
        match = _KEY.match(text, start)
        assert match is not None
        end = starts[n + 1] - 1 if n + 1 < len(starts) else len(text)
        key = match.group(1)
        if key in extensions:
            raise ValueError(f"duplicate key {key}")
        extensions[key] = _unescape_value(text[match.end() : end])
    return extensions


def _unescape_value(raw: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(raw):
        if raw[i] == "\\":
            out.append(_unescape(raw, i, _UNESCAPE_VALUE))
            i += 2
        elif raw[i] == "=":
            raise ValueError(f"unescaped '=' in value {raw!r}")
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)


def _unescape(text: str, i: int, table: dict[str, str]) -> str:
    if i + 1 >= len(text) or text[i + 1] not in table:
        raise ValueError(f"bad escape at {i}: {text[i : i + 2]!r}")
    return table[text[i + 1]]
