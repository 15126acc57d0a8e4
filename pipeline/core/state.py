"""Keyed state: what the detect stages keep per user or address, and when it is written.

Each of the three state tables (user_risk, user_state, ip_state) is a mapping of key to the
bytes its codec (``pipeline.core.codec``) makes: a dict in ``scan``, a Faust table in the worker,
whose changelog makes the state survive a restart. ``KeyedState`` is the only way either is
read or written:

- ``get`` reads a key from the store once and keeps its decoded value;
- ``put`` changes only that kept value and marks the key touched: nothing is written;
- ``flush`` writes each touched key once (a table write is a changelog send), a value that
  is None or empty as a deletion, and forgets what it kept. The store is written then and
  at no other time.

The worker flushes at the end of each call of the driver and each sweep, inside the event
being processed: Faust sends a table's changelog records from the current event.

A key lives in one partition of every table (``partition_for``): ingest routes each record
to the partition of its key (``record_key``), so a user's records meet the user's state.
"""

from __future__ import annotations

import zlib
from collections.abc import MutableMapping
from typing import Generic, TypeVar

from pipeline.core.codec import Codec
from pipeline.core.records import Record, SignIn

V = TypeVar("V")


def partition_for(key: str, partitions: int) -> int:
    """Stable across processes and restarts (unlike ``hash``), so a user's records always
    meet the same partition of the tables."""
    return zlib.crc32(key.encode()) % partitions


def record_key(record: Record) -> str:
    """Whose history a record belongs to: the user (or workload); else the record itself."""
    if isinstance(record, SignIn):
        return record.subject_id or record.id
    return record.user_id or record.id


class KeyedState(Generic[V]):
    """One table's state: reads kept, writes collected, each touched key written once by
    ``flush``."""

    def __init__(self, codec: Codec[V], store: MutableMapping[str, bytes] | None = None) -> None:
        self._codec = codec
        self._store: MutableMapping[str, bytes] = {} if store is None else store
        self._kept: dict[str, V | None] = {}
        self._touched: set[str] = set()

    def get(self, key: str) -> V | None:
        """The key's value (None when it has none): read and decoded on the first get after
        a flush, kept until the next. A kept value changed in place must be ``put``."""
        kept = self._kept
        if key in kept:
            return kept[key]
        stored = self._store.get(key)
        value = kept[key] = self._codec.loads(stored) if stored else None
        return value

    def put(self, key: str, value: V | None) -> None:
        """The key's new value, written by the next ``flush``; None or empty deletes it."""
        self._kept[key] = value
        self._touched.add(key)

    def flush(self) -> None:
        store, dumps = self._store, self._codec.dumps
        for key in self._touched:
            value = self._kept[key]
            if value:
                store[key] = dumps(value)
            elif key in store:
                del store[key]
        self._touched.clear()
        self._kept.clear()

    def discard(self) -> None:
        """Forget what was read and changed since the last flush: the store is as it was."""
        self._touched.clear()
        self._kept.clear()

    def stored_keys(self) -> list[str]:
        """The keys in the store (what ``flush`` has written), for the sweep."""
        return list(self._store)
