"""Alerts to an Event Hub, where Sentinel, Splunk or QRadar already read from.

One event per alert in the sink's format (native JSON by default), partition key = user id
(an address for address-keyed incidents) so one user's alerts stay in order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient

from pipeline.formats import line
from pipeline.settings import Settings
from pipeline.sinks import AlertDict, Refusal
from pipeline.sinks.config import EventHubConfig
from pipeline.sources.eventhub import eventhub_client


class EventHubSink:
    def __init__(self, name: str, config: EventHubConfig, settings: Settings) -> None:
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
