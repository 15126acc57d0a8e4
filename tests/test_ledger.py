"""The ledger: incidents and inventory as entries of the driver's keyed state, and the
sweep that expires them."""

from __future__ import annotations

from typing import Any

import orjson
from builders import USER_ID, dumps, signin

from pipeline.core.codec import RULE_STATES
from pipeline.core.detect import Engine
from pipeline.core.driver import Driver
from pipeline.core.ingest import receive
from pipeline.core.ledger import INCIDENT, INVENTORY, Ledger, expiry
from pipeline.core.policy import load_policy
from pipeline.core.records import Alert
from pipeline.core.state import MARKS, KeyedState
from pipeline.core.stateful import expire

DAY = 86400.0
IMAP = {"clientAppUsed": "IMAP4", "resourceId": "00000002-0000-0ff1-ce00-000000000000"}


def judged(
    record: dict[str, Any], offset: int = 0
) -> tuple[Engine, Ledger, KeyedState[Any], list[dict[str, Any]]]:
    """One raw event through the driver and the ledger, flushed as the worker flushes a take;
    the alerts as sent."""
    policy = load_policy(None)
    engine = Engine(policy)
    users, addresses = KeyedState(RULE_STATES), KeyedState(RULE_STATES)
    driver = Driver(engine, users, addresses, 4)
    ledger = Ledger(policy, users, addresses)
    received = receive([(dumps({"records": [record]}), 0)], 1 << 20, [(0, offset)])
    result = driver.segments(received.segments, direct=True)
    ledger.observe(result.enriched)
    sent = [orjson.loads(ledger.track(a)[0]) for _, alerts in result.alerts for a in alerts]
    driver.flush()
    return engine, ledger, users, sent


def test_an_alert_and_its_sign_in_are_kept_in_the_users_state() -> None:
    _, _, users, sent = judged(signin(IMAP))
    assert [a["rule"] for a in sent] == ["legacy-auth"]
    state = users.get(USER_ID)
    assert state is not None and MARKS in state
    assert state[INCIDENT]["id"] == sent[0]["incident_id"]
    assert state[INCIDENT]["alerts"][0][0] == sent[0]["id"]
    (row,) = state[INVENTORY]["clients"]
    assert (row[0], row[1], row[6], row[8]) == ("legacy-protocol", "IMAP4", 1, "legacy protocol")


def test_a_stage_that_writes_one_table_keeps_every_incident_there() -> None:
    """The by-ip stage flushes ip_state only: an incident it tracked must not wait, unflushed,
    in user_state for the detect stage's flush."""
    _, _, _, sent = judged(signin(IMAP))
    alert = Alert(**{k: v for k, v in sent[0].items() if k != "incident_id"})
    users, addresses = KeyedState(RULE_STATES), KeyedState(RULE_STATES)
    ledger = Ledger(load_policy(None), users, addresses)
    document, version = ledger.track(alert, users=False)
    assert not users.touched(USER_ID) and addresses.touched(USER_ID)
    assert version is not None
    assert orjson.loads(document)["incident_id"] == orjson.loads(version)["id"]


def test_the_sweep_drops_an_idle_inventory_then_a_closed_incident_then_the_key() -> None:
    engine, _, users, _ = judged(signin(IMAP))
    t = (users.get(USER_ID) or {})[INVENTORY]["clients"][0][5]
    users.flush()
    policy = load_policy(None)
    stale = expiry(policy, engine.retention_s, 30 * DAY)
    incident_s = policy.incidents.window_hours * 3600 + engine.retention_s

    def sweep(newest: float) -> dict[str, Any] | None:
        expire(users, users.stored_keys(), newest - engine.retention_s, stale(newest))
        return users.get(USER_ID)

    assert set(sweep(t + 2 * DAY) or ()) >= {MARKS, INCIDENT, INVENTORY}
    left = sweep(t + 30 * DAY + 1)
    assert left is not None and INVENTORY not in left and INCIDENT in left
    assert incident_s > 30 * DAY + 1  # with the default baselines a risk alert may still join
    assert sweep(t + incident_s + 1) is None  # nothing but positions left: the key goes
