"""Every Prometheus metric of signin-risk, defined once.

Names follow Prometheus conventions (``signin_risk_`` prefix, ``_total`` counters, seconds).
Labels come only from small closed sets (category, result, client family, platform, risk
level, rule, severity, reason, stage, sink, topic, Outlook build line) and the tenant ids
being ingested: never a user, UPN, sign-in id or address.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from pipeline.core.enrich import Enriched
from pipeline.core.inventory import build_line
from pipeline.core.records import Category

SIGNINS = Counter(
    "signin_risk_signins_total",
    "Sign-ins processed, by tenant, category and result.",
    ["tenant", "category", "result"],
)
CLIENT_SIGNINS = Counter(
    "signin_risk_client_signins_total",
    "Sign-ins by client family and platform.",
    ["family", "platform"],
)
RISK_SIGNINS = Counter(
    "signin_risk_risk_signins_total",
    "Sign-ins by effective Identity Protection risk level.",
    ["level"],
)
OUTLOOK_VERSIONS = Counter(
    "signin_risk_outlook_mobile_signins_total",
    "Outlook Mobile sign-ins by platform and build line (major.minor, e.g. 4.2310).",
    ["platform", "version"],
)
OUTLOOK_BUILD_UNKNOWN = Counter(
    "signin_risk_outlook_build_unknown_total",
    "Outlook Mobile sign-ins whose user agent carries no build (never alerted as outdated).",
)
RISK_RECORDS = Counter(
    "signin_risk_risk_records_total",
    "RiskyUsers and UserRiskEvents records applied.",
    ["category"],
)
ALERTS = Counter("signin_risk_alerts_total", "Alerts produced.", ["tenant", "rule", "severity"])
INCIDENTS = Counter(
    "signin_risk_incidents_total",
    "Incident versions produced (new, or changed), by entity kind and severity.",
    ["kind", "severity"],
)
REJECTED = Counter(
    "signin_risk_rejected_total", "Records or events sent to the dead-letter topic.", ["reason"]
)
DEADLETTER_FAILURES = Counter(
    "signin_risk_deadletter_failures_total",
    "Dead letters the broker refused or never acknowledged; their input is skipped all the same.",
)
END_TO_END = Histogram(
    "signin_risk_end_to_end_latency_seconds",
    "From the raw event's enqueue time to the alert being produced.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
PROCESSING = Histogram(
    "signin_risk_processing_seconds",
    "Time to process one message, by stage.",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
IN_FLIGHT = Gauge(
    "signin_risk_records_in_flight",
    "Records ingest has sent on and the broker has not yet acknowledged (checked in bulk).",
)
STATE_KEYS_EXPIRED = Counter(
    "signin_risk_state_keys_expired_total",
    "Users and addresses whose stateful-rule state was dropped after going idle.",
)
CONSUMER_LAG = Gauge(
    "signin_risk_consumer_lag_messages",
    "Messages on this worker's partitions past its committed offsets, per topic.",
    ["topic"],
)
PARTITION_REREADS = Counter(
    "signin_risk_partition_rereads_total",
    "Partitions read again from their committed offset after lagging with nothing in "
    "progress for the stall window (records Faust fetched but never delivered).",
    ["topic"],
)
PARTITIONS_ASSIGNED = Gauge(
    "signin_risk_partitions_assigned",
    "Partitions of each topic this worker owns (active, not standby).",
    ["topic"],
)
LAST_EVENT_TIME = Gauge(
    "signin_risk_last_event_timestamp_seconds",
    "Event time (createdDateTime) of the newest sign-in processed, for freshness.",
)

BRIDGE_EVENTS = Counter(
    "signin_risk_bridge_events_total",
    "Event Hubs events the bridge produced to the raw topic and Kafka acknowledged.",
)
BRIDGE_BYTES = Counter(
    "signin_risk_bridge_bytes_total", "Body bytes of the events the bridge produced."
)
BRIDGE_RETRIES = Counter(
    "signin_risk_bridge_kafka_retries_total",
    "Event batches the bridge sent again because Kafka did not acknowledge them.",
)
EVENTHUB_LAG = Gauge(
    "signin_risk_eventhub_lag_events",
    "Last enqueued sequence number minus the last one produced to Kafka, per partition.",
    ["partition"],
)
SINK_SENT = Counter("signin_risk_sink_sent_total", "Alerts a sink delivered.", ["sink"])
SINK_FAILURES = Counter(
    "signin_risk_sink_failures_total", "Sends a sink failed (each is retried).", ["sink"]
)
SINK_RETRIES = Counter(
    "signin_risk_sink_retries_total", "Sends a sink attempted again after a failure.", ["sink"]
)
SINK_DEADLETTERED = Counter(
    "signin_risk_sink_deadlettered_total",
    "Alerts a sink's receiver refused for good (or unreadable), sent to its dead-letter topic.",
    ["sink"],
)
SINK_BUFFER = Gauge(
    "signin_risk_sink_buffer_alerts", "Alerts read and not yet delivered, per sink.", ["sink"]
)
SINK_CIRCUIT_OPEN = Gauge(
    "signin_risk_sink_circuit_open",
    "1 while a sink's circuit breaker holds sends back (open or probing), else 0.",
    ["sink"],
)
SINK_LATENCY = Histogram(
    "signin_risk_sink_send_seconds",
    "Time for one successful send of a batch to a sink's receiver.",
    ["sink"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_newest_event = 0.0


def observe_signins(enriched: list[Enriched], risk_records: Sequence[Category] = ()) -> None:
    """Count a batch at once: one label lookup per distinct value, not per sign-in."""
    for category, n in Tally(risk_records).items():
        RISK_RECORDS.labels(category.value).inc(n)
    if not enriched:
        return
    by_result: Tally[tuple[str, str, str]] = Tally()
    by_client: Tally[tuple[str, str]] = Tally()
    by_risk: Tally[str] = Tally()
    by_build: Tally[tuple[str, str]] = Tally()
    newest = 0.0
    for e in enriched:
        s, client = e.signin, e.client
        result = "success" if s.succeeded else "failure"
        by_result[(s.tenant_id or "unknown", s.category.value, result)] += 1
        by_client[(client.family, client.platform)] += 1
        by_risk[e.risk.level] += 1
        if client.family == "outlook-mobile":
            by_build[(client.platform, build_line(client.version))] += 1
        newest = max(newest, s.time.timestamp())
    for labels, n in by_result.items():
        SIGNINS.labels(*labels).inc(n)
    for (family, platform), n in by_client.items():
        CLIENT_SIGNINS.labels(family, platform).inc(n)
    for level, n in by_risk.items():
        RISK_SIGNINS.labels(level).inc(n)
    for (platform, line), n in by_build.items():
        OUTLOOK_VERSIONS.labels(platform, line).inc(n)
        if line == "unknown":
            OUTLOOK_BUILD_UNKNOWN.inc(n)
    global _newest_event
    if newest > _newest_event:  # a late batch must not move freshness backwards
        _newest_event = newest
        LAST_EVENT_TIME.set(newest)


def serve(port: int) -> None:
    """Expose ``/metrics`` on ``port`` (0: not at all)."""
    if port:
        start_http_server(port)
