"""Hostile inputs the decoders and the worker must survive: each a case a probe once broke.

Shared by the pure fuzz tests (tests/test_fuzz.py) and the streaming ones
(tests/test_hostile.py), so the worker meets exactly what the decoders were held to.
"""

from __future__ import annotations

from builders import dumps, signin

GOOD_IP = "203.0.113.77"
GOOD_UPN = "hostile.probe@contoso.com"


def good(rid: str) -> dict[str, object]:
    """A sign-in that always raises ``legacy-auth``: proof it survived its neighbours."""
    return signin(
        {"id": rid, "clientAppUsed": "IMAP4", "userPrincipalName": GOOD_UPN, "ipAddress": GOOD_IP}
    )


def nested(depth: int, opener: bytes = b"[", closer: bytes = b"]") -> bytes:
    return opener * depth + closer * depth


def _with(rid: str, field: str, value: bytes) -> bytes:
    """A sign-in whose ``properties.<field>`` is the raw JSON ``value``."""
    record = good(rid)
    record["properties"][field] = "@raw@"  # type: ignore[index]
    return dumps(record).replace(b'"@raw@"', value)


def corpus(max_event_bytes: int) -> dict[str, tuple[bytes, list[str], list[str]]]:
    """name -> (one raw event, reasons it must be rejected with, sign-in ids that must survive).

    As events: a file is local input, neither held to the size limit nor read as one event."""
    ok = dumps(good("ok-1"))
    return {
        "oversized-3mb": (
            dumps({"records": [good("big"), {"pad": "x" * (3 * max_event_bytes)}]}),
            ["too-large"],
            [],
        ),
        "ca-result-object": (
            b'{"records":['
            + _with("ca-obj", "appliedConditionalAccessPolicies", b'[{"id":"p","result":{"a":1}}]')
            + b"]}",
            [],
            ["ca-obj"],
        ),
        "ca-result-array": (
            b'{"records":['
            + _with("ca-arr", "appliedConditionalAccessPolicies", b'[{"id":"p","result":[1]}]')
            + b"]}",
            [],
            ["ca-arr"],
        ),
        "deep-array-1000": (
            b'{"records":[' + _with("deep-1", "status", nested(1000)) + b"]}",
            ["too-deep"],
            [],
        ),
        "deep-object-1500": (
            b'{"records":[' + _with("deep-2", "location", nested(1500, b'{"a":', b"}")) + b"]}",
            ["too-deep"],
            [],
        ),
        "deep-300-beside-good": (
            b'{"records":[' + ok + b"," + _with("deep-3", "status", nested(300)) + b"]}",
            [],
            ["ok-1", "deep-3"],
        ),
        "bare-deep-array": (nested(5000), ["too-deep"], []),
        "duplicate-envelope-key": (
            b'{"records":[' + ok + b',{"bad":1}],"records":[]}',
            ["duplicate-key"],
            [],
        ),
        "duplicate-record-key": (
            b'{"records":['
            + dumps(good("ok-2"))
            + b","
            + dumps(good("dup"))[:-2]
            + b',"id":"x"}}]}',
            ["duplicate-key"],
            ["ok-2"],
        ),
        "duplicate-key-pretty": (
            b'{\n  "records": [\n    ' + dumps(good("ok-3")) + b'\n  ],\n  "records": []\n}',
            ["duplicate-key"],
            [],
        ),
        "bad-beside-good": (
            b'{"records":[' + dumps(good("ok-4")) + b',{"category":"SignInLogs"},7]}',
            ["missing-field", "not-an-object"],
            ["ok-4"],
        ),
        "huge-error-code": (
            b'{"records":[' + _with("big-code", "status", b'{"errorCode":1e999}') + b"]}",
            ["invalid-json"],
            [],
        ),
        "invalid-utf8": (b'{"records":[\xff\xfe]}', ["invalid-utf8"], []),
        "nul-bytes": (b"\x00" * 64, ["invalid-json"], []),
        "empty": (b"", ["invalid-json"], []),
    }
