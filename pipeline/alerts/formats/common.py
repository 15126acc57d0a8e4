"""What the alert formats share: the product's name and version, exact epoch times, the
sign-in count of an alert, and ATT&CK names for the rules' techniques."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from typing import Any, NamedTuple

from pipeline.core.timeparse import parse_time

PRODUCT = "signin-risk"
PRODUCT_VERSION = version("signin-risk")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_ms(timestamp: str) -> int:
    """Milliseconds since the epoch, exactly (no float rounding of microseconds)."""
    return (parse_time(timestamp) - _EPOCH) // timedelta(milliseconds=1)


def signin_count(alert: dict[str, Any]) -> int | None:
    """Sign-ins the alert rests on: an incident counts all of them, while ``signin_ids``
    keeps only a bounded sample. None when neither field is present."""
    evidence = alert.get("evidence") or {}
    count = evidence.get("signin_count")
    if isinstance(count, int) and not isinstance(count, bool):
        return count
    if "signin_ids" in alert:
        return len(alert["signin_ids"] or ())
    return None


class Technique(NamedTuple):
    name: str
    tactic: str
    """The tactic it serves in a sign-in; Valid Accounts has four, Initial Access is this one."""


TACTICS = {
    "TA0001": "Initial Access",
    "TA0005": "Defense Evasion",
    "TA0006": "Credential Access",
    "TA0007": "Discovery",
    "TA0009": "Collection",
}
TECHNIQUES = {
    "T1078": Technique("Valid Accounts", "TA0001"),
    "T1078.004": Technique("Cloud Accounts", "TA0001"),
    "T1087": Technique("Account Discovery", "TA0007"),
    "T1087.004": Technique("Cloud Account", "TA0007"),
    "T1110": Technique("Brute Force", "TA0006"),
    "T1110.001": Technique("Password Guessing", "TA0006"),
    "T1110.003": Technique("Password Spraying", "TA0006"),
    "T1114": Technique("Email Collection", "TA0009"),
    "T1114.002": Technique("Remote Email Collection", "TA0009"),
    "T1528": Technique("Steal Application Access Token", "TA0006"),
    "T1550": Technique("Use Alternate Authentication Material", "TA0005"),
    "T1550.001": Technique("Application Access Token", "TA0005"),
    "T1557": Technique("Adversary-in-the-Middle", "TA0006"),
    "T1566": Technique("Phishing", "TA0001"),
    "T1621": Technique("Multi-Factor Authentication Request Generation", "TA0006"),
}
"""ATT&CK names for the rules' techniques: OCSF requires a technique's name."""


def technique_name(technique_id: str) -> str:
    """The ATT&CK name; a technique a new rule added without naming it is named by its id."""
    known = TECHNIQUES.get(technique_id)
    return known.name if known else technique_id
