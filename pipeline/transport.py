"""Faust's aiokafka transport with the fetch wait taken from settings.

Faust hard-codes ``fetch_max_wait_ms=1500`` for its stream consumer, and some brokers
(Tansu among them) hold every fetch that long even when records are waiting: seconds of
latency per hop. Faust finds transports by URL scheme through the ``faust.transports``
entry point; ``signinrisk://host:port`` selects this one.
"""

from __future__ import annotations

from typing import Any

from faust.transport.drivers import aiokafka as driver

DEFAULT_FETCH_MAX_WAIT_MS = 25


class ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by aiokafka when the consumer starts and builds its fetcher.
        consumer._fetch_max_wait_ms = getattr(
            self.app, "fetch_max_wait_ms", DEFAULT_FETCH_MAX_WAIT_MS
        )
        return consumer


class Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(driver.Transport):
    Consumer = Consumer
