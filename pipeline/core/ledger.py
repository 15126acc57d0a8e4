"""What the worker keeps beside the rules' state: each entity's open incident and each
user's mail-client inventory, as named entries (``@incident``, ``@inventory``) of the same
keyed state the driver judges with (user_state, ip_state).

Kept there, they are written, discarded, changelogged and recovered with the state whose
records caused them: a record the key's state already holds is skipped by the driver after
a crash, so its alerts are not tracked and its sign-in is not counted a second time, and a
record whose state was never written is judged, tracked and counted again from state that
does not hold it either. ``scan`` and ``inventory`` keep the same in dicts; the calls
(``incidents.track``, ``inventory.observe``) are the same, so the ids and rows are too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import orjson

from pipeline.core import incidents, inventory
from pipeline.core.enrich import Enriched
from pipeline.core.policy import Policy
from pipeline.core.records import Alert
from pipeline.core.state import Entry, KeyedState, RuleStates

INCIDENT = "@incident"
"""The entry of a user's (or address's) state that holds its open incident."""
INVENTORY = "@inventory"
"""The entry of a user's state that holds the user's mail clients."""


Expiry = Callable[[float], Mapping[str, Callable[[Any], bool]]]
"""For the newest event time, whether each named entry's row has expired."""


def _same(row: Any) -> Any:
    return row


def _entry(state: KeyedState[RuleStates], name: str) -> Entry[dict[str, Any]]:
    return Entry(state, name, _same, _same)


class Ledger:
    """Incidents and inventory over the driver's two keyed states."""

    def __init__(
        self, policy: Policy, users: KeyedState[RuleStates], addresses: KeyedState[RuleStates]
    ) -> None:
        self.policy = policy
        self._users = _entry(users, INCIDENT)
        self._addresses = _entry(addresses, INCIDENT)
        self._clients = _entry(users, INVENTORY)

    def track(
        self, alert: Alert, users: bool = True, addresses: bool = True
    ) -> tuple[bytes, bytes | None]:
        """The alert as it is sent (with its ``incident_id``), and its incident's new version
        when one is due. A stage that writes only one table says so (``users=False`` in the
        by-ip stage): that table then holds the incident whatever its kind, so nothing is
        left in the other table's unflushed state (the stages flush their own only)."""
        sent = orjson.dumps(alert)
        document = orjson.loads(sent)  # a tenth of dataclasses.asdict's cost
        mine = self._users if users else self._addresses
        theirs = self._addresses if addresses else self._users
        incident_id, version = incidents.track(mine, theirs, document, self.policy.incidents)
        sent = sent[:-1] + b',"incident_id":' + orjson.dumps(incident_id) + b"}"
        return sent, None if version is None else orjson.dumps(version)

    def observe(self, enriched: Iterable[Enriched]) -> None:
        """Each sign-in into its user's inventory."""
        for e in enriched:
            inventory.observe(self._clients, e, self.policy)


def expiry(policy: Policy, retention_s: float, inventory_s: float) -> Expiry:
    """For the newest event time, which ``@`` entries the sweep may drop: an incident no
    alert can join any more (its window and the longest rule retention past its last
    alert: a risk detection can raise an alert about a sign-in a day old), an inventory none
    of whose clients was seen for ``inventory_s``."""
    window_s = policy.incidents.window_hours * 3600

    def at(newest: float) -> Mapping[str, Callable[[Any], bool]]:
        return {
            INCIDENT: lambda row: incidents.expired(row, newest - window_s - retention_s),
            INVENTORY: lambda row: inventory.expired(row, newest - inventory_s),
        }

    return at


def inventories(
    values: Iterable[tuple[str, RuleStates | None]],
) -> Iterator[tuple[str, inventory.State]]:
    """(user id, inventory) of the users among decoded state values that have one."""
    for key, value in values:
        row = value.get(INVENTORY) if value else None
        if row:
            yield key, row
