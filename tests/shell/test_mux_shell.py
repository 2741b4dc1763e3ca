"""Mux.Cool shell: a v2py mux client and a v2py mux server joined in memory.

The client's carrying outbound runs the server directly over the worker's frame
stream, so these tests need no sockets; the sub-connections are served by fake
dispatchers (echo, stalled, UDP echo).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
from collections.abc import Awaitable, Callable

import pytest

from v2py.app.mux_client import MuxClientOutbound, MuxLink
from v2py.app.mux_endpoint import MuxEndpoint, MuxSubStream
from v2py.app.mux_server import MuxServer
from v2py.app.packet import PacketLink
from v2py.app.policy import PolicyTable, Timeouts
from v2py.app.session import Session
from v2py.common.net import tcp, udp
from v2py.protocol.mux import MuxRole
from v2py.transport.stream import READ_CHUNK_BYTES, Stream

WAIT_S = 10.0
TIMEOUTS = Timeouts(conn_idle=30.0, uplink_only=2.0, downlink_only=2.0, buffer_size=64 * 1024)
POLICY = PolicyTable({0: TIMEOUTS})


class MemoryStream:
    """One end of an in-memory duplex pipe with half-close and a write high-water mark."""

    HIGH_WATER = 256 * 1024

    def __init__(self) -> None:
        self.other: MemoryStream
        self._inbox: collections.deque[bytes] = collections.deque()
        self._inbox_bytes = 0
        self._eof = False
        self._event = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.closed = False

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        while not self._inbox:
            if self._eof or self.closed:
                return b""
            self._event.clear()
            await self._event.wait()
        data = self._inbox.popleft()
        if len(data) > max_bytes:
            self._inbox.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        self._inbox_bytes -= len(data)
        if self._inbox_bytes < self.HIGH_WATER:
            self.other._room.set()
        return data

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.closed or self.other.closed:
            raise ConnectionResetError("closed")
        if not data:
            return
        other = self.other
        other._inbox.append(bytes(data))
        other._inbox_bytes += len(data)
        other._event.set()
        if other._inbox_bytes >= self.HIGH_WATER:
            self._room.clear()

    async def drain(self) -> None:
        await self._room.wait()

    def write_eof(self) -> None:
        self.other._eof = True
        self.other._event.set()

    def close(self) -> None:
        self.closed = True
        self._event.set()
        self.other._eof = True
        self.other._event.set()
        self.other._room.set()

    async def wait_closed(self) -> None:
        return None

    @property
    def peer(self) -> tuple[str, int] | None:
        return ("127.0.0.1", 1)

    @property
    def local(self) -> tuple[str, int] | None:
        return ("127.0.0.1", 2)


def memory_pipe() -> tuple[MemoryStream, MemoryStream]:
    a, b = MemoryStream(), MemoryStream()
    a.other, b.other = b, a
    return a, b


class FakeDispatcher:
    """Serves sub-connections: ``tcp`` handler per destination port; UDP echoes."""

    def __init__(self, tcp_handler: Callable[[Session, Stream], Awaitable[None]]) -> None:
        self.tcp_handler = tcp_handler
        self.sessions: list[Session] = []

    async def dispatch(self, session: Session, stream: Stream) -> None:
        self.sessions.append(session)
        await self.tcp_handler(session, stream)

    async def dispatch_packets(self, session: Session, link: PacketLink) -> None:
        self.sessions.append(session)
        while (data := await link.recv()) is not None:
            link.send(b"echo:" + data)


async def echo(session: Session, stream: Stream) -> None:
    while data := await stream.read():
        stream.write(data)
        await stream.drain()
    stream.write_eof()


class LoopCarrier:
    """The carrying outbound: serves the worker's frames with a v2py mux server."""

    tag = "carrier"

    def __init__(self, dispatcher: FakeDispatcher) -> None:
        self.server = MuxServer(dispatcher, POLICY)
        self.connections = 0
        self.carrier_sessions: list[Session] = []

    async def handle(self, session: Session, stream: Stream) -> None:
        self.connections += 1
        self.carrier_sessions.append(session)
        outer = Session(
            inbound_tag="in",
            source=("10.0.0.9", 999),
            destination=session.destination,
            user_email="u@x",
        )
        await self.server.dispatch(outer, stream)

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        raise AssertionError("the carrier never carries UDP")


async def client_connection(
    client: MuxClientOutbound, dest_port: int = 80
) -> tuple[MemoryStream, asyncio.Task[None]]:
    """An app connection through the mux client: returns the app's end and the task."""
    app, inbound = memory_pipe()
    session = Session(inbound_tag="socks", source=None, destination=tcp("example.com", dest_port))
    task = asyncio.get_running_loop().create_task(client.handle(session, inbound))
    return app, task


async def read_exactly(stream: MemoryStream, size: int) -> bytes:
    parts = []
    got = 0
    while got < size:
        data = await stream.read()
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


async def read_all(stream: MemoryStream) -> bytes:
    parts = []
    while data := await stream.read():
        parts.append(data)
    return b"".join(parts)


def make(handler: Callable[[Session, Stream], Awaitable[None]] = echo, concurrency: int = 8):
    dispatcher = FakeDispatcher(handler)
    carrier = LoopCarrier(dispatcher)
    client = MuxClientOutbound(carrier, concurrency=concurrency, policy=POLICY)
    return dispatcher, carrier, client


async def test_echo_through_mux() -> None:
    dispatcher, carrier, client = make()
    async with asyncio.timeout(WAIT_S):
        app, task = await client_connection(client)
        app.write(b"hello")
        assert await app.read() == b"hello"
        app.write_eof()
        assert await app.read() == b""
        await task
    sub = dispatcher.sessions[0]
    assert sub.destination == tcp("example.com", 80)
    assert (sub.inbound_tag, sub.source, sub.user_email) == ("in", ("10.0.0.9", 999), "u@x")
    assert carrier.carrier_sessions[0].destination == tcp("v1.mux.cool", 9527)
    await client.aclose()


async def test_fifty_sessions_each_way_hashes_checked() -> None:
    size = 256 * 1024
    _, carrier, client = make(concurrency=8)

    async def one(index: int) -> None:
        payload = hashlib.sha256(str(index).encode()).digest() * (size // 32)
        app, task = await client_connection(client, 1000 + index)

        async def send() -> None:
            for start in range(0, size, 16384):
                app.write(payload[start : start + 16384])
                await app.drain()

        # The app half-closes only after the whole echo: over mux its EOF ends the
        # session both ways (4.34), so anything still in flight would be dropped.
        sender = asyncio.create_task(send())
        got = await read_exactly(app, size)
        await sender
        app.write_eof()
        assert await app.read() == b""
        await task
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()

    async with asyncio.timeout(60):
        await asyncio.gather(*(one(i) for i in range(50)))
    assert carrier.connections >= 50 // 8
    await client.aclose()


async def test_workers_packed_up_to_concurrency() -> None:
    gate = asyncio.Event()

    async def held(session: Session, stream: Stream) -> None:
        await gate.wait()
        await echo(session, stream)

    _, carrier, client = make(held, concurrency=2)
    async with asyncio.timeout(WAIT_S):
        conns = [await client_connection(client) for _ in range(3)]
        for app, _ in conns:
            app.write(b"x")
        await asyncio.sleep(0)
        assert len(client.workers) == 2
        assert [w.endpoint.active_sessions for w in client.workers] == [2, 1]
        gate.set()
        for app, task in conns:
            assert await app.read() == b"x"
            app.write_eof()
            await task
    await client.aclose()


async def test_new_connection_after_128_sessions() -> None:
    _, carrier, client = make(concurrency=8)
    ids = []
    async with asyncio.timeout(30):
        for _ in range(131):
            app, task = await client_connection(client)
            app.write(b"a")
            assert await app.read() == b"a"
            app.write_eof()
            await task
            ids.append((client.workers[-1], client.workers[-1].endpoint.total_sessions))
    assert carrier.connections == 2
    assert ids[127][1] == 128 and ids[128][1] == 1 and ids[130][1] == 3
    await client.aclose()


async def test_idle_worker_closes_at_its_tick() -> None:
    _, carrier, client = make()
    client.idle_tick = 0.05
    async with asyncio.timeout(WAIT_S):
        app, task = await client_connection(client)
        app.write(b"a")
        assert await app.read() == b"a"
        app.write_eof()
        await task
        worker = client.workers[0]
        await worker.task  # the carrier's connection ends once the worker closes
    assert worker.closed
    # a new session makes a new worker
    async with asyncio.timeout(WAIT_S):
        app, task = await client_connection(client)
        app.write(b"b")
        assert await app.read() == b"b"
        app.write_eof()
        await task
    assert carrier.connections == 2
    await client.aclose()


async def test_client_half_close_ends_both_directions() -> None:
    """4.34: the app's EOF sends End and closes the session; later replies are dropped."""
    server_saw_eof = asyncio.Event()
    release = asyncio.Event()

    async def late_reply(session: Session, stream: Stream) -> None:
        assert await stream.read() == b"req"
        stream.write(b"resp")
        assert await stream.read() == b""
        server_saw_eof.set()
        await release.wait()
        stream.write(b"after-eof")
        stream.write_eof()

    _, _, client = make(late_reply)
    async with asyncio.timeout(WAIT_S):
        app, task = await client_connection(client)
        app.write(b"req")
        assert await app.read() == b"resp"
        app.write_eof()
        assert await app.read() == b""  # nothing more, at once
        await server_saw_eof.wait()
        release.set()
        await task
    await client.aclose()


async def test_server_end_ends_the_client_read_side() -> None:
    async def closes_first(session: Session, stream: Stream) -> None:
        stream.write(b"bye")
        stream.write_eof()

    _, _, client = make(closes_first)
    async with asyncio.timeout(WAIT_S):
        app, task = await client_connection(client)
        app.write(b"x")
        assert await read_all(app) == b"bye"
        app.write(b"more")  # answered with End by the server; no loop
        app.write_eof()
        await task
    await client.aclose()


async def test_unreachable_target_is_end_with_error() -> None:
    async def refuse(session: Session, stream: Stream) -> None:
        raise ConnectionRefusedError("port 1")

    _, _, client = make(refuse)
    async with asyncio.timeout(WAIT_S):
        app, task = await client_connection(client)
        app.write(b"x")
        with pytest.raises(ConnectionResetError):  # End+E: the inbound resets its client
            await task
    await client.aclose()


async def test_first_payload_wait_then_new_alone() -> None:
    frames: list[bytes] = []
    endpoint = MuxEndpoint(
        MuxRole.CLIENT, emit=frames.append, drain=_nothing, first_payload_wait=0.01
    )
    endpoint.open(tcp("10.1.2.3", 443))
    endpoint.open(tcp("10.1.2.3", 443))  # session 2
    new_1 = bytes.fromhex("000c 0001 01 00 01 01bb 01 0a010203")
    new_2 = bytes.fromhex("000c 0002 01 00 01 01bb 01 0a010203")
    async with asyncio.timeout(WAIT_S):
        while len(b"".join(frames)) < len(new_1) + len(new_2):
            await asyncio.sleep(0.005)
    # both New frames alone; queued in one loop turn they leave in one write
    assert b"".join(frames) == new_1 + new_2


async def _nothing() -> None:
    return None


async def test_stalled_reader_does_not_stall_others_and_memory_is_bounded() -> None:
    """A target that stops reading holds up only its own session until the per-session
    buffer is full; past that the connection pauses (Mux.Cool has no per-session flow
    control) with memory bounded, and resumes when the reader does."""
    stalled = asyncio.Event()
    resume = asyncio.Event()

    async def handler(session: Session, stream: Stream) -> None:
        if session.destination is not None and session.destination.port == 1:
            stalled.set()
            await resume.wait()
        await echo(session, stream)

    _, carrier, client = make(handler, concurrency=8)
    async with asyncio.timeout(30):
        slow_app, slow_task = await client_connection(client, 1)
        slow_app.write(b"s" * (TIMEOUTS.buffer_size // 2))  # within its budget
        await stalled.wait()
        fast_app, fast_task = await client_connection(client, 2)
        payload = bytes(range(256)) * 4096  # 1 MiB
        fast_app.write(payload)
        assert await read_exactly(fast_app, len(payload)) == payload  # not held up
        fast_app.write_eof()
        await fast_task
        # now flood the stalled session: the mux connection pauses, memory stays bounded
        worker = client.workers[0]
        (server_conn,) = carrier.server.connections
        for _ in range(64):
            slow_app.write(b"s" * 65536)
        await asyncio.sleep(0.2)
        assert server_conn.endpoint.paused
        assert server_conn.endpoint.buffered <= TIMEOUTS.buffer_size + 2 * 65536
        resume.set()
        total = TIMEOUTS.buffer_size // 2 + 64 * 65536
        assert len(await read_exactly(slow_app, total)) == total
        slow_app.write_eof()
        await slow_task
        assert not worker.closed
    await client.aclose()


async def test_udp_over_mux() -> None:
    _, _, client = make()
    replies: list[bytes] = []
    got = asyncio.Event()

    def send_back(data: bytes) -> None:
        replies.append(data)
        if len(replies) == 3:
            got.set()

    link = PacketLink(send_back)
    session = Session(inbound_tag="socks", source=None, destination=udp("127.0.0.1", 53))
    async with asyncio.timeout(WAIT_S):
        task = asyncio.create_task(client.handle_packets(session, link))
        # the echo of the 2044-byte datagram (2049 bytes) is dropped by the server
        for data in (b"one", bytes(2044), b"two", bytes(2043)):
            link.push(data)
        await got.wait()
        link.close()
        await task
    assert replies == [b"echo:one", b"echo:two", b"echo:" + bytes(2043)]
    await client.aclose()


async def test_fatal_frame_aborts_all_sessions_with_end_error() -> None:
    ours, theirs = memory_pipe()
    started = asyncio.Event()

    async def wait_forever(session: Session, stream: Stream) -> None:
        started.set()
        with contextlib.suppress(ConnectionResetError):
            await stream.read()
            await stream.read()

    server = MuxServer(FakeDispatcher(wait_forever), POLICY)
    outer = Session(inbound_tag="in", source=None, destination=tcp("v1.mux.cool", 0))
    async with asyncio.timeout(WAIT_S):
        task = asyncio.create_task(server.dispatch(outer, theirs))
        ours.write(bytes.fromhex("000c 0001 01 01 01 0050 01 7f000001 0001") + b"x")
        await started.wait()
        ours.write(bytes.fromhex("0004 0001 09 00"))  # unknown status
        assert await ours.read() == bytes.fromhex("0004 0001 03 02")
        ours.write(b"anything")  # the next write ends it (4.34)
        await task


async def test_non_mux_requests_pass_through() -> None:
    seen: list[Session] = []

    async def record(session: Session, stream: Stream) -> None:
        seen.append(session)

    server = MuxServer(FakeDispatcher(record), POLICY)
    _, theirs = memory_pipe()
    await server.dispatch(Session(inbound_tag="", source=None, destination=tcp("a", 1)), theirs)
    assert seen and seen[0].destination == tcp("a", 1)


async def test_link_eof_aborts_client_sessions() -> None:
    link = MuxLink()
    endpoint = MuxEndpoint(MuxRole.CLIENT, emit=link.push_out, drain=link.wait_out_room)
    link.endpoint = endpoint
    sub = endpoint.open(tcp("a", 1))
    link.write_eof()
    with pytest.raises(ConnectionResetError):
        await sub.read()
    assert endpoint.closed


async def test_end_storm_and_unknown_sessions_do_not_disturb_a_live_one() -> None:
    ours, theirs = memory_pipe()
    server = MuxServer(FakeDispatcher(echo), POLICY)
    outer = Session(inbound_tag="in", source=None, destination=tcp("v1.mux.cool", 0))
    async with asyncio.timeout(WAIT_S):
        task = asyncio.create_task(server.dispatch(outer, theirs))
        ours.write(bytes.fromhex("000c 0001 01 01 01 0050 01 7f000001 0002") + b"hi")
        assert await ours.read() == bytes.fromhex("0004 0001 02 01 0002") + b"hi"
        # 10,000 Ends and KeepAlives for unknown ids: no answer at all (no ping-pong)
        ours.write(bytes.fromhex("0004 0009 03 00 0004 0009 04 00") * 5000)
        # Keep with data for an unknown id: one End back, data discarded
        ours.write(bytes.fromhex("0004 0007 02 01 0001") + b"x")
        assert await ours.read() == bytes.fromhex("0004 0007 03 00")
        # the live session still echoes
        ours.write(bytes.fromhex("0004 0001 02 01 0003") + b"abc")
        assert await ours.read() == bytes.fromhex("0004 0001 02 01 0003") + b"abc"
        ours.write(bytes.fromhex("0004 0001 03 00"))
        assert await ours.read() == bytes.fromhex("0004 0001 03 00")
        ours.write_eof()
        await task


async def test_each_session_is_sniffed_routed_and_logged_like_a_connection() -> None:
    from tests.support.servers import RecordingOutbound
    from v2py.app.dispatcher import Dispatcher
    from v2py.app.proxyman import OutboundManager
    from v2py.app.session import SniffingSettings
    from v2py.protocol.mux import FrameMetadata, MuxStatus, encode_frame

    recorder = RecordingOutbound()
    server = MuxServer(Dispatcher(OutboundManager.of([recorder])), POLICY)
    outer = Session(
        inbound_tag="vmess-in",
        source=("10.0.0.1", 5000),
        destination=tcp("v1.mux.cool", 0),
        user_email="alice@x",
        level=0,
        sniffing=SniffingSettings(enabled=True, dest_override=("http", "tls")),
    )
    ours, theirs = memory_pipe()
    request = b"GET / HTTP/1.1\r\nHost: Sniffed.Example\r\n\r\n"
    async with asyncio.timeout(WAIT_S):
        task = asyncio.create_task(server.dispatch(outer, theirs))
        for sid in (1, 2):
            meta = FrameMetadata(
                session_id=sid, status=MuxStatus.NEW, destination=tcp("93.184.216.34", 80)
            )
            ours.write(encode_frame(meta, request))
        while len(recorder.sessions) < 2:
            await asyncio.sleep(0.01)
        ours.write_eof()
        await task
    assert [s.destination for s in recorder.sessions] == [tcp("sniffed.example", 80)] * 2
    first, second = recorder.sessions
    assert first.id != second.id != outer.id
    assert (first.inbound_tag, first.user_email, first.source) == (
        "vmess-in",
        "alice@x",
        ("10.0.0.1", 5000),
    )


async def test_datagrams_dropped_while_paused_or_oversized() -> None:
    frames: list[bytes] = []
    paused = [False]
    endpoint = MuxEndpoint(
        MuxRole.CLIENT,
        emit=frames.append,
        drain=_nothing,
        write_paused=lambda: paused[0],
        when_writable=lambda cb: cb(None),
    )
    sub = endpoint.open(udp("127.0.0.1", 53))
    sub.write_datagram(b"a")
    sub.write_datagram(bytes(2049))
    paused[0] = True
    sub.write_datagram(b"b")
    paused[0] = False
    sub.write_datagram(b"c")
    assert sub.dropped_datagrams == 2
    await asyncio.sleep(0)  # frames leave at the end of the loop turn
    wire = b"".join(frames)
    assert wire.endswith(bytes.fromhex("0004 0001 02 01 0001") + b"c")
    assert wire.count(b"\x00\x01b") == 0


class _Collect:
    """A push target that keeps what it is given."""

    def __init__(self) -> None:
        self.data = bytearray()

    def pushed_data(self, data: bytes | bytearray) -> None:
        self.data += data

    def pushed_eof(self) -> None:
        pass

    def pushed_error(self, exc: BaseException) -> None:
        raise AssertionError(exc)


async def test_push_keeps_order_when_room_refeeds_at_once() -> None:
    """Room for the feeder may be handed out while a session's held batch is being
    pushed, and the feeder may feed at once (a push-mode layer below flushes
    synchronously): what it feeds must reach the target after the held batch."""
    from v2py.protocol.mux import MuxConnection

    opened: list[MuxSubStream] = []
    endpoint = MuxEndpoint(
        MuxRole.SERVER,
        emit=lambda data: None,
        drain=_nothing,
        on_open=opened.append,
        session_buffer=64,
        connection_buffer=1 << 20,
        write_paused=lambda: False,
        when_writable=lambda callback: callback(None),
    )
    peer = MuxConnection(MuxRole.CLIENT)
    sid = peer.open_session(tcp("example.com", 80))
    peer.send_data(sid, b"a" * 100)  # over the 64-byte session budget: pauses the feeder
    endpoint.feed(peer.data_to_send())
    (sub,) = opened
    assert endpoint.paused
    peer.send_data(sid, b"b" * 10)
    later = peer.data_to_send()
    endpoint.when_room(lambda: endpoint.feed(later))
    target = _Collect()
    sub.start_push(target)
    assert bytes(target.data) == b"a" * 100 + b"b" * 10
