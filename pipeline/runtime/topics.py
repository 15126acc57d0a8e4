"""Every topic the pipeline uses, created up front with the configured partition counts.

Why up front: brokers (Tansu, Kafka with auto-create) create a missing topic on first
produce with *their* default partition count, and Faust refuses a table whose changelog
partition count differs from the source topic's (``PartitionsMismatch``). Creating all
topics explicitly, and checking existing ones, turns that into one clear error at start.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, for_code

from pipeline.runtime.settings import TOPIC_NAMES, Settings

TABLES = ("user_state", "ip_state")
"""Faust tables; each has a compacted changelog partitioned like the signins topic."""

_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    compacted: bool

    @property
    def cleanup_policy(self) -> str:
        return "compact" if self.compacted else "delete"


class TopicMismatchError(RuntimeError):
    """An existing topic has a partition count other than the configured one."""

    def __init__(self, topic: str, expected: int, actual: int) -> None:
        self.topic, self.expected, self.actual = topic, expected, actual
        super().__init__(
            f"topic {topic!r} exists with {actual} partition(s) but {expected} are configured; "
            "table changelogs must match the signins topic, so delete the topic or change "
            "the partition settings"
        )


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """The pipeline's topics in data-flow order, then one compacted changelog per table."""
    counts = {"raw": settings.raw_partitions}
    specs = [
        TopicSpec(settings.topic(name), counts.get(name, settings.partitions), compacted=False)
        for name in TOPIC_NAMES
    ]
    specs += [TopicSpec(settings.changelog(t), settings.partitions, True) for t in TABLES]
    return specs


def admin_client(settings: Settings, **overrides: Any) -> KafkaAdminClient:
    """A kafka-python admin client for the configured brokers and security settings."""
    config: dict[str, Any] = {
        "bootstrap_servers": [h.strip() for h in settings.kafka_bootstrap.split(",")],
        "client_id": f"{settings.app_id}-admin",
    }
    return KafkaAdminClient(**(config | settings.kafka_client_config() | overrides))


def create_topics(
    settings: Settings, timeout_s: float = 30.0, specs: Sequence[TopicSpec] | None = None
) -> list[str]:
    """Create ``specs`` (default: every topic of ``topic_specs``); return those created.

    Idempotent: a topic that already exists with the configured partition count is left
    alone (its cleanup policy is not checked). One with another count raises
    ``TopicMismatchError``. Replication is the broker's default.
    """
    by_name = {spec.name: spec for spec in specs or topic_specs(settings)}
    timeout_ms = int(timeout_s * 1000)
    admin = admin_client(settings, request_timeout_ms=timeout_ms)
    try:
        request = {
            spec.name: {
                "num_partitions": spec.partitions,
                "replication_factor": -1,
                "configs": {"cleanup.policy": spec.cleanup_policy},
            }
            for spec in by_name.values()
        }
        answer = admin.create_topics(request, timeout_ms=timeout_ms, raise_errors=False)
        created: list[str] = []
        existing: list[str] = []
        for result in answer["topics"]:
            code = result["error_code"]
            if code == 0:
                created.append(result["name"])
            elif code == _TOPIC_ALREADY_EXISTS:
                existing.append(result["name"])
            else:
                error = for_code(code)
                detail = result.get("error_message") or error.description
                raise error(f"creating topic {result['name']!r}: {detail}")
        if existing:
            _check_partitions(admin, [by_name[name] for name in existing])
    finally:
        with contextlib.suppress(Exception):
            admin.close()
    return [name for name in by_name if name in created]


def _check_partitions(admin: KafkaAdminClient, specs: list[TopicSpec]) -> None:
    for topic in admin.describe_topics([spec.name for spec in specs]):
        if topic["error_code"]:
            raise KafkaError(f"describing topic {topic['name']!r}: error {topic['error_code']}")
        spec = next(s for s in specs if s.name == topic["name"])
        actual = len(topic["partitions"])
        if actual != spec.partitions:
            raise TopicMismatchError(spec.name, spec.partitions, actual)


def describe(specs: Sequence[TopicSpec]) -> str:
    """A plain-text table of topics for the terminal."""
    rows = [("topic", "partitions", "cleanup.policy")]
    rows += [(s.name, str(s.partitions), s.cleanup_policy) for s in specs]
    width = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(
        f"{name:<{width[0]}}  {parts:>{width[1]}}  {policy}" for name, parts, policy in rows
    )
