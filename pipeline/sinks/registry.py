"""Sink names to sink objects: the policy's ``sinks:`` section, plus ``eventhub`` built in
(it needs nothing but settings, so it works without a policy entry as before)."""

from __future__ import annotations

from pipeline.policy import Policy
from pipeline.settings import Settings
from pipeline.sinks import Sink
from pipeline.sinks.config import EventHubConfig, SinkConfig


def sink_config(policy: Policy, name: str) -> SinkConfig:
    if name in policy.sinks:
        return policy.sinks[name]
    if name == "eventhub":
        return EventHubConfig(type="eventhub")
    known = ", ".join(sorted(policy.sinks)) or "none"
    raise ValueError(f"sink {name!r} is not in the policy's sinks (configured: {known})")


def build_sink(name: str, config: SinkConfig, settings: Settings) -> Sink:
    """Imports are per type: a syslog forwarder need not load the Azure SDKs."""
    if config.type == "syslog":
        from pipeline.sinks.syslog import SyslogSink

        return SyslogSink(name, config)
    if config.type == "hec":
        from pipeline.sinks.hec import HecSink

        return HecSink(name, config)
    if config.type == "webhook":
        from pipeline.sinks.webhook import WebhookSink

        return WebhookSink(name, config)
    if config.type == "file":
        from pipeline.sinks.file import FileSink

        return FileSink(name, config, settings.file_mode_bits)
    if config.type == "sentinel":
        from pipeline.sinks.sentinel import SentinelSink

        return SentinelSink(name, config)
    from pipeline.sinks.eventhub import EventHubSink

    return EventHubSink(name, config, settings)
