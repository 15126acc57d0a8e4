"""Runtime settings from the environment (``SIGNIN_RISK_*``): brokers, topics, stores, ports.

Built once in the entry point and passed in; never at import time. Secrets are ``SecretStr``
so they cannot leak into logs, errors or ``signin-risk settings`` output.
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.core.rejects import DEFAULT_MAX_DEADLETTER_BYTES

TOPIC_NAMES = ("raw", "signins", "by-ip", "alerts", "incidents", "deadletter")
STREAMS = ("alerts", "incidents")
"""The topics a forwarder can deliver."""
STAGES = ("all", "ingest", "detect")
Stage = Literal["all", "ingest", "detect"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SIGNIN_RISK_", extra="ignore", frozen=True)

    kafka_bootstrap: str = "localhost:9092"
    """Comma-separated host:port list (Apache Kafka, Redpanda, Event Hubs' Kafka endpoint)."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    ssl_cafile: str = ""

    app_id: str = "signin-risk"
    """Consumer group and prefix of table changelog topics."""
    topic_prefix: str = "signin-risk."
    partitions: int = Field(4, ge=1)
    """Partitions of the signins topic and of every table changelog (they must agree)."""
    raw_partitions: int = Field(4, ge=1)
    stage: Stage = "all"
    """Which agents this worker runs. One process is GIL-bound at about one core; running
    ``ingest`` and ``detect`` as separate processes (or pods) gives each stage its own."""
    store: str = "memory://"
    """Table store: ``memory://`` or ``rocksdb://`` (rocksdict) for production."""
    data_dir: str = "signin-risk-data"
    """Where Faust keeps local table files (``rocksdb://``); one directory per worker."""
    policy_file: str | None = None

    metrics_port: int = Field(9464, ge=0, le=65535)
    """Prometheus ``/metrics``; 0 disables the endpoint."""
    inventory_view: bool = False
    """Serve the mail-client inventory read-only over HTTP (``/inventory``, ``/inventory.csv``)."""
    inventory_view_host: str = "127.0.0.1"
    """Where the view listens; beyond loopback only with ``inventory_view_token``."""
    inventory_view_port: int = Field(9465, ge=0, le=65535)
    inventory_view_token: SecretStr = SecretStr("")
    """Bearer token the view requires (``Authorization: Bearer <token>``) when set."""
    inventory_view_pseudonymize: str = Field("", pattern=r"^((user|ip)(,(user|ip))?)?$")
    """``user``: the view shows users as the sinks' keyed pseudonyms (``pseudonym_key``)."""
    inventory_retention_days: float = Field(30.0, gt=0)
    """A user's inventory is swept once none of their clients was seen for this long."""
    max_event_bytes: int = Field(1024 * 1024, ge=1024)
    max_deadletter_bytes: int = Field(DEFAULT_MAX_DEADLETTER_BYTES, ge=4096)
    """Largest dead letter; a bigger original is cut to its first bytes, with its full length
    and sha256, so the letter always fits the producer's request limit."""
    batch_events: int = Field(200, ge=1)
    """Raw events ingest takes at once; each take costs one send per signins partition."""
    max_batch_bytes: int = Field(512 * 1024, ge=16 * 1024)
    """Upper size of a signins message (Event Hubs' Kafka endpoint refuses requests > 1 MB)."""
    batch_wait_ms: int = Field(100, ge=1)
    """How long ingest waits to fill a take: the latency paid for batching at low rates.
    Faust hands fetched events to the stream one at a time, so a 10 ms take held ~6
    envelopes; 100 ms takes gave 1.6x the sign-ins/s with every rule on, and a lower p99 at
    2,000/s, because detect pays per touched user per batch."""
    sweep_interval_s: float = Field(60.0, gt=0)
    """How often each partition's stateful tables are swept of idle keys."""
    fetch_max_wait_ms: int = Field(25, ge=0)
    """How long the broker may hold a fetch; Faust's fixed 1,500 ms costs seconds of latency."""
    verify_log_end: bool = False
    """Confirm each changelog's end with a fetch before table recovery; needed on Tansu 0.6
    (the embedded broker), whose ListOffsets under-reports it. Costs one fetch per rebalance."""
    connect_timeout_s: float = Field(30.0, gt=0)
    """How long a command (topics, replay, baseline --load, the demo) waits for the broker to
    answer at start before it gives up with one line."""
    session_timeout_s: float = Field(10.0, gt=0)
    rebalance_timeout_s: float = Field(10.0, gt=0)
    heartbeat_interval_s: float = Field(1.0, gt=0)
    commit_interval_s: float = Field(1.0, gt=0)

    connections_max_idle_ms: int = Field(540_000, ge=1000)
    """Idle connections are closed after this; Event Hubs' Kafka endpoint drops them at 240 s,
    so its profile sets 180 s."""
    metadata_max_age_ms: int = Field(300_000, ge=1000)
    compression: Literal["none", "gzip"] = "none"
    """Producer compression; gzip is the only codec Event Hubs' Kafka endpoint accepts."""

    eventhub_connection_string: SecretStr = SecretStr("")
    """Event Hubs connection string (a secret); or use ``eventhub_namespace`` with Entra ID."""
    eventhub_namespace: str = ""
    """Fully qualified namespace (``<ns>.servicebus.windows.net``): signs in with
    ``DefaultAzureCredential`` (managed identity, workload identity, az login...)."""
    eventhub_name: str = ""
    """The hub the tenant's diagnostic setting writes sign-in logs to."""
    eventhub_consumer_group: str = "$Default"
    eventhub_starting_position: str = "earliest"
    """Where a partition without a checkpoint starts: ``earliest``, ``latest`` or an ISO time."""
    eventhub_checkpoint_store: Literal["sqlite", "blob"] = "sqlite"
    """``sqlite``: a local file, for one host; ``blob``: Azure Blob Storage, for many."""
    eventhub_checkpoint_path: str = "signin-risk-data/eventhub-checkpoints.sqlite"
    eventhub_blob_connection_string: SecretStr = SecretStr("")
    eventhub_blob_account_url: str = ""
    """Blob account URL for the checkpoint store with ``DefaultAzureCredential``."""
    eventhub_blob_container: str = "signin-risk-checkpoints"
    eventhub_batch_size: int = Field(300, ge=1)
    eventhub_max_wait_s: float = Field(1.0, gt=0)
    eventhub_lag_interval_s: float = Field(15.0, gt=0)
    """How often the bridge asks each partition for its last enqueued sequence number."""
    eventhub_load_balancing_interval_s: float = Field(10.0, gt=0)

    alerts_eventhub_connection_string: SecretStr = SecretStr("")
    """The Event Hub the ``eventhub`` alert sink writes to (or ``alerts_eventhub_namespace``)."""
    alerts_eventhub_namespace: str = ""
    alerts_eventhub_name: str = ""

    sink_backoff_max_s: float = Field(30.0, gt=0)
    """Longest wait between two retries of a failed send (exponential, with jitter)."""
    sink_breaker_failures: int = Field(5, ge=1)
    """Failed sends in a row that open a sink's circuit breaker."""
    sink_breaker_cooldown_s: float = Field(60.0, gt=0)
    """How long an open circuit sends nothing before one alert probes the receiver."""
    file_mode: str = Field("0600", pattern=r"^0?[0-7]{3}$")
    """Octal mode of files that hold personal data (file-sink alerts, rejects, checkpoints)."""
    pseudonym_key: SecretStr = SecretStr("")
    """Key of the pseudonyms sinks with ``pseudonymize`` emit; keep it as secret as a password."""

    @property
    def file_mode_bits(self) -> int:
        return int(self.file_mode, 8)

    @property
    def batch_wait_s(self) -> float:
        return self.batch_wait_ms / 1000

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    @property
    def group_id(self) -> str:
        """The consumer group (Faust app id) of this worker's stage.

        A lone ingest stage is stateless and reads only ``raw``, so it gets a group of its
        own; detect keeps ``app_id``, which names the table changelogs.
        """
        return f"{self.app_id}-ingest" if self.stage == "ingest" else self.app_id

    def changelog(self, table: str) -> str:
        """Faust's name for a table's changelog topic."""
        return f"{self.app_id}-{table}-changelog"

    def kafka_client_config(self) -> dict[str, Any]:
        """Security settings in kafka-python's spelling (replay, admin, demo consumers)."""
        config: dict[str, Any] = {
            "security_protocol": self.security_protocol,
            "connections_max_idle_ms": self.connections_max_idle_ms,
            "metadata_max_age_ms": self.metadata_max_age_ms,
            "bootstrap_timeout_ms": int(self.connect_timeout_s * 1000),
        }
        if self.security_protocol.startswith("SASL"):
            config |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password.get_secret_value(),
            }
        if self.security_protocol in ("SSL", "SASL_SSL") and self.ssl_cafile:
            config["ssl_cafile"] = self.ssl_cafile
        return config

    @property
    def compression_type(self) -> str | None:
        return None if self.compression == "none" else self.compression

    def aiokafka_config(self) -> dict[str, Any]:
        """Connection settings in aiokafka's spelling (the bridge and the forwarders)."""
        kafka_python_only = ("ssl_cafile", "bootstrap_timeout_ms")
        config = {k: v for k, v in self.kafka_client_config().items() if k not in kafka_python_only}
        config["bootstrap_servers"] = self.kafka_bootstrap
        context = self.ssl_context()
        if context is not None:
            config["ssl_context"] = context
        return config

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.security_protocol not in ("SSL", "SASL_SSL"):
            return None
        return ssl.create_default_context(cafile=self.ssl_cafile or None)

    def masked(self) -> dict[str, Any]:
        """Settings for display: secrets show as ``**********`` when set."""
        return self.model_dump(mode="json")
