"""PII controls applied to an alert before it leaves for a sink: a field allow-list and
keyed pseudonyms for user names and addresses.

A pseudonym is an HMAC of the value under a key only the operator holds, so it is stable
(analysts can still count and pivot on a user or an address in the SIEM) but cannot be
reversed or recomputed from a dictionary of known UPNs without the key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from pipeline.sinks import Alert
from pipeline.sinks.config import PseudonymField

ALWAYS_KEPT = frozenset({"id", "rule", "severity", "time", "title"})
"""Without these an alert cannot be deduplicated, routed or read."""

_KEYS: dict[PseudonymField, frozenset[str]] = {
    "user": frozenset({"user", "users"}),
    "ip": frozenset({"ip", "ips"}),
}
"""Where each kind of value sits, at any depth (``evidence.users``, ``evidence.from.ip``)."""


def pseudonym(key: bytes, value: str) -> str:
    """Case-folded, so ``Alice@Contoso.com`` and ``alice@contoso.com`` stay one person."""
    digest = hmac.new(key, value.casefold().encode(), hashlib.sha256).hexdigest()
    return f"anon-{digest[:24]}"


def _walk(value: Any, keys: frozenset[str], hide: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {
            k: _hidden(v, hide) if k in keys else _walk(v, keys, hide) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_walk(v, keys, hide) for v in value]
    return value


def _hidden(value: Any, hide: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return hide(value) if value else value
    if isinstance(value, list):
        return [hide(v) if isinstance(v, str) and v else v for v in value]
    return value


def restrict(
    alert: Alert,
    fields: frozenset[str] | None,
    pseudonymize: tuple[PseudonymField, ...],
    key: bytes,
) -> Alert:
    """The alert as this sink may see it: allowed fields only, chosen values pseudonymised."""
    if fields is not None:
        alert = {k: v for k, v in alert.items() if k in fields or k in ALWAYS_KEPT}
    if pseudonymize:
        keys = frozenset().union(*(_KEYS[kind] for kind in pseudonymize))
        alert = _walk(alert, keys, lambda value: pseudonym(key, value))
    return alert
