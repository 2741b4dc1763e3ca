"""mKCP listener admission: forged pings (public packet check without ``seed``) cannot
lock real clients out of the bounded session table (see ``KcpListener``'s docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from v2py.protocol.mkcp.packet import PacketCodec
from v2py.protocol.mkcp.segment import (
    CommandSegment,
    DataSegment,
    KcpCommand,
    decode_segments,
    encode_segment,
)
from v2py.protocol.mkcp.settings import KcpSettings
from v2py.transport import mkcp
from v2py.transport.mkcp import KcpListener, KcpStream, dial_kcp, listen_kcp

log = logging.getLogger(__name__)
SETTINGS = KcpSettings()
#: Forged datagrams at most (the flood is bounded in count as well as time).
FLOOD_LIMIT = 60_000
CODEC = PacketCodec(SETTINGS, random.Random(7).randbytes)


def forged_ping(conv: int) -> bytes:
    """The 22-byte datagram anyone can make without ``seed``: a PING for ``conv``."""
    seg = CommandSegment(
        conv=conv, command=KcpCommand.PING, sending_next=0, receiving_next=0, peer_rto=100
    )
    return CODEC.seal(encode_segment(seg))


def data_segment(conv: int, payload: bytes) -> bytes:
    seg = DataSegment(conv=conv, timestamp=0, number=0, sending_next=0, payload=payload)
    return CODEC.seal(encode_segment(seg))


async def _echo(stream: KcpStream) -> None:
    while data := await stream.read():
        stream.write(data)
        await stream.drain()


@contextlib.asynccontextmanager
async def _listener(
    handler: mkcp.Handler = _echo, *, max_sessions: int = 1024, max_half_open: int | None = None
) -> AsyncIterator[KcpListener]:
    listener = await listen_kcp(
        "127.0.0.1",
        0,
        SETTINGS,
        handler,
        max_sessions=max_sessions,
        max_half_open=max_half_open,
    )
    try:
        yield listener
    finally:
        listener.close()
        async with asyncio.timeout(5):
            await listener.wait_closed()


async def _until(predicate: Callable[[], bool], what: str) -> None:
    """Wait (bounded) until ``predicate()``; ``what`` names it in a timeout."""
    async with asyncio.timeout(5):
        while not predicate():
            await asyncio.sleep(0.005)


async def _echo_through(port: int, size: int) -> None:
    payload = random.Random(size).randbytes(size)
    stream = await dial_kcp("127.0.0.1", port, SETTINGS)
    try:
        got = bytearray()
        stream.write(payload)
        while len(got) < size:
            chunk = await stream.read()
            assert chunk, "EOF before the echo completed"
            got += chunk
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    finally:
        stream.abort()
        await stream.wait_closed()


async def test_forged_ping_flood_does_not_lock_out_real_clients() -> None:
    """Thousands of forged pings for fresh conv ids from 64 source ports (default
    1,024-session table): new clients still connect and move data, established ones
    keep theirs, memory stays bounded, and nothing is reflected at the forged peers."""
    sockets = []
    for _ in range(64):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setblocking(False)
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    stop = asyncio.Event()
    sent = 0
    async with _listener() as listener:
        port = listener.address[1]
        peak = 0

        async def flood() -> None:
            nonlocal sent, peak
            conv = 0
            while not stop.is_set() and sent < FLOOD_LIMIT:
                for s in sockets:
                    for _ in range(4):
                        conv = (conv + 1) & 0xFFFF
                        with contextlib.suppress(BlockingIOError):
                            s.sendto(forged_ping(conv), ("127.0.0.1", port))
                            sent += 1
                peak = max(peak, listener.session_count)
                await asyncio.sleep(0)

        try:
            # An established session from before the flood must survive it.
            early = await dial_kcp("127.0.0.1", port, SETTINGS)
            early.write(b"hello")
            async with asyncio.timeout(5):
                assert await early.read() == b"hello"
            flood_task = asyncio.create_task(flood())
            await _until(lambda: sent > 3000, "flood under way")
            async with asyncio.timeout(60):
                for size in (1, 16 * 1024, 64 * 1024):
                    await _echo_through(port, size)
                early.write(b"still here")
                assert await early.read() == b"still here"
        finally:
            stop.set()
            with contextlib.suppress(NameError):
                await flood_task
            for s in sockets:
                s.close()
        log.warning(
            "mKCP forged-ping flood: %d sent, %d half-open dropped, peak table %d",
            sent,
            listener.evicted_half_open,
            peak,
        )
        assert sent > 3000
        assert listener.refused_full == 0
        assert listener.evicted_half_open > 1000
        assert peak <= mkcp.DEFAULT_MAX_SESSIONS
        assert listener.half_open_count <= mkcp.DEFAULT_MAX_SESSIONS // 2
        early.abort()
        await early.wait_closed()


async def test_dropped_half_open_client_resumes_seamlessly() -> None:
    """A real peer whose ping-only session was dropped gets no TERMINATE, and its first
    DATA opens a fresh session that delivers it (nothing was numbered yet)."""
    async with _listener(max_sessions=4, max_half_open=2) as listener:
        loop = asyncio.get_running_loop()
        with (
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as real,
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forger,
        ):
            real.setblocking(False)
            real.sendto(forged_ping(5), listener.address)
            await _until(lambda: listener.session_count == 1, "real session")
            for conv in range(100, 110):
                forger.sendto(forged_ping(conv), listener.address)
            await _until(lambda: listener.evicted_half_open >= 9, "drops")
            assert listener.session_count <= 2
            assert listener.refused_full == 0
            real.sendto(data_segment(5, b"request"), listener.address)
            async with asyncio.timeout(5):
                while True:
                    data = await loop.sock_recv(real, 2048)
                    payload = CODEC.open(data)
                    assert payload is not None
                    segs, _ = decode_segments(payload)
                    # The dropped session never said TERMINATE to the real peer.
                    assert not any(
                        isinstance(seg, CommandSegment) and seg.command == KcpCommand.TERMINATE
                        for seg in segs
                    )
                    echoed = [s for s in segs if isinstance(s, DataSegment)]
                    if echoed:
                        assert echoed[0].payload == b"request"
                        assert echoed[0].number == 0
                        break
            assert (listener.address[0], real.getsockname()[1]) in {
                st.peer for st in listener.sessions()
            }


async def test_table_full_of_half_open_sessions_admits_a_data_client() -> None:
    async with _listener(max_sessions=8, max_half_open=8) as listener:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forger:
            for conv in range(1, 9):
                forger.sendto(forged_ping(conv), listener.address)
            await _until(lambda: listener.session_count == 8, "table full")
            async with asyncio.timeout(10):
                await _echo_through(listener.address[1], 4096)
        assert listener.refused_full == 0
        assert listener.evicted_half_open >= 1


async def test_half_open_sessions_time_out_at_the_next_admission(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mkcp, "HALF_OPEN_TIMEOUT_S", 0.0)
    async with _listener() as listener:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as forger:
            forger.sendto(forged_ping(1), listener.address)
            await _until(lambda: listener.session_count == 1, "first")
            forger.sendto(forged_ping(2), listener.address)
            await _until(lambda: listener.evicted_half_open == 1, "timed out")
        assert listener.session_count == 1


async def test_session_whose_application_wrote_first_is_not_half_open() -> None:
    """Server-first protocols: a handler that writes before the peer sent DATA makes a
    full session, which later pings do not drop."""

    async def banner(stream: KcpStream) -> None:
        with contextlib.suppress(ConnectionResetError):  # dropped before it ran
            stream.write(b"220 ready\r\n")
            await _echo(stream)

    async with _listener(banner, max_sessions=4, max_half_open=1) as listener:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.sendto(forged_ping(1), listener.address)
            await _until(lambda: listener.session_count == 1, "first")
            await _until(lambda: listener.half_open_count == 0, "banner written")
            for conv in (2, 3, 4):
                peer.sendto(forged_ping(conv), listener.address)
            await _until(lambda: listener.evicted_half_open == 2, "pings dropped")
            convs = {st.connection.conv for st in listener.sessions()}
        assert convs == {1, 4}
