"""Baselines learned offline (``signin-risk baseline``) put where a worker will find them:
the user_state changelog, which a starting worker restores its table from.

Only into a deployment that holds no user state yet, with no worker running: a running
worker never re-reads its changelog, and its own writes would overwrite the warmed keys;
a deployment that already learned has baselines of its own, which merging from a
changelog read back through a broker that may under-report log ends could lose.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from pipeline.core.codec import RULE_STATES
from pipeline.core.state import RuleStates, partition_for
from pipeline.runtime.settings import Settings


class WarmupRefused(Exception):
    """The deployment already holds user state, or its changelog does not exist."""


def load(settings: Settings, warmed: Mapping[str, RuleStates], probe_s: float = 2.0) -> int:
    """Write ``warmed`` to the user_state changelog, each key in its partition; how many
    keys were written."""
    topic = settings.changelog("user_state")
    servers = [h.strip() for h in settings.kafka_bootstrap.split(",")]
    consumer = KafkaConsumer(
        bootstrap_servers=servers, enable_auto_commit=False, **settings.kafka_client_config()
    )
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise WarmupRefused(f"no topic {topic}: run `signin-risk topics create` first")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        # A fetch, not ListOffsets (which some brokers under-report), says whether it is empty.
        if any(consumer.poll(timeout_ms=int(probe_s * 1000), max_records=1).values()):
            raise WarmupRefused(
                f"{topic} already holds user state: baselines are loaded only into a "
                "deployment that has not run yet"
            )
    finally:
        consumer.close()
    producer = KafkaProducer(
        bootstrap_servers=servers,
        client_id=f"{settings.app_id}-baseline",
        acks="all",
        compression_type=settings.compression_type,
        **settings.kafka_client_config(),
    )
    try:
        for key, state in warmed.items():
            producer.send(
                topic,
                key=orjson.dumps(key),  # Faust's table keys are JSON
                value=RULE_STATES.dumps(state),
                partition=partition_for(key, len(tps)),
            )
        producer.flush()
    finally:
        producer.close()
    return len(warmed)
