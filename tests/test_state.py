"""Keyed state and the codec of what it stores, in process: when state is written, and that
every stored type comes back as it went in, in the bytes earlier versions wrote."""

from __future__ import annotations

import sys
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from builders import USER_ID, risk_record, signin

from pipeline.core.codec import (
    RULE_STATES,
    decode_observations,
    dump_incident,
    dump_observation,
    dump_user_risk,
    encode_observations,
    load_incident,
    load_observation,
    load_user_risk,
)
from pipeline.core.detect import Engine
from pipeline.core.enrich import Observation
from pipeline.core.ids import Incident
from pipeline.core.parse import normalize
from pipeline.core.policy import Policy, policy_from_data
from pipeline.core.records import RiskEvent, SignIn
from pipeline.core.risk import UserRisk
from pipeline.core.rules import REGISTRY, StatefulRule
from pipeline.core.state import RISK as RISK_ENTRY
from pipeline.core.state import Entry, KeyedState, RuleStates, user_risk

STORED = orjson.loads((Path(__file__).parent / "data" / "stored-state.json").read_bytes())

RECORDS = [
    *(
        signin(
            {
                "id": f"f-{n}",
                "createdDateTime": f"2026-01-15T10:0{n}:00Z",
                "status": {"errorCode": 50126},
            }
        )
        for n in range(2)
    ),
    signin(
        {
            "id": "s-1",
            "createdDateTime": "2026-01-15T10:03:00Z",
            "riskLevelDuringSignIn": "high",
            "riskState": "atRisk",
            "riskEventTypes_v2": ["unfamiliarFeatures"],
        }
    ),
    risk_record({"riskLevel": "high"}, "2026-01-15T10:04:00Z"),
]
"""Two failures (a brute-force incident at a threshold of 2), a risky sign-in and a detection:
a user's risk, an incident, observations and a pending detection in state."""

RISK = UserRisk("high", "atRisk", datetime(2026, 1, 15, 9, tzinfo=UTC), ("unfamiliarFeatures",))


class Store(MutableMapping[str, bytes]):
    """A dict that counts what is done to it, as a table would send changelog records."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.reads: list[str] = []
        self.writes: list[str] = []
        self.deletes: list[str] = []

    def __getitem__(self, key: str) -> bytes:
        self.reads.append(key)
        return self.data[key]

    def __setitem__(self, key: str, value: bytes) -> None:
        self.writes.append(key)
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        self.deletes.append(key)
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


def risk_of(store: MutableMapping[str, bytes]) -> tuple[KeyedState[RuleStates], Entry[UserRisk]]:
    users = KeyedState(RULE_STATES, store)
    return users, user_risk(users)


def test_writes_are_collected_until_flush() -> None:
    store = Store()
    users, book = risk_of(store)
    book.put(USER_ID, RISK)
    assert book.get(USER_ID) == RISK
    assert store.data == {} and store.writes == []
    users.flush()
    assert store.writes == [USER_ID]
    assert orjson.loads(store.data[USER_ID]) == {RISK_ENTRY: dump_user_risk(RISK)}


def test_reads_are_kept_until_flush() -> None:
    store = Store()
    store.data[USER_ID] = orjson.dumps({RISK_ENTRY: dump_user_risk(RISK)})
    users, book = risk_of(store)
    assert book.get(USER_ID) == book.get(USER_ID) == RISK
    assert book.get("nobody") is book.get("nobody") is None
    assert store.reads == [USER_ID, "nobody"]  # once each, a missing key too
    users.flush()  # nothing touched: nothing written, and the next get reads again
    assert store.writes == []
    book.get(USER_ID)
    assert store.reads == [USER_ID, "nobody", USER_ID]


def test_flush_writes_each_touched_key_once() -> None:
    store = Store()
    states = KeyedState(RULE_STATES, store)
    for n in range(5):
        state = states.get("k") or {}
        state["rule"] = [float(n), {"n": n}, None]
        states.put("k", state)
        states.put("j", {"rule": [float(n), None, None]})
    states.get("read-only")
    states.flush()
    assert sorted(store.writes) == ["j", "k"]
    assert orjson.loads(store.data["k"]) == {"rule": [4.0, {"n": 4}, None]}
    states.flush()
    assert sorted(store.writes) == ["j", "k"]


def test_a_deferred_state_writes_each_key_once_per_write_and_reads_its_own_flushes() -> None:
    """The worker's tables: flushes between takes keep bytes in memory; ``write`` (once per
    commit interval) sends each changed key once, however many takes changed it."""
    store = Store()
    states = KeyedState(RULE_STATES, store, deferred=True)
    for n in range(3):
        states.put("k", {"rule": [float(n), {"n": n}, None]})
        states.flush()
        assert states.get("k") == {"rule": [float(n), {"n": n}, None]}
        states.flush()
    states.put("gone", {"rule": [1.0, None, None]})
    states.flush()
    states.put("gone", None)
    states.flush()
    states.put("half", {"rule": [1.0, None, None]})
    states.discard()  # a failed take: what earlier takes flushed is still pending
    assert store.writes == [] and sorted(states.stored_keys()) == ["k"]
    assert states.write() == 2
    assert store.writes == ["k"] and store.deletes == []  # "gone" never reached the store
    assert orjson.loads(store.data["k"]) == {"rule": [2.0, {"n": 2}, None]}
    assert states.write() == 0 and store.writes == ["k"]
    states.put("k", None)  # a stored key deleted, pending: the sweep no longer sees it
    states.flush()
    assert states.stored_keys() == [] and states.get("k") is None
    assert states.write() == 1 and store.deletes == ["k"]


def test_flushed_values_are_exactly_sized() -> None:
    """orjson's output keeps its whole working buffer (~4 KB) allocated; a kept copy does not."""
    states = KeyedState(RULE_STATES)
    states.put("k", {"rule": [1.0, {"n": 1}, None]})
    states.flush()
    stored = states._store["k"]
    assert sys.getsizeof(stored) < 100 and stored == orjson.dumps({"rule": [1.0, {"n": 1}, None]})


def test_a_deleted_or_emptied_state_removes_the_key() -> None:
    store = Store()
    users, book = risk_of(store)
    states = KeyedState(RULE_STATES, store)
    book.put("user", RISK)
    states.put("address", {"rule": [1.0, {"n": 1}, None]})
    users.flush()
    states.flush()
    assert set(store.data) == {"user", "address"}
    book.put("user", None)
    states.put("address", {})
    states.put("never-stored", {})
    users.flush()
    states.flush()
    assert store.data == {}
    assert sorted(store.deletes) == ["address", "user"]


def test_stored_keys_are_the_flushed_ones() -> None:
    states = KeyedState(RULE_STATES)
    states.put("a", {"rule": [1.0, None, None]})
    assert states.stored_keys() == []
    states.flush()
    assert states.stored_keys() == ["a"]


def stored_state() -> dict[str, bytes]:
    """user_state as the engine leaves it after ``RECORDS``."""
    store: dict[str, bytes] = {}
    users, book = risk_of(store)
    policy = policy_from_data({"rules": {"brute-force": {"threshold": 2}}})
    engine = Engine(policy, rules=[REGISTRY["brute-force"], REGISTRY["risk-detection"]])
    for raw in RECORDS:
        engine.process(normalize(raw), book, users)
    users.flush()
    return store


def test_state_earlier_versions_wrote_loads_and_joins_as_todays() -> None:
    """A running deployment's user_state changelog loads. Its rules' entries are written as
    before, but for risk-detection's remembered sign-ins, now kept as ids and times over the
    user's few distinct places instead of a whole row each; a late detection joins the old
    entries as it joins the new. The user's risk, once a table of its own (user_risk), is
    now the ``@risk`` entry of the same value, in the row that table held."""
    (value,) = stored_state().values()
    state = orjson.loads(value)
    old = orjson.loads(next(iter(STORED["user_state"].values())))
    (old_risk,) = STORED["user_risk"].values()
    assert state.pop(RISK_ENTRY) == orjson.loads(old_risk)
    rule = REGISTRY["risk-detection"]
    new_entry, old_entry = state.pop(rule.id), old.pop(rule.id)
    assert state == old
    assert len(orjson.dumps(new_entry)) < len(orjson.dumps(old_entry))
    assert isinstance(rule, StatefulRule) and rule.on_risk is not None
    settings = rule.settings()
    for signin_id in ("f-0", "s-1"):
        late = normalize(risk_record({"requestId": signin_id}, "2026-01-15T11:00:00Z"))
        assert isinstance(late, RiskEvent)
        hits = [rule.on_risk(e[1], late, settings, 0.0)[1] for e in (old_entry, new_entry)]
        assert hits[0] is not None and hits[0].about.id == signin_id
        assert hits[0] == hits[1]


def test_user_risk_round_trips_as_its_row() -> None:
    assert load_user_risk(orjson.loads(orjson.dumps(dump_user_risk(RISK)))) == RISK


def test_rule_states_round_trip_with_their_incidents_and_observations() -> None:
    (old,) = (text.encode() for text in STORED["user_state"].values())
    state = RULE_STATES.loads(old)
    assert RULE_STATES.dumps(state) == old
    _, _, row = state["brute-force"]
    incident = load_incident(row)
    assert incident == Incident(
        "2b08694a-ecb7-5592-b41f-94db4c541743", 1768471380.0, "high", ("f-0", "f-1", "s-1"), 3, 3
    )
    assert orjson.loads(orjson.dumps(dump_incident(incident))) == row
    recent = state["risk-detection"][1]["recent"]
    observations = [load_observation(entry[2]) for entry in recent]
    assert [o.id for o in observations] == ["f-0", "f-1", "s-1"]
    assert observations[2].risk == ("high", "atRisk", ("unfamiliarFeatures",))
    assert [dump_observation(o) for o in observations] == [entry[2] for entry in recent]


def observation() -> Observation:
    risky = {
        "riskLevelDuringSignIn": "high",
        "riskState": "atRisk",
        "riskEventTypes_v2": ["unfamiliarFeatures"],
    }
    record = normalize(signin(risky))
    assert isinstance(record, SignIn)
    return Observation.of(Engine(Policy()).enrich(record, RISK))


def test_an_observation_round_trips_as_a_row_and_on_the_by_ip_topic() -> None:
    obs = observation()
    assert obs.risk[2] and obs.location.lat is not None
    row: Any = orjson.loads(orjson.dumps(dump_observation(obs)))
    assert load_observation(row) == obs
    segments = [(1234, [(obs, "3/1", 7 << 20), (obs._replace(id="other"), "", 0)]), (5678, [])]
    assert decode_observations(encode_observations(segments)) == segments


def test_risk_detection_keeps_only_the_parts_its_remembered_sign_ins_use() -> None:
    """Its remembered sign-ins share parts (who, place, client...) kept once; parts of
    sign-ins that left the window go with them, and a late detection still gets every
    detail of the sign-in it names."""
    rule = REGISTRY["risk-detection"]
    assert isinstance(rule, StatefulRule) and rule.on_risk is not None
    settings = rule.settings()
    engine = Engine(Policy())
    state: Any = None
    observations: list[Observation] = []
    for n in range(60):
        record = normalize(
            signin(
                {
                    "id": f"s-{n}",
                    "createdDateTime": f"2026-01-15T10:{n:02d}:00Z",
                    "ipAddress": f"198.51.100.{n}",
                    "correlationId": f"c-{n // 2}",
                    "appDisplayName": f"App {n % 30}",
                }
            )
        )
        assert isinstance(record, SignIn)
        obs = Observation.of(engine.enrich(record, RISK))
        observations.append(obs)
        state, _ = rule.step(state, obs, settings, obs.time)
    kept = settings.max_recent
    assert [e[1] for e in state["recent"]] == [f"s-{n}" for n in range(60 - kept, 60)]
    apps = {v[2] for v in state["values"] if isinstance(v, list) and v[1] is True}
    assert apps == {o.app for o in observations[-kept:]} and len(apps) == kept
    late = normalize(risk_record({"requestId": f"s-{60 - kept}"}, "2026-01-15T11:30:00Z"))
    assert isinstance(late, RiskEvent)
    _, hit = rule.on_risk(state, late, settings, late.time.timestamp())
    assert hit is not None and hit.about == observations[60 - kept]
