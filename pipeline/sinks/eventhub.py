"""Alerts to an Event Hub, where Sentinel, Splunk or QRadar already read from.

One event per alert in the sink's format (native JSON by default), partition key = user id
(an address for address-keyed incidents) so one user's alerts stay in order.

The Azure SDK is imported when a sink is built, not with this module: the policy loads
every sink's config, and a forwarder to another sink has no use for it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from pipeline.alerts.formats import line
from pipeline.runtime.settings import Settings
from pipeline.sinks import AlertDict, Refusal, SinkBase, SinkType


class EventHubConfig(SinkBase):
    type: Literal["eventhub"]
    max_batch: int = Field(500, ge=1, le=10_000)


class EventHubSink:
    def __init__(self, name: str, config: EventHubConfig, settings: Settings) -> None:
        from azure.eventhub.aio import EventHubProducerClient

        from pipeline.sources.eventhub import eventhub_client

        self.name = name
        self.max_batch = config.max_batch
        self._format = config.format
        self._client = eventhub_client(
            EventHubProducerClient,
            settings.alerts_eventhub_connection_string,
            settings.alerts_eventhub_namespace,
            settings.alerts_eventhub_name,
            # The forwarder retries a failed flush forever, with jitter, and counts each
            # failure; the SDK's own retries would only hide an outage from the metrics.
            retry_total=0,
        )

    async def send(self, alerts: Sequence[AlertDict]) -> list[Refusal]:
        """All or nothing: a failure raises and the forwarder sends the batch again."""
        from azure.eventhub import EventData

        by_key: defaultdict[str, list[bytes]] = defaultdict(list)
        for alert in alerts:
            key = alert.get("user_id") or alert.get("ip") or ""
            by_key[key].append(line(alert, self._format).encode())
        for key, bodies in by_key.items():
            batch = await self._client.create_batch(partition_key=key or None)
            for body in bodies:
                try:
                    batch.add(EventData(body))
                except ValueError:  # the batch is full: send it and start another
                    await self._client.send_batch(batch)
                    batch = await self._client.create_batch(partition_key=key or None)
                    batch.add(EventData(body))
            await self._client.send_batch(batch)
        return []

    async def close(self) -> None:
        await self._client.close()


SINK = SinkType(EventHubConfig, EventHubSink, order=6, builtin=True)
