"""Shared fixtures: one embedded Kafka broker (Tansu) per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from uuid import uuid4

import pytest

from pipeline.runtime.broker import EmbeddedBroker
from pipeline.runtime.demo import embedded_settings
from pipeline.runtime.settings import Settings


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A real broker for the whole session; tests isolate themselves by topic prefix."""
    instance = EmbeddedBroker().start()
    pid = instance.pid
    try:
        yield instance
    finally:
        instance.stop()
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.fixture
def kafka_settings(broker: EmbeddedBroker) -> Settings:
    """Settings on the session broker with this test's own topics, group and changelogs.

    The demo's embedded-broker settings (short group timeouts, log ends confirmed by fetch).
    """
    tag = uuid4().hex[:8]
    return embedded_settings(broker.bootstrap, 0).model_copy(
        update={
            "topic_prefix": f"t{tag}.",
            "app_id": f"signin-risk-t{tag}",
            "partitions": 4,
            "raw_partitions": 4,
        }
    )
