"""What could not be used, as it goes to a dead-letter topic or a ``--rejects`` file.

Its own module because every stage that rejects (the parser, the worker's agents, the
forwarder) shares the one shape, and the forwarder should not import the parser for it.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

import orjson

DEFAULT_MAX_DEADLETTER_BYTES = 900 * 1024


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record (or whole event) that did not parse, with what is needed to dead-letter it."""

    reason: str
    field: str
    detail: str
    raw: bytes
    line: int = 1
    record_id: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    def describe(self) -> str:
        """What a log line may say of it: never the record, which holds names and addresses."""
        rec = f" record={self.record_id}" if self.record_id else ""
        where = f" at {self.field}" if self.field else ""
        return f"{self.reason}{where}{rec} bytes={len(self.raw)} sha256={self.sha256[:16]}"

    def to_json(self, limit: int = DEFAULT_MAX_DEADLETTER_BYTES, **where: object) -> bytes:
        """The dead-letter form: reason, field, where it came from, and the record itself
        (its text, or base64 when the bytes are not UTF-8), in at most ``limit`` bytes.

        A record that would not fit is cut to its first bytes; ``length`` and ``sha256``
        always describe the whole original, so it can be found and matched at its source.
        """
        head = self.raw
        valid_utf8 = _is_utf8(head)
        letter = {
            "reason": self.reason,
            "field": self.field,
            "detail": self.detail,
            "record_id": self.record_id,
            **where,
            "length": len(self.raw),
            "sha256": self.sha256,
            "truncated": False,
            "encoding": "utf-8" if valid_utf8 else "base64",
        }
        letter["record"] = ""
        room = limit - len(orjson.dumps(letter))  # what the record may take, encoded
        while True:
            if valid_utf8:  # a cut may split a character: drop its partial tail
                letter["record"] = head.decode("utf-8", "ignore")
            else:
                letter["record"] = base64.b64encode(head).decode("ascii")
            out = orjson.dumps(letter)
            if len(out) <= limit or not head:
                return out
            # Escapes and base64 inflate the record by a ratio: shrink by it, with margin.
            encoded = len(out) - (limit - room)
            head = head[: max(min(len(head) - 1, len(head) * room // encoded - 8), 0)]
            letter["truncated"] = True


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def processing_error(exc: BaseException, raw: bytes, record_id: str = "") -> Rejected:
    """A bug met while handling ``raw``: rejected with the exception's type, never re-raised.
    Its message is left out: it may quote the data (a ``KeyError`` names the key it missed)."""
    return Rejected("processing-error", type(exc).__name__, type(exc).__name__, raw, 1, record_id)
