"""Alerts to an Event Hub, where Sentinel, Splunk or QRadar already read from.

The same JSON as the alerts topic, one event per alert, partition key = user id (an
address for address-keyed incidents) so one user's alerts stay in order.
"""

from __future__ import annotations

from collections import defaultdict

import orjson
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubProducerClient

from pipeline.settings import Settings
from pipeline.sources.eventhub import eventhub_client


class EventHubSink:
    name = "eventhub"

    def __init__(self, settings: Settings, max_batch: int = 500) -> None:
        self.max_batch = max_batch
        self._pending: list[bytes] = []
        self._client = eventhub_client(
            EventHubProducerClient,
            settings.alerts_eventhub_connection_string,
            settings.alerts_eventhub_namespace,
            settings.alerts_eventhub_name,
            # The forwarder retries a failed flush forever, with jitter, and counts each
            # failure; the SDK's own retries would only hide an outage from the metrics.
            retry_total=0,
        )

    def add(self, alert: bytes) -> None:
        self._pending.append(alert)

    async def flush(self) -> None:
        by_key: defaultdict[str, list[bytes]] = defaultdict(list)
        for alert in self._pending:
            fields = orjson.loads(alert)
            by_key[fields.get("user_id") or fields.get("ip") or ""].append(alert)
        for key, alerts in by_key.items():
            batch = await self._client.create_batch(partition_key=key or None)
            for alert in alerts:
                try:
                    batch.add(EventData(alert))
                except ValueError:  # the batch is full: send it and start another
                    await self._client.send_batch(batch)
                    batch = await self._client.create_batch(partition_key=key or None)
                    batch.add(EventData(alert))
            await self._client.send_batch(batch)
        self._pending.clear()

    async def close(self) -> None:
        await self._client.close()
