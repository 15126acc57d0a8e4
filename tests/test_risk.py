"""Effective risk of a sign-in, and the per-user Identity Protection state behind it.

Risk records are raw RiskyUsers / UserRiskEvents rows run through the parser, as scan sees
them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from builders import USER_ID, signin

from pipeline.core.codec import RULE_STATES
from pipeline.core.parse import normalize
from pipeline.core.records import RiskEvent, SignIn
from pipeline.core.risk import (
    MAX_DETECTIONS,
    NO_RISK,
    EffectiveRisk,
    UserRisk,
    apply,
    effective,
    rank,
    update,
)
from pipeline.core.state import KeyedState, user_risk

T0 = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)


def at(minute: int) -> str:
    return f"2026-01-15T09:{minute:02d}:00Z"


def risky_user(level: str, state: str, minute: int, user_id: str = USER_ID) -> RiskEvent:
    """A RiskyUsers row: the user's state as of ``minute`` past nine."""
    event = normalize(
        {
            "time": f"1/15/2026 9:{minute:02d}:00 AM",
            "category": "RiskyUsers",
            "properties": {
                "id": user_id,
                "userPrincipalName": "adele@contoso.com",
                "riskLastUpdatedDateTime": at(minute),
                "riskLevel": level,
                "riskState": state,
                "riskDetail": "none",
            },
        }
    )
    assert isinstance(event, RiskEvent)
    return event


def detection(
    level: str,
    minute: int,
    event_type: str = "unfamiliarFeatures",
    state: str = "atRisk",
    user_id: str | None = USER_ID,
) -> RiskEvent:
    """A UserRiskEvents row: one detection raised at ``minute`` past nine."""
    props: dict[str, Any] = {
        "id": f"{event_type}-{minute}",
        "riskEventType": event_type,
        "riskLevel": level,
        "riskState": state,
        "detectedDateTime": at(minute),
        "requestId": "5e0f1c2d-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
    }
    if user_id is not None:
        props["userId"] = user_id
    event = normalize({"time": at(minute), "category": "UserRiskEvents", "properties": props})
    assert isinstance(event, RiskEvent)
    return event


def sign_in(properties: Mapping[str, Any] | None = None, category: str = "SignInLogs") -> SignIn:
    record = normalize(signin(properties, {"category": category}))
    assert isinstance(record, SignIn)
    return record


def own_risk(during: str, aggregated: str, state: str, **more: Any) -> SignIn:
    return sign_in(
        {
            "riskLevelDuringSignIn": during,
            "riskLevelAggregated": aggregated,
            "riskState": state,
            **more,
        }
    )


def user_at(level: str, state: str = "atRisk", detections: tuple[str, ...] = ()) -> UserRisk:
    return UserRisk(level, state, T0, detections)


# rank


def test_levels_are_ordered() -> None:
    assert rank("none") < rank("low") < rank("medium") < rank("high")


@pytest.mark.parametrize("level", ["hidden", "", "unknownFutureValue", "none"])
def test_unrated_levels_count_as_none(level: str) -> None:
    assert rank(level) == rank("none") == 0


# effective(): the sign-in's own risk


@pytest.mark.parametrize(
    ("during", "aggregated", "level"),
    [
        ("high", "low", "high"),
        ("low", "medium", "medium"),
        ("medium", "medium", "medium"),
        ("low", "none", "low"),
        ("hidden", "medium", "medium"),
        ("HIGH", "none", "high"),  # the parser lower-cases levels
    ],
)
def test_own_level_is_the_higher_of_during_and_aggregated(
    during: str, aggregated: str, level: str
) -> None:
    risk = effective(own_risk(during, aggregated, "atRisk"), None)
    assert (risk.level, risk.state, risk.from_user_state) == (level, "atRisk", False)


@pytest.mark.parametrize(("during", "aggregated"), [("none", "none"), ("hidden", "hidden")])
def test_no_own_risk_is_no_risk(during: str, aggregated: str) -> None:
    assert effective(own_risk(during, aggregated, "none"), None) == NO_RISK


def test_own_risk_keeps_state_detail_and_detections() -> None:
    s = own_risk(
        "high",
        "high",
        "confirmedCompromised",
        riskDetail="adminConfirmedSigninCompromised",
        riskEventTypes_v2=["anonymizedIPAddress", "unfamiliarFeatures"],
    )
    assert effective(s, None) == EffectiveRisk(
        "high",
        "confirmedCompromised",
        "adminConfirmedSigninCompromised",
        ("anonymizedIPAddress", "unfamiliarFeatures"),
        False,
    )


def test_own_risk_without_a_state_reads_as_at_risk() -> None:
    risk = effective(own_risk("medium", "", ""), None)
    assert (risk.level, risk.state) == ("medium", "atRisk")


@pytest.mark.parametrize("state", ["dismissed", "remediated", "confirmedSafe"])
def test_cleared_states_clear_own_risk(state: str) -> None:
    risk = effective(
        own_risk("high", "high", state, riskEventTypes_v2=["unfamiliarFeatures"]), None
    )
    assert (risk.level, risk.state, risk.detections) == ("none", state, ())
    assert not risk.from_user_state


# effective(): the user's state


def test_interactive_signin_inherits_an_active_user_state() -> None:
    user = user_at("high", detections=("leakedCredentials",))
    risk = effective(own_risk("none", "none", "none"), user)
    assert risk == EffectiveRisk("high", "atRisk", "none", ("leakedCredentials",), True)


def test_inherited_detections_follow_the_signins_own() -> None:
    user = user_at("high", detections=("leakedCredentials",))
    risk = effective(
        own_risk("low", "low", "atRisk", riskEventTypes_v2=["unfamiliarFeatures"]), user
    )
    assert risk.level == "high" and risk.from_user_state
    assert risk.detections == ("unfamiliarFeatures", "leakedCredentials")


def test_confirmed_compromised_user_state_is_carried() -> None:
    risk = effective(sign_in(), user_at("high", "confirmedCompromised"))
    assert (risk.level, risk.state, risk.from_user_state) == ("high", "confirmedCompromised", True)


@pytest.mark.parametrize(
    "category",
    [
        "NonInteractiveUserSignInLogs",
        "ServicePrincipalSignInLogs",
        "ManagedIdentitySignInLogs",
    ],
)
def test_only_interactive_signins_inherit_the_user_state(category: str) -> None:
    assert effective(sign_in(category=category), user_at("high")) == NO_RISK


def test_non_interactive_signin_keeps_its_own_risk_beside_an_at_risk_user() -> None:
    s = sign_in(
        {"riskLevelDuringSignIn": "low", "riskState": "atRisk"}, "NonInteractiveUserSignInLogs"
    )
    risk = effective(s, user_at("high"))
    assert (risk.level, risk.from_user_state) == ("low", False)


@pytest.mark.parametrize(("own", "user"), [("high", "high"), ("high", "medium"), ("medium", "low")])
def test_own_risk_wins_unless_the_user_state_is_higher(own: str, user: str) -> None:
    risk = effective(own_risk(own, own, "atRisk"), user_at(user))
    assert (risk.level, risk.from_user_state) == (own, False)


@pytest.mark.parametrize(
    "user",
    [
        UserRisk("none", "remediated", T0),
        UserRisk("none", "dismissed", T0),
        UserRisk("high", "dismissed", T0),
        UserRisk("hidden", "atRisk", T0),
        UserRisk("", "atRisk", T0),
    ],
)
def test_inactive_user_state_is_not_inherited(user: UserRisk) -> None:
    assert not user.active
    assert effective(sign_in(), user) == NO_RISK


# apply(): RiskyUsers snapshots


def test_risky_user_at_risk_then_remediated() -> None:
    state = apply(None, risky_user("medium", "atRisk", 0))
    assert state is not None and state.active
    assert (state.level, state.state) == ("medium", "atRisk")
    assert effective(sign_in(), state).level == "medium"

    state = apply(state, risky_user("none", "remediated", 30))
    assert state is not None and not state.active
    assert (state.level, state.state) == ("none", "remediated")
    assert effective(sign_in(), state) == NO_RISK


@pytest.mark.parametrize("state", ["remediated", "dismissed", "confirmedSafe"])
def test_clearing_snapshot_zeroes_the_level_and_drops_detections(state: str) -> None:
    at_risk = apply(apply(None, detection("high", 0)), risky_user("high", "atRisk", 5))
    assert at_risk is not None and at_risk.detections == ("unfamiliarFeatures",)
    # Identity Protection may report the level it had when clearing; it no longer counts
    cleared = apply(at_risk, risky_user("high", state, 10))
    assert cleared is not None
    assert (cleared.level, cleared.state, cleared.detections) == ("none", state, ())


def test_older_snapshot_does_not_override_a_newer_one() -> None:
    remediated = apply(
        apply(None, risky_user("high", "atRisk", 0)), risky_user("none", "remediated", 30)
    )
    assert apply(remediated, risky_user("high", "atRisk", 10)) == remediated

    at_risk = apply(None, risky_user("high", "atRisk", 30))
    assert apply(at_risk, risky_user("none", "remediated", 10)) == at_risk


def test_snapshot_keeps_detections_while_the_user_stays_at_risk() -> None:
    state = apply(None, detection("medium", 0, "anonymizedIPAddress"))
    state = apply(state, risky_user("high", "atRisk", 5))
    assert state is not None
    assert (state.level, state.detections) == ("high", ("anonymizedIPAddress",))


# apply(): UserRiskEvents detections


def test_first_detection_puts_the_user_at_risk() -> None:
    state = apply(None, detection("medium", 0, "anonymizedIPAddress"))
    assert state == UserRisk("medium", "atRisk", T0, ("anonymizedIPAddress",))
    assert state.active


def test_detection_raises_the_level() -> None:
    state = apply(apply(None, risky_user("low", "atRisk", 0)), detection("high", 5))
    assert state is not None and (state.level, state.state) == ("high", "atRisk")


@pytest.mark.parametrize("level", ["low", "medium", "none", "hidden"])
def test_detection_never_lowers_the_level(level: str) -> None:
    state = apply(None, risky_user("high", "atRisk", 0))
    after = apply(state, detection(level, 5, "passwordSpray"))
    assert after is not None
    assert (after.level, after.state) == ("high", "atRisk")
    assert after.detections == ("passwordSpray",)


@pytest.mark.parametrize("state", ["dismissed", "remediated", "confirmedSafe"])
def test_cleared_detection_changes_nothing(state: str) -> None:
    current = apply(None, risky_user("medium", "atRisk", 0))
    assert apply(current, detection("high", 5, state=state)) == current
    assert apply(None, detection("high", 5, state=state)) is None


def test_detection_after_remediation_is_new_risk() -> None:
    remediated = apply(
        apply(None, risky_user("high", "atRisk", 0)), risky_user("none", "remediated", 10)
    )
    state = apply(remediated, detection("medium", 20, "anonymizedIPAddress"))
    assert state is not None and state.active
    assert (state.level, state.detections) == ("medium", ("anonymizedIPAddress",))


def test_detection_older_than_a_remediation_does_not_reopen_the_risk() -> None:
    remediated = apply(
        apply(None, risky_user("high", "atRisk", 0)), risky_user("none", "remediated", 30)
    )
    assert remediated is not None
    late = apply(remediated, detection("high", 20))
    assert late is not None
    assert late.updated >= remediated.updated
    assert not late.active


def test_detections_accumulate_in_order_up_to_the_bound() -> None:
    state: UserRisk | None = None
    types = [f"detection{i}" for i in range(MAX_DETECTIONS + 3)]
    for minute, event_type in enumerate(types):
        state = apply(state, detection("medium", minute, event_type))
        assert state is not None
        assert state.detections == tuple(types[: minute + 1])[-MAX_DETECTIONS:]
    assert state is not None and len(state.detections) == MAX_DETECTIONS
    assert state.detections[-1] == types[-1]
    assert state.updated == T0.replace(minute=len(types) - 1)


# The per-user state (update over a KeyedState)


def test_risk_book_keeps_state_per_user() -> None:
    other = "9f8e7d6c-5b4a-4938-8271-6a5b4c3d2e1f"
    book = user_risk(KeyedState(RULE_STATES))
    update(book, risky_user("high", "atRisk", 0))
    update(book, risky_user("low", "atRisk", 0, user_id=other))
    update(book, detection("medium", 5, "anonymizedIPAddress"))
    mine, theirs = book.get(USER_ID), book.get(other)
    assert mine is not None and theirs is not None
    assert (mine.level, mine.detections) == ("high", ("anonymizedIPAddress",))
    assert (theirs.level, theirs.detections) == ("low", ())
    assert book.get("00000000-0000-0000-0000-000000000000") is None


def test_risk_book_ignores_events_without_a_user_id() -> None:
    book = user_risk(KeyedState(RULE_STATES))
    orphan = detection("high", 0, user_id=None)
    assert orphan.user_id == ""
    update(book, orphan)
    assert book.get("") is None
    update(book, risky_user("low", "atRisk", 0))
    update(book, orphan)
    state = book.get(USER_ID)
    assert state is not None and (state.level, state.detections) == ("low", ())


def test_risk_book_remediation_clears_the_inherited_risk() -> None:
    book = user_risk(KeyedState(RULE_STATES))
    update(book, risky_user("high", "atRisk", 0))
    assert effective(sign_in(), book.get(USER_ID)).level == "high"
    update(book, risky_user("none", "remediated", 30))
    assert effective(sign_in(), book.get(USER_ID)) == NO_RISK
