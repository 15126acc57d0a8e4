"""Topics are created with the configured partition counts, idempotently, on a real broker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kafka.admin import ConfigResource, ConfigResourceType

from pipeline.runtime.settings import Settings
from pipeline.runtime.topics import (
    TABLES,
    TopicMismatchError,
    TopicSpec,
    admin_client,
    create_topics,
    describe,
    topic_specs,
)


@pytest.fixture
def admin(kafka_settings: Settings) -> Iterator[Any]:
    client = admin_client(kafka_settings, request_timeout_ms=5000)
    yield client
    client.close()


def test_specs_follow_the_settings() -> None:
    settings = Settings(topic_prefix="p.", app_id="app", partitions=6, raw_partitions=2)
    assert topic_specs(settings) == [
        TopicSpec("p.raw", 2, compacted=False),
        TopicSpec("p.signins", 6, compacted=False),
        TopicSpec("p.by-ip", 6, compacted=False),
        TopicSpec("p.alerts", 6, compacted=False),
        TopicSpec("p.incidents", 6, compacted=False),
        TopicSpec("p.deadletter", 6, compacted=False),
        TopicSpec("app-user_state-changelog", 6, compacted=True),
        TopicSpec("app-ip_state-changelog", 6, compacted=True),
    ]
    assert TABLES == ("user_state", "ip_state")
    table = describe(topic_specs(settings)).splitlines()
    assert table[0].split() == ["topic", "partitions", "cleanup.policy"]
    assert table[-1].split() == ["app-ip_state-changelog", "6", "compact"]


def test_create_topics_creates_every_spec_once(kafka_settings: Settings, admin: Any) -> None:
    settings = kafka_settings.model_copy(update={"raw_partitions": 2, "partitions": 3})
    specs = topic_specs(settings)

    assert create_topics(settings, timeout_s=10) == [s.name for s in specs]

    described = {t["name"]: t for t in admin.describe_topics([s.name for s in specs])}
    assert {n: len(t["partitions"]) for n, t in described.items()} == {
        s.name: s.partitions for s in specs
    }
    configs = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in specs], config_filter="all"
    )["topic"]
    assert {n: c["cleanup.policy"]["value"] for n, c in configs.items()} == {
        s.name: s.cleanup_policy for s in specs
    }
    assert settings.changelog("user_state") in {s.name for s in specs if s.compacted}

    assert create_topics(settings, timeout_s=10) == []  # idempotent


def test_an_existing_topic_with_another_partition_count_is_refused(
    kafka_settings: Settings, admin: Any
) -> None:
    changelog = kafka_settings.changelog("user_state")
    admin.create_topics({changelog: {"num_partitions": 1, "replication_factor": 1}})

    with pytest.raises(TopicMismatchError) as caught:
        create_topics(kafka_settings, timeout_s=10)

    message = str(caught.value)
    assert changelog in message
    assert "exists with 1 partition(s) but 4 are configured" in message
