"""A small, strict, in-process Event Hubs peer for testing the real azure-eventhub SDK.

It speaks the subset of AMQP 1.0 that azure-eventhub 5.15 (pyamqp, sync and aio) uses with an
emulator connection string (`UseDevelopmentEmulator=true`: plain TCP, SASL ANONYMOUS): `$cbs`
put-token, `$management` READ, producer links (gateway or partition; single messages and batches)
and partition receivers with selector filters. Events are kept in memory by the EventHubPeer
object, so stop() + start() behaves like a service restart that loses nothing.
Wire facts and traps: /work/shared/guide/eventhubs-wire.md.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from proton import (
    UNDESCRIBED,
    Array,
    Condition,
    Data,
    DataException,
    Delivery,
    Described,
    Endpoint,
    Event,
    Handler,
    Link,
    Message,
    MessageException,
    Sender,
    Transport,
    symbol,
    timestamp,
)
from proton.handlers import IOHandler
from proton.reactor import ApplicationEvent, Container, EventInjector

MAX_MESSAGE_SIZE = 1024 * 1024
_CREDIT = 100  # granted to producers and $cbs/$management requesters, topped up at half
_RECORD_OVERHEAD = 64  # offsets are byte positions; a nominal header keeps empty bodies apart
_NODES = ("$cbs", "$management")
_SELECTOR = "apache.org:selector-filter:string"
_FILTER = re.compile(
    r"amqp\.annotation\.(x-opt-offset|x-opt-sequence-number|x-opt-enqueued-time)"
    r"\s*(>=|>)\s*'([^']*)'"
)
_FILTER_FIELD = {
    "x-opt-offset": "offset",
    "x-opt-sequence-number": "sequence",
    "x-opt-enqueued-time": "enqueued_ms",
}
_SECTIONS = range(0x70, 0x79)  # descriptors of message sections, header .. footer
_ANNOTATIONS_SECTION = 0x72
_DATA_SECTION = 0x75
_PARTITION_KEY = "x-opt-partition-key"


@dataclass(frozen=True, slots=True)
class _Event:
    sequence: int
    offset: int
    enqueued_ms: int
    body: bytes
    partition_key: str | None


@dataclass(slots=True)
class _Hub:
    created_ms: int
    partitions: dict[str, list[_Event]]
    next_offsets: dict[str, int]
    round_robin: int = 0


@dataclass(slots=True)
class _Cursor:
    """What an open partition receiver reads, and the index of the next event to send."""

    hub: str
    partition: str
    position: int


class _Refused(Exception):
    """An attach, delivery or request Event Hubs would refuse, with its AMQP error condition."""

    def __init__(self, condition: str, description: str) -> None:
        super().__init__(description)
        self.condition = condition


class EventHubPeer:
    """An Event Hubs namespace on 127.0.0.1: hubs appear on first use, each with `partitions`."""

    def __init__(self, hub: str = "signins", partitions: int = 2, port: int = 0) -> None:
        self.hub = hub
        self.port = port
        self.partition_ids = [str(i) for i in range(partitions)]
        self._lock = threading.Lock()
        self._hubs: dict[str, _Hub] = {}
        self._thread: threading.Thread | None = None
        self._injector: EventInjector | None = None

    def start(self) -> EventHubPeer:
        """Listen before returning (clients may connect at once), then serve in a thread."""
        if self._thread is not None:
            raise RuntimeError("peer already started")
        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: restarts
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._injector = EventInjector()
        container = Container(_Service(self, listener, self._injector))
        self._thread = threading.Thread(target=container.run, name="eventhub-peer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Drop the listener and every connection, as a crash would, and wait for the thread."""
        if self._thread is None or self._injector is None:
            return
        self._injector.trigger(ApplicationEvent("peer_stop"))
        self._thread.join(timeout=10)
        if self._thread.is_alive():
            raise RuntimeError("eventhub peer thread did not stop")
        for fd in self._injector.pipe:  # proton never closes the injector's pipe
            os.close(fd)
        self._thread = self._injector = None

    def __enter__(self) -> EventHubPeer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def connection_string(self, hub: str | None = None) -> str:
        return (
            f"Endpoint=sb://127.0.0.1:{self.port}/;SharedAccessKeyName=test;"
            f"SharedAccessKey=dGVzdA==;EntityPath={hub or self.hub};UseDevelopmentEmulator=true"
        )

    def append(self, partition: str, body: bytes, partition_key: str | None = None) -> int:
        """Store one event in the default hub, as a producer would; returns its sequence number."""
        if partition not in self.partition_ids:
            raise KeyError(f"no partition {partition!r}")
        event = self._store(self.hub, partition, bytes(body), partition_key)
        if self._injector is not None:  # wake the container: open receivers get it at once
            self._injector.trigger(ApplicationEvent("peer_wake"))
        return event.sequence

    def events(self, partition: str, hub: str | None = None) -> list[tuple[int, bytes, str | None]]:
        """(sequence number, body, partition key) of each stored event."""
        with self._lock:
            stored = list(self._hub(hub or self.hub).partitions[partition])
        return [(e.sequence, e.body, e.partition_key) for e in stored]

    def _hub(self, name: str) -> _Hub:
        """The hub called `name`, created on first use; call with the lock held."""
        if name not in self._hubs:
            self._hubs[name] = _Hub(
                created_ms=int(time.time() * 1000),
                partitions={p: [] for p in self.partition_ids},
                next_offsets=dict.fromkeys(self.partition_ids, 0),
            )
        return self._hubs[name]

    def _route(self, hub_name: str, key: str | None) -> str:
        """The gateway's choice: a stable hash of the partition key, else round robin."""
        with self._lock:
            hub = self._hub(hub_name)
            if key is not None:
                index = zlib.crc32(key.encode())
            else:
                index, hub.round_robin = hub.round_robin, hub.round_robin + 1
            return self.partition_ids[index % len(self.partition_ids)]

    def _store(self, hub_name: str, partition: str, body: bytes, key: str | None) -> _Event:
        with self._lock:
            hub = self._hub(hub_name)
            log = hub.partitions[partition]
            now = max(int(time.time() * 1000), log[-1].enqueued_ms if log else 0)
            event = _Event(len(log), hub.next_offsets[partition], now, body, key)
            hub.next_offsets[partition] += len(body) + _RECORD_OVERHEAD
            log.append(event)
            return event

    def _read(self, cursor: _Cursor, limit: int) -> list[_Event]:
        with self._lock:
            log = self._hub(cursor.hub).partitions[cursor.partition]
            return log[cursor.position : cursor.position + limit]

    def _start(self, hub_name: str, partition: str, selector: str | None) -> int:
        """Index of the first event for a receiver's selector filter (none: the start)."""
        if selector is None:
            return 0
        match = _FILTER.fullmatch(selector.strip())
        if match is None:
            raise _Refused("amqp:invalid-field", f"unsupported selector filter {selector!r}")
        name, operator, value = match.groups()
        with self._lock:
            hub = self._hub(hub_name)
            log = hub.partitions[partition]
            if value == "@latest":
                return len(log)
            if not re.fullmatch(r"-?\d+", value):
                raise _Refused("amqp:invalid-field", f"{name} {value!r} is not a number")
            number, field = int(value), _FILTER_FIELD[name]
            next_value = {"offset": hub.next_offsets[partition], "sequence": len(log)}.get(field)
            if next_value is not None and not -1 <= number <= next_value:
                raise _Refused(
                    "com.microsoft:argument-out-of-range",
                    f"{name} {number} is not in partition {partition} (next is {next_value})",
                )
            for index, event in enumerate(log):
                mine = getattr(event, field)
                if mine > number or (operator == ">=" and mine == number):
                    return index
            return len(log)


class _Service(Handler):
    """The proton handler: lives in the container thread, one per start()."""

    def __init__(self, peer: EventHubPeer, listener: socket.socket, injector: EventInjector):
        super().__init__()
        self._peer = peer
        self._listener = listener
        self._injector = injector
        self._container: Container | None = None
        self._sockets: list[Any] = []  # proton Selectables: the listener and each connection
        self._producers: dict[Link, tuple[str, str | None]] = {}  # -> hub, partition or gateway
        self._receivers: dict[Link, _Cursor] = {}

    def on_reactor_init(self, event: Event) -> None:
        self._container = container = event.container
        container.selectable(self._injector)
        selectable = container.selectable(handler=_Acceptor(self), delegate=self._listener)
        selectable.reading = True
        selectable._transport = None  # tells proton's IOHandler: not a connection
        container.update(selectable)
        self._sockets.append(selectable)

    def accept(self) -> None:
        """What proton's Acceptor does, with the socket wrapped for pyamqp's sake."""
        assert self._container is not None
        sock, _ = self._listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        sock.setblocking(False)
        connection = self._container.connection(self)
        connection._acceptor = self  # proton: the socket exists already, do not connect
        transport = Transport(Transport.SERVER)
        transport.sasl().allowed_mechs("ANONYMOUS")
        transport.bind(connection)
        selectable = self._container.selectable(delegate=_PaddingSocket(sock))
        selectable._transport = transport
        transport._selectable = selectable
        IOHandler.update(transport, selectable, self._container.now)
        self._sockets = [s for s in self._sockets if not s.is_terminal] + [selectable]

    def on_peer_stop(self, event: Event) -> None:
        """Abort every socket; with no selectable left, the container's run() returns."""
        for selectable in self._sockets:
            transport = selectable._transport
            if transport is not None:
                transport.close_head()
                transport.close_tail()
                selectable._transport = transport._selectable = None
            selectable.terminate()
            selectable.update()
        self._injector.close()

    def on_peer_wake(self, event: Event) -> None:
        for link in list(self._receivers):
            self._pump(link)

    # Endpoints: open what the client opens, close what it closes.
    def on_connection_remote_open(self, event: Event) -> None:
        event.connection.open()

    def on_session_remote_open(self, event: Event) -> None:
        event.session.open()

    def on_connection_remote_close(self, event: Event) -> None:
        event.connection.close()

    def on_session_remote_close(self, event: Event) -> None:
        event.session.close()

    def on_link_remote_close(self, event: Event) -> None:
        event.link.close()

    def on_link_final(self, event: Event) -> None:
        self._producers.pop(event.link, None)
        self._receivers.pop(event.link, None)

    def on_link_remote_open(self, event: Event) -> None:
        """Attach replies echo the termini (pyamqp needs both); refusals then detach at once."""
        link = event.link
        link.source.copy(link.remote_source)
        link.target.copy(link.remote_target)
        link.snd_settle_mode = link.remote_snd_settle_mode
        link.rcv_settle_mode = link.remote_rcv_settle_mode
        link.max_message_size = MAX_MESSAGE_SIZE
        node = (link.remote_target if link.is_receiver else link.remote_source).address
        try:
            if node not in _NODES and link.is_receiver:
                self._producers[link] = _producer_target(self._peer, node)
            elif node not in _NODES:
                self._receivers[link] = self._cursor(link)
        except _Refused as refused:
            link.condition = Condition(refused.condition, str(refused))
            link.open()
            link.close()
            return
        link.open()
        if link.is_receiver:
            link.flow(_CREDIT)
        else:
            self._pump(link)

    def _cursor(self, link: Link) -> _Cursor:
        address = link.remote_source.address
        parts = _path(address)
        if len(parts) != 5 or [p.lower() for p in parts[1:5:2]] != ["consumergroups", "partitions"]:
            raise _Refused("amqp:not-found", f"no receive path {address!r}")
        hub, partition = parts[0], parts[4]
        _check_partition(self._peer, partition)
        selector = None
        filters = link.remote_source.filter
        if filters is not None:
            filters.rewind()
            if filters.next() is not None:
                value = filters.get_object().get(_SELECTOR)
                selector = value.value if isinstance(value, Described) else value
        if selector is not None and not isinstance(selector, str):
            raise _Refused("amqp:invalid-field", "the selector filter must be a string")
        return _Cursor(hub, partition, self._peer._start(hub, partition, selector))

    # Deliveries.
    def on_link_flow(self, event: Event) -> None:
        self._pump(event.link)

    def on_delivery(self, event: Event) -> None:
        delivery, link = event.delivery, event.link
        if link.is_sender:
            if delivery.updated and delivery.remote_state:
                delivery.settle()  # the client settled an event we sent
            return
        if delivery.partial:
            return
        if link.state & Endpoint.LOCAL_CLOSED:  # sent before our refusal reached the client
            delivery.settle()
            return
        payload = link.recv(delivery.pending)
        if link.credit < _CREDIT // 2:  # rarely: pyamqp spends a loop turn on every frame
            link.flow(_CREDIT - link.credit)
        if link.remote_target.address in _NODES:
            delivery.update(Delivery.ACCEPTED)
            delivery.settle()
            self._answer(link, payload)
            return
        try:
            if delivery.aborted:
                raise _Refused("amqp:illegal-state", "aborted delivery")
            if len(payload) > MAX_MESSAGE_SIZE:
                size = f"{len(payload)} bytes, over {MAX_MESSAGE_SIZE}"
                raise _Refused("amqp:link:message-size-exceeded", size)
            hub, partition = self._producers[link]
            events = _events_in(payload)
            # A gateway batch stays together on one partition, as in Event Hubs.
            partition = partition or self._peer._route(hub, events[0][1])
            for body, key in events:
                self._peer._store(hub, partition, body, key)
        except _Refused as refused:
            delivery.local.condition = Condition(refused.condition, str(refused))
            delivery.update(Delivery.REJECTED)
        else:
            delivery.update(Delivery.ACCEPTED)
        delivery.settle()
        for receiver in list(self._receivers):
            self._pump(receiver)

    def _pump(self, link: Sender) -> None:
        """Send the receiver the stored events it has credit for."""
        cursor = self._receivers.get(link)
        if cursor is None or link.state & Endpoint.LOCAL_CLOSED:
            return
        while link.credit > 0:
            batch = self._peer._read(cursor, link.credit)
            if not batch:
                break
            for stored in batch:
                delivery = link.send(_message(stored))
                if link.snd_settle_mode == Link.SND_SETTLED:
                    delivery.settle()
            cursor.position += len(batch)
        if link.drain_mode:
            link.drained()

    def _answer(self, link: Link, payload: bytes) -> None:
        """Reply to a $cbs/$management request on the peer's sender for that node."""
        node = link.remote_target.address
        request = Message()
        try:
            request.decode(payload)
        except MessageException as error:
            link.condition = Condition("amqp:decode-error", f"{node} request: {error}")
            link.close()
            return
        reply_link = _reply_link(link, node)
        if reply_link is None or request.id is None:
            description = f"{node} requests need a message-id and a reply link in their session"
            link.condition = Condition("amqp:precondition-failed", description)
            link.close()
            return
        properties = request.properties or {}
        status, description, body, extra = 200, "OK", None, {}
        try:
            if node == "$management":
                body = _management(self._peer, properties)
            elif properties.get("operation") == "put-token":
                status, description = 202, "Accepted"
            else:
                raise _Refused("amqp:not-implemented", f"$cbs {properties.get('operation')!r}")
        except _Refused as refused:
            status = 404 if refused.condition == "amqp:not-found" else 400
            description, extra = str(refused), {"error-condition": refused.condition}
        reply_properties = {"status-code": status, "status-description": description, **extra}
        reply_link.send(Message(body=body, correlation_id=request.id, properties=reply_properties))


class _Acceptor(Handler):
    """Handler of the listening socket."""

    def __init__(self, service: _Service) -> None:
        super().__init__()
        self._service = service

    def on_selectable_readable(self, event: Event) -> None:
        self._service.accept()


class _PaddingSocket:
    """The socket proton writes to: every outgoing frame is re-emitted with all its fields.

    pyamqp indexes performative fields by position, while proton (as the spec allows) leaves out
    trailing nulls. When the kernel buffer is full, one byte of proton's output stays unpopped so
    proton keeps the socket selected for writing until the rewritten bytes are out.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._raw = b""  # proton output not yet split into frames
        self._out = b""  # rewritten bytes not yet sent
        self._held = 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def recv(self, size: int) -> bytes:
        return self._sock.recv(size)

    def close(self) -> None:
        self._sock.close()

    def send(self, data: bytes) -> int:
        self._flush()
        if self._out:
            return 0
        self._raw += bytes(data[self._held :])
        self._held = 0
        self._out = self._reframe()
        self._flush()
        if self._out:
            self._held = 1
            return len(data) - 1
        return len(data)

    def _flush(self) -> None:
        while self._out:
            try:
                sent = self._sock.send(self._out)
            except BlockingIOError:
                return
            self._out = self._out[sent:]

    def _reframe(self) -> bytes:
        raw, i, out = self._raw, 0, []
        while len(raw) - i >= 8:
            is_header = raw[i : i + 4] == b"AMQP"
            size = 8 if is_header else int.from_bytes(raw[i : i + 4], "big")
            if len(raw) - i < size:
                break
            frame, i = raw[i : i + size], i + size
            body_at = frame[4] * 4
            if is_header or size == body_at:  # protocol header or heartbeat
                out.append(frame)
            else:
                body = _pad(frame[body_at:])
                out.append((body_at + len(body)).to_bytes(4, "big") + frame[4:body_at] + body)
        self._raw = raw[i:]
        return b"".join(out)


# Field counts of the described lists pyamqp indexes: performatives, SASL frames and error.
_FIELDS = {0x10: 10, 0x11: 8, 0x12: 14, 0x13: 11, 0x14: 11, 0x15: 6, 0x16: 3, 0x17: 1, 0x18: 1}
_FIELDS |= {0x1D: 3, 0x40: 1, 0x41: 3, 0x42: 1, 0x43: 1, 0x44: 2}
_FIXED_WIDTH = {0x4: 0, 0x5: 1, 0x6: 2, 0x7: 4, 0x8: 8, 0x9: 16}  # by constructor's high nibble


def _skip(buf: bytes, i: int) -> int:
    """End of the AMQP-encoded value that starts at buf[i]."""
    code = buf[i]
    if code == 0x00:  # described: descriptor, then value
        return _skip(buf, _skip(buf, i + 1))
    width = code >> 4
    if width in _FIXED_WIDTH:
        return i + 1 + _FIXED_WIDTH[width]
    if width in (0xA, 0xC, 0xE):
        return i + 2 + buf[i + 1]
    return i + 5 + int.from_bytes(buf[i + 1 : i + 5], "big")


def _pad(value: bytes) -> bytes:
    """Re-encode a known described list as list32 with every field; keep what follows it."""
    if len(value) < 4 or value[:2] != b"\x00\x53" or value[2] not in _FIELDS:
        return value
    code, kind = value[2], value[3]
    if kind == 0x45:  # list0
        count, at, end = 0, 4, 4
    elif kind == 0xC0:  # list8
        count, at, end = value[5], 6, 5 + value[4]
    elif kind == 0xD0:  # list32
        count, at = int.from_bytes(value[8:12], "big"), 12
        end = 8 + int.from_bytes(value[4:8], "big")
    else:
        return value
    items = []
    for _ in range(count):
        stop = _skip(value, at)
        items.append(_pad(value[at:stop]))
        at = stop
    items += [b"\x40"] * (_FIELDS[code] - len(items))
    fields = b"".join(items)
    size = (len(fields) + 4).to_bytes(4, "big")
    return value[:3] + b"\xd0" + size + len(items).to_bytes(4, "big") + fields + value[end:]


def _sections(encoded: bytes) -> list[tuple[int, Any]]:
    """(descriptor, value) of each section of an encoded message; ValueError if not a message."""
    sections, data, view = [], Data(), memoryview(encoded)
    while view:
        if view[0] != 0x00:
            raise ValueError("not a message section")
        data.clear()
        used = data.decode(view)
        data.rewind()
        data.next()
        section = data.get_object()
        if not isinstance(section, Described) or section.descriptor not in _SECTIONS:
            raise ValueError("not a message section")
        value = section.value
        if isinstance(value, memoryview):  # it dies with data.clear(): copy it now
            value = bytes(value)
        sections.append((section.descriptor, value))
        view = view[used:]
    return sections


def _body_and_key(sections: list[tuple[int, Any]]) -> tuple[bytes | None, str | None]:
    """Concatenated Data sections (None without any) and the x-opt-partition-key annotation."""
    chunks = [value for code, value in sections if code == _DATA_SECTION]
    annotations = next((v for c, v in sections if c == _ANNOTATIONS_SECTION), None) or {}
    key = annotations.get(_PARTITION_KEY)
    if isinstance(key, bytes):
        key = key.decode()
    return (b"".join(chunks) if chunks else None), (None if key is None else str(key))


def _events_in(payload: bytes) -> list[tuple[bytes, str | None]]:
    """(body, partition key) of each event of a transfer.

    proton hides the transfer's message-format, so a batch (0x80013700) is recognised by shape:
    every Data section holds an encoded message with a Data body. A lone event whose body is
    itself an encoded AMQP message would be mistaken for a batch.
    """
    try:
        envelope = _sections(payload)
    except (ValueError, DataException) as error:
        raise _Refused("amqp:decode-error", f"cannot decode message: {error}") from error
    datas = [value for code, value in envelope if code == _DATA_SECTION]
    body, envelope_key = _body_and_key(envelope)
    try:
        inner = [_body_and_key(_sections(data)) for data in datas]
    except (ValueError, DataException):
        inner = []
    batch = [(b, key or envelope_key) for b, key in inner if b is not None]
    if datas and len(batch) == len(datas):
        return batch
    if body is None:
        raise _Refused("amqp:not-implemented", "only Data bodies are supported")
    return [(body, envelope_key)]


def _message(event: _Event) -> Message:
    """An event as Event Hubs delivers it: a Data body plus x-opt-* annotations."""
    annotations: dict[symbol, Any] = {
        symbol("x-opt-sequence-number"): event.sequence,
        symbol("x-opt-offset"): str(event.offset),
        symbol("x-opt-enqueued-time"): timestamp(event.enqueued_ms),
    }
    if event.partition_key is not None:
        annotations[symbol(_PARTITION_KEY)] = event.partition_key
    return Message(body=event.body, annotations=annotations, inferred=True)  # inferred: Data


def _path(address: str | None) -> list[str]:
    """Path segments of `amqps://host/hub/...` (scheme and host optional)."""
    parsed = urlparse(address or "")
    return [part for part in (parsed.path if parsed.scheme else address or "").split("/") if part]


def _check_partition(peer: EventHubPeer, partition: str) -> None:
    if partition not in peer.partition_ids:
        raise _Refused("amqp:not-found", f"partition {partition!r} does not exist")


def _producer_target(peer: EventHubPeer, address: str | None) -> tuple[str, str | None]:
    """(hub, partition or None for the gateway) of a producer link."""
    parts = _path(address)
    if len(parts) == 1:
        return parts[0], None
    if len(parts) == 3 and parts[1].lower() == "partitions":
        _check_partition(peer, parts[2])
        return parts[0], parts[2]
    raise _Refused("amqp:not-found", f"no send path {address!r}")


def _reply_link(request_link: Link, node: str) -> Sender | None:
    """The peer's sender for `node` in the request's session: replies go there (no reply-to)."""
    link = request_link.connection.link_head(Endpoint.LOCAL_ACTIVE)
    while link is not None:
        if link.is_sender and link.session == request_link.session and link.source.address == node:
            return link
        link = link.next(Endpoint.LOCAL_ACTIVE)
    return None


def _management(peer: EventHubPeer, properties: dict[str, Any]) -> dict[str, Any]:
    """Body of a $management READ reply, for a hub or one of its partitions."""
    if properties.get("operation") != "READ":
        raise _Refused("amqp:not-implemented", f"operation {properties.get('operation')!r}")
    name, kind = str(properties.get("name") or ""), properties.get("type")
    if kind == "com.microsoft:eventhub":
        with peer._lock:
            created_ms = peer._hub(name).created_ms
        return {
            "name": name,
            "type": kind,
            "created_at": timestamp(created_ms),
            "partition_count": len(peer.partition_ids),
            "partition_ids": Array(UNDESCRIBED, Data.STRING, *peer.partition_ids),
        }
    if kind == "com.microsoft:partition":
        partition = str(properties.get("partition"))
        _check_partition(peer, partition)
        with peer._lock:
            log = peer._hub(name).partitions[partition]
            last = log[-1] if log else None
        return {
            "name": name,
            "type": kind,
            "partition": partition,
            "begin_sequence_number": 0,
            "last_enqueued_sequence_number": last.sequence if last else -1,
            "last_enqueued_offset": str(last.offset) if last else "-1",  # a string, as in EH
            "last_enqueued_time_utc": timestamp(last.enqueued_ms if last else 0),
            "is_partition_empty": last is None,
        }
    raise _Refused("amqp:not-implemented", f"management type {kind!r}")
