"""Baselines learned from exported history, so a new deployment alerts from day one.

``new-country`` and ``workload-new-network`` stay silent until a user or workload has a week
of history. ``warm`` runs exported sign-ins (any input ``scan`` reads) through those rules
alone, in event time, and returns what each key's state would hold: the baseline entries
only, without incidents (history raises no alert later). ``merge`` puts a warmed entry into
a key's live state where that rule has none yet, so warming never overwrites what a worker
has learned since. Pure: the worker's table wiring calls ``merge`` per key it owns.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter

from pipeline.core.codec import RULE_STATES
from pipeline.core.detect import Engine
from pipeline.core.policy import Policy
from pipeline.core.records import Record, SignIn
from pipeline.core.rules import REGISTRY
from pipeline.core.rules.windows import BaselineSettings
from pipeline.core.state import KeyedState, RuleStates, user_risk

_FLUSH_EVERY = 500


def baseline_rules(policy: Policy) -> list[str]:
    """The enabled rules that learn a baseline."""
    return [
        rule_id
        for rule_id in REGISTRY
        if isinstance(policy.rule(rule_id), BaselineSettings) and policy.rule(rule_id).enabled
    ]


def warm(records: Iterable[Record], policy: Policy) -> dict[str, RuleStates]:
    """Key -> the baseline rules' entries [newest, baseline, None] after ``records``."""
    chosen = baseline_rules(policy)
    engine = Engine(policy, rules=[REGISTRY[r] for r in chosen])
    users = KeyedState(RULE_STATES)
    book = user_risk(users)
    signins = sorted((r for r in records if isinstance(r, SignIn)), key=attrgetter("time"))
    for index, signin in enumerate(signins):
        engine.process(signin, book, users)
        if index % _FLUSH_EVERY == _FLUSH_EVERY - 1:
            users.flush()
    users.flush()
    warmed: dict[str, RuleStates] = {}
    for key in users.stored_keys():
        entries = {
            rule_id: [entry[0], entry[1], None]
            for rule_id, entry in (users.get(key) or {}).items()
            if rule_id in chosen and entry[1]
        }
        if entries:
            warmed[key] = entries
    return warmed
