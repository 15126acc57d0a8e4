"""Keyed state: what the detect stages keep per user or address, and when it is written.

Two state tables: user_state (per user or workload: the user's Identity Protection risk and
the user-keyed rules' windows, one value so that one changelog record carries all of a
user's state at once) and ip_state (the IP-keyed rules' windows). Each is a mapping of key to
the bytes its codec (``pipeline.core.codec``) makes: a dict in ``scan``, a Faust table in
the worker, whose changelog makes the state survive a restart. ``KeyedState`` is the only
way either is read or written:

- ``get`` reads a key once and keeps its decoded value until the next ``flush``;
- ``put`` changes only that kept value and marks the key touched;
- ``flush`` encodes each touched key once, exactly sized (orjson's buffer would keep ~4 KB
  allocated per value), a value that is None or empty as a deletion, and forgets what it
  kept. A plain state stores it then; a ``deferred`` one (the worker's) keeps it pending,
  read back by ``get``, until ``write`` stores every pending key at once: the worker writes
  once per commit interval, so a key changed by many takes in that interval costs one
  changelog record (see ``pipeline.runtime.app.Judge``).

A key lives in one partition of every table (``partition_for``): ingest routes each record
to the partition of its key (``record_key``), so a user's records meet the user's state.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, MutableMapping
from typing import Any, Generic, Protocol, TypeVar

from pipeline.core.codec import Codec, dump_user_risk, load_user_risk
from pipeline.core.records import Record, SignIn
from pipeline.core.risk import UserRisk

V = TypeVar("V")
RuleStates = dict[str, Any]
"""A key's value in user_state and ip_state: rule id -> [newest event time, the rule's state,
the incident's row or None] (``pipeline.core.stateful``), and entries named ``@...`` that
are not rules' (the user's risk, the source positions applied)."""
RISK = "@risk"
"""The entry of a user's state that holds the user's Identity Protection risk."""
MARKS = "@applied"
"""The entry that holds, per source, the position of the last record applied to the key."""


def partition_for(key: str, partitions: int) -> int:
    """Stable across processes and restarts (unlike ``hash``), so a user's records always
    meet the same partition of the tables."""
    return zlib.crc32(key.encode()) % partitions


def record_key(record: Record) -> str:
    """Whose history a record belongs to: the user (or workload); else the record itself."""
    if isinstance(record, SignIn):
        return record.subject_id or record.id
    return record.user_id or record.id


class Keyed(Protocol[V]):
    """What the detect stages need of state: a value per key, read and replaced."""

    def get(self, key: str) -> V | None: ...

    def put(self, key: str, value: V | None) -> None: ...


class KeyedState(Generic[V]):
    """One table's state: reads kept, writes collected, each touched key encoded once by
    ``flush`` and stored by it or, ``deferred``, by ``write``."""

    def __init__(
        self,
        codec: Codec[V],
        store: MutableMapping[str, bytes] | None = None,
        deferred: bool = False,
    ) -> None:
        self._codec = codec
        self._store: MutableMapping[str, bytes] = {} if store is None else store
        self._kept: dict[str, V | None] = {}
        self._touched: set[str] = set()
        self._pending: dict[str, bytes | None] | None = {} if deferred else None

    def get(self, key: str) -> V | None:
        """The key's value (None when it has none): read and decoded on the first get after
        a flush, kept until the next. A kept value changed in place must be ``put``."""
        kept = self._kept
        if key in kept:
            return kept[key]
        pending = self._pending
        stored = pending[key] if pending and key in pending else self._store.get(key)
        value = kept[key] = self._codec.loads(stored) if stored else None
        return value

    def put(self, key: str, value: V | None) -> None:
        """The key's new value, encoded by the next ``flush``; None or empty deletes it."""
        self._kept[key] = value
        self._touched.add(key)

    def touched(self, key: str) -> bool:
        """Whether ``put`` changed the key since the last flush."""
        return key in self._touched

    def flush(self) -> None:
        dumps = self._codec.dumps
        encoded = {
            key: memoryview(dumps(value)).tobytes() if (value := self._kept[key]) else None
            for key in self._touched
        }
        if self._pending is None:
            self._store_all(encoded)
        else:
            self._pending.update(encoded)
        self._touched.clear()
        self._kept.clear()

    def write(self) -> int:
        """Store what earlier flushes encoded (a deferred state's changelog records); how
        many keys that wrote."""
        pending = self._pending
        if not pending:
            return 0
        self._store_all(pending)
        written = len(pending)
        pending.clear()
        return written

    def _store_all(self, encoded: dict[str, bytes | None]) -> None:
        store = self._store
        for key, data in encoded.items():
            if data is not None:
                store[key] = data
            elif key in store:
                del store[key]

    def discard(self) -> None:
        """Forget what was read and changed since the last flush: the store and what is
        pending are as they were."""
        self._touched.clear()
        self._kept.clear()

    def stored_keys(self) -> list[str]:
        """The keys that have a value, stored or pending, for the sweep."""
        pending = self._pending
        if not pending:
            return list(self._store)
        stored = [key for key in self._store if key not in pending]
        return stored + [key for key, data in pending.items() if data is not None]


class Entry(Generic[V]):
    """One named entry of the values of a ``KeyedState`` of ``RuleStates``, as a keyed value
    of its own: the user's risk lives in the user's state, so both change in one record."""

    def __init__(
        self,
        state: KeyedState[RuleStates],
        name: str,
        load: Callable[[Any], V],
        dump: Callable[[V], Any],
    ) -> None:
        self._state, self._name, self._load, self._dump = state, name, load, dump

    def get(self, key: str) -> V | None:
        value = self._state.get(key)
        row = value.get(self._name) if value else None
        return None if row is None else self._load(row)

    def put(self, key: str, value: V | None) -> None:
        current = self._state.get(key) or {}
        if value is None:
            current.pop(self._name, None)
        else:
            current[self._name] = self._dump(value)
        self._state.put(key, current)


def user_risk(users: KeyedState[RuleStates]) -> Entry[UserRisk]:
    """The users' Identity Protection risk, kept in their state."""
    return Entry(users, RISK, load_user_risk, dump_user_risk)
