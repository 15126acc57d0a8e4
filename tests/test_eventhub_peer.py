"""The real azure-eventhub SDK (aio) against the local EventHubPeer, over real AMQP on loopback."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.eventhub import EventData
from azure.eventhub.aio import EventHubConsumerClient, EventHubProducerClient
from azure.eventhub.exceptions import EventHubError
from eventhub_peer import MAX_MESSAGE_SIZE, EventHubPeer
from proton import Described, Message, symbol
from proton.reactor import Filter
from proton.utils import BlockingConnection, LinkDetached, SendException

ODD_BODIES = [
    b"\xff\xfe\x00\x80 not utf-8",
    b"",
    b"\x00" * 3,
    "café".encode("latin-1"),
    b"x" * 70_000,
]


def assert_closed(port: int) -> None:
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port)):
        pass


@pytest.fixture
def peer() -> Iterator[EventHubPeer]:
    with EventHubPeer() as instance:
        yield instance
    assert not [t for t in threading.enumerate() if t.name == "eventhub-peer"]
    assert_closed(instance.port)


def run(coro: Awaitable[Any], timeout: float = 10) -> Any:
    """Run one test coroutine with a hard deadline, so a broken peer fails instead of hanging."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def producer(peer: EventHubPeer, hub: str | None = None) -> EventHubProducerClient:
    return EventHubProducerClient.from_connection_string(peer.connection_string(hub), retry_total=0)


def body_of(event: EventData) -> bytes:
    body = event.body
    return body if isinstance(body, bytes) else b"".join(body)


async def consume(
    peer: EventHubPeer,
    partition: str,
    count: int,
    *,
    settle: float = 0.3,
    on_event: Callable[[EventData], None] = lambda _: None,
    on_error: Callable[[Exception], None] | None = None,
    **receive: Any,
) -> list[EventData]:
    """Receive from one partition until `count` events came, then `settle` seconds for extras.

    load_balancing_interval=1: the SDK's receive task only ends after that sleep (default 30 s).
    """
    client = EventHubConsumerClient.from_connection_string(
        peer.connection_string(),
        consumer_group="$Default",
        load_balancing_interval=1,
        retry_total=0,
    )
    got: list[EventData] = []
    enough = asyncio.Event()

    async def on_batch(_context: Any, events: list[EventData]) -> None:
        for event in events:
            on_event(event)
        got.extend(events)
        if len(got) >= count:
            enough.set()

    async def errors(_context: Any, error: Exception) -> None:
        if on_error is not None:
            on_error(error)
            enough.set()

    task = asyncio.create_task(
        client.receive_batch(
            on_batch, partition_id=partition, max_wait_time=0.05, on_error=errors, **receive
        )
    )
    try:
        await asyncio.wait_for(enough.wait(), 5)
        await asyncio.sleep(settle)
    finally:
        await client.close()
        await task
    return got


def test_properties_before_and_after_sends(peer: EventHubPeer) -> None:
    async def scenario() -> None:
        async with producer(peer) as client:
            hub = await client.get_eventhub_properties()
            assert hub["eventhub_name"] == "signins"
            assert hub["partition_ids"] == ["0", "1"]
            assert abs(hub["created_at"] - datetime.now(UTC)) < timedelta(minutes=1)
            assert await client.get_partition_ids() == ["0", "1"]

            empty = await client.get_partition_properties("1")
            assert empty["id"] == "1"
            assert empty["is_empty"] is True
            assert empty["last_enqueued_sequence_number"] == -1
            assert empty["last_enqueued_offset"] == "-1"

            await client.send_batch([EventData(b"a"), EventData(b"bb")], partition_id="1")
            await client.send_event(EventData(b"ccc"), partition_id="1")
            after = await client.get_partition_properties("1")
            assert after["is_empty"] is False
            assert after["beginning_sequence_number"] == 0
            assert after["last_enqueued_sequence_number"] == 2
            assert isinstance(after["last_enqueued_offset"], str)
            assert int(after["last_enqueued_offset"]) > 0
            assert abs(after["last_enqueued_time_utc"] - datetime.now(UTC)) < timedelta(minutes=1)

    run(scenario())
    assert [body for _, body, _ in peer.events("1")] == [b"a", b"bb", b"ccc"]
    assert peer.events("0") == []


def test_batches_by_partition_and_by_key(peer: EventHubPeer) -> None:
    async def scenario() -> None:
        async with producer(peer) as client:
            batch = await client.create_batch(partition_id="1")
            for body in ODD_BODIES:
                batch.add(EventData(body))
            await client.send_batch(batch)
            for round_ in range(3):
                events = [EventData(f"k{round_}-{i}".encode()) for i in range(2)]
                await client.send_batch(events, partition_key="user-7")

    run(scenario())
    assert peer.events("1")[: len(ODD_BODIES)] == [(i, b, None) for i, b in enumerate(ODD_BODIES)]
    keyed = [e for p in peer.partition_ids for e in peer.events(p) if e[2] == "user-7"]
    assert [body for _, body, _ in keyed] == [
        f"k{r}-{i}".encode() for r in range(3) for i in (0, 1)
    ]
    holders = {p for p in peer.partition_ids for e in peer.events(p) if e[2] == "user-7"}
    assert len(holders) == 1


def test_gateway_spreads_unkeyed_sends_and_hubs_are_separate(peer: EventHubPeer) -> None:
    async def scenario() -> None:
        async with producer(peer, "alerts") as client:
            for i in range(10):
                await client.send_event(EventData(f"alert-{i}".encode()))

    run(scenario())
    assert [len(peer.events(p, hub="alerts")) for p in peer.partition_ids] == [5, 5]
    assert all(peer.events(p) == [] for p in peer.partition_ids)


def test_receive_from_start_round_trips_bytes_and_metadata(peer: EventHubPeer) -> None:
    for body in ODD_BODIES:
        peer.append("0", body)
    peer.append("0", b"keyed", partition_key="user-1")

    async def scenario() -> list[EventData]:
        async with producer(peer) as client:
            await client.send_event(EventData(b"\x80sent"), partition_id="0")
        return await consume(peer, "0", len(ODD_BODIES) + 2, starting_position="-1")

    got = run(scenario())
    assert [body_of(e) for e in got] == [*ODD_BODIES, b"keyed", b"\x80sent"]
    assert [e.sequence_number for e in got] == list(range(len(ODD_BODIES) + 2))
    assert all(isinstance(e.offset, str) for e in got)
    offsets = [int(e.offset) for e in got]
    assert offsets == sorted(set(offsets))
    assert [e.partition_key for e in got][-2:] == [b"user-1", None]  # the SDK gives keys as bytes
    assert all(abs(e.enqueued_time - datetime.now(UTC)) < timedelta(minutes=1) for e in got)


def test_receive_after_offset_sequence_number_or_time_gets_only_later_events(
    peer: EventHubPeer,
) -> None:
    async def scenario() -> None:
        for i in range(3):
            peer.append("1", f"e{i}".encode())
        async with producer(peer) as client:
            third = await client.get_partition_properties("1")
        time.sleep(0.005)  # later events get a later enqueued millisecond
        for i in range(3, 6):
            peer.append("1", f"e{i}".encode())
        # The SDK truncates a datetime to whole ms: keep clear of float rounding.
        after_third = third["last_enqueued_time_utc"] + timedelta(microseconds=500)
        offset = third["last_enqueued_offset"]
        runs = await asyncio.gather(
            consume(peer, "1", 3, starting_position=offset),
            consume(peer, "1", 4, starting_position=offset, starting_position_inclusive=True),
            consume(peer, "1", 2, starting_position=3),
            consume(peer, "1", 3, starting_position=3, starting_position_inclusive=True),
            consume(peer, "1", 3, starting_position=after_third),
        )
        sequences = [[e.sequence_number for e in events] for events in runs]
        assert sequences == [[3, 4, 5], [2, 3, 4, 5], [4, 5], [3, 4, 5], [3, 4, 5]]
        assert [body_of(e) for e in runs[0]] == [b"e3", b"e4", b"e5"]

    run(scenario())


def test_latest_then_new_appends_arrive_promptly(peer: EventHubPeer) -> None:
    old = [peer.append("0", f"old-{i}".encode()) for i in range(3)]
    sent: dict[bytes, float] = {}
    arrived: dict[bytes, float] = {}

    async def keep_appending() -> None:
        """The receiver attaches at a moment we cannot see: append until it has seen some."""
        for i in range(100):
            if len(arrived) >= 5:
                return
            body = f"new-{i}".encode()
            sent[body] = time.monotonic()
            peer.append("0", body)
            await asyncio.sleep(0.05)

    def on_event(event: EventData) -> None:
        arrived[body_of(event)] = time.monotonic()

    async def scenario() -> list[EventData]:
        got, _ = await asyncio.gather(
            consume(peer, "0", 5, settle=0, on_event=on_event, starting_position="@latest"),
            keep_appending(),
        )
        return got

    sequences = [e.sequence_number for e in run(scenario())]
    assert min(sequences) > max(old)
    assert sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    latencies = sorted(arrived[body] - sent[body] for body in arrived)
    assert latencies[len(latencies) // 2] < 0.2, latencies  # SDK batching included


def test_restart_on_same_port_keeps_events(peer: EventHubPeer) -> None:
    async def send(body: bytes) -> None:
        async with producer(peer) as client:
            await client.send_event(EventData(body), partition_id="1")

    run(send(b"before"))
    port = peer.port
    peer.stop()
    assert_closed(port)
    peer.append("1", b"while down")
    peer.start()
    assert peer.port == port
    run(send(b"after"))
    got = run(consume(peer, "1", 3, starting_position="-1"))
    assert [(e.sequence_number, body_of(e)) for e in got] == [
        (0, b"before"),
        (1, b"while down"),
        (2, b"after"),
    ]


def test_unknown_partition_fails(peer: EventHubPeer, caplog: pytest.LogCaptureFixture) -> None:
    async def ask() -> None:
        async with producer(peer) as client:
            await client.get_partition_properties("7")

    with pytest.raises(EventHubError, match="404"):
        run(ask())
    with pytest.raises(KeyError):
        peer.append("7", b"x")

    # The SDK refuses ids it did not get from the service, so the peer's own refusal is reached
    # by a client that cached 8 partition ids from a peer restarted with only 2.
    caplog.set_level(logging.DEBUG, logger="azure.eventhub")
    wide = EventHubPeer(partitions=8).start()

    async def send_to_7_across_restart() -> None:
        client = EventHubProducerClient.from_connection_string(
            wide.connection_string(),
            retry_total=0,
            logging_enable=True,  # frames go to the log
        )
        async with client:
            await client.send_event(EventData(b"seen"), partition_id="7")
            wide.stop()
            with EventHubPeer(partitions=2, port=wide.port) as narrow:
                with pytest.raises(EventHubError):
                    await client.send_event(EventData(b"lost"), partition_id="7")
                assert all(narrow.events(p) == [] for p in narrow.partition_ids)

    try:
        run(send_to_7_across_restart())
    finally:
        wide.stop()
    assert wide.events("7") == [(0, b"seen", None)]
    # The SDK raises unknown-error; the peer's refusal is in its frame trace.
    assert re.search(
        r"<- DetachFrame\(handle=\d+, closed=True, error=\[b'amqp:not-found'", caplog.text
    )


def test_receiver_starting_past_the_end_is_refused(peer: EventHubPeer) -> None:
    errors: list[Exception] = []
    run(consume(peer, "0", 1, settle=0, on_error=errors.append, starting_position=1000))
    assert errors
    assert "com.microsoft:argument-out-of-range" in str(errors[0])


def test_strict_refusals_seen_by_a_plain_amqp_client(peer: EventHubPeer) -> None:
    """What the SDK never sends (it checks first) must still be refused on the wire."""
    conn = BlockingConnection(f"amqp://127.0.0.1:{peer.port}", allowed_mechs="ANONYMOUS", timeout=5)
    try:
        sender = conn.create_sender("signins/Partitions/0")
        for i in range(150):  # past the peer's first credit: pyamqp ignores credit, proton does not
            sender.send(Message(body=b"%d" % i, inferred=True))
        with pytest.raises(SendException):
            sender.send(Message(body=b"x" * (MAX_MESSAGE_SIZE + 1), inferred=True))
        with pytest.raises(LinkDetached, match="amqp:not-found"):
            conn.create_receiver("signins/ConsumerGroups/$Default/Partitions/9")
        selector = symbol("apache.org:selector-filter:string")
        bogus = Filter({selector: Described(selector, "x-opt-offset > 5")})
        with pytest.raises(LinkDetached, match="amqp:invalid-field"):
            conn.create_receiver("signins/ConsumerGroups/$Default/Partitions/0", options=bogus)

        requests = conn.create_sender("$management")
        replies = conn.create_receiver("$management")
        for kind, status in [("com.microsoft:queue", 400), ("com.microsoft:eventhub", 200)]:
            properties = {"operation": "READ", "type": kind, "name": "signins"}
            requests.send(Message(id=uuid.uuid4(), properties=properties))
            reply = replies.receive(timeout=5)
            replies.accept()
            assert reply.properties["status-code"] == status
    finally:
        conn.close()
    assert [body for _, body, _ in peer.events("0")] == [b"%d" % i for i in range(150)]
