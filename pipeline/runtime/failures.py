"""What the command line says when a command fails: one line naming what failed and what
to do, never a traceback (``--debug`` shows it). Long-running services (worker, bridge,
forward) retry their connections themselves; this covers what ends a command.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from pipeline.runtime.settings import Settings

ENV_PREFIX = "SIGNIN_RISK_"
DEBUG_HINT = "(--debug shows the traceback)"


def _bootstrap() -> str:
    try:
        return Settings().kafka_bootstrap
    except ValidationError:
        return f"{ENV_PREFIX}KAFKA_BOOTSTRAP"


def _settings_error(exc: ValidationError) -> str:
    first: Any = exc.errors()[0]
    name = ENV_PREFIX + "_".join(str(p) for p in first["loc"]).upper()
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    shown = first.get("input")
    value = f"={shown!r}" if isinstance(shown, str | int | float) and "SECRET" not in name else ""
    return f"invalid setting {name}{value}: {first['msg']}{more}"


def explain(exc: BaseException) -> str:
    """``exc`` as one line for a person: what failed, and what to do about it."""
    module = type(exc).__module__
    if isinstance(exc, ValidationError) and exc.title == Settings.__name__:
        return _settings_error(exc)
    if module.startswith("kafka"):
        return (
            f"cannot use the Kafka broker at {_bootstrap()}: {exc}; is it running and "
            f"reachable? (set {ENV_PREFIX}KAFKA_BOOTSTRAP, and SASL/TLS settings if it needs them)"
        )
    if module.startswith(("azure", "uamqp")):
        return (
            f"Azure Event Hubs: {type(exc).__name__}: {exc}; "
            f"check the {ENV_PREFIX}EVENTHUB_* settings"
        )
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"connection failed: {exc}"
    return f"{type(exc).__name__}: {exc} {DEBUG_HINT}"
