"""app/chain.py: the pipe pair behind proxySettings and the ChainTransport dialing
through another outbound (fakes; no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from v2py.app.chain import ChainTransport, stream_pair
from v2py.app.packet import PacketLink
from v2py.app.session import Session
from v2py.common.net import Network
from v2py.transport.stream import Stream

T = 2.0


async def test_pipe_carries_bytes_eof_and_half_close() -> None:
    a, b = stream_pair()
    async with asyncio.timeout(T):
        a.write(b"hello ")
        a.write(b"world")
        a.write_eof()
        assert await b.read(3) == b"hel"
        assert await b.read() == b"lo "
        assert await b.read() == b"world"
        assert await b.read() == b""
        b.write(b"back")  # the other direction still works after a half-close
        await b.drain()
        assert await a.read() == b"back"


async def test_close_ends_the_peer_and_fails_its_drain() -> None:
    a, b = stream_pair()
    async with asyncio.timeout(T):
        a.write(b"last")
        a.close()
        assert await b.read() == b"last"
        assert await b.read() == b""
        b.write(b"lost")
        with pytest.raises(ConnectionResetError):
            await b.drain()
        await a.wait_closed()


async def test_abort_makes_the_peer_read_fail() -> None:
    a, b = stream_pair()
    async with asyncio.timeout(T):
        a.write(b"dropped")
        a.abort(ConnectionResetError("boom"))
        with pytest.raises(ConnectionResetError, match="boom"):
            await b.read()


async def test_backpressure() -> None:
    a, b = stream_pair(limit=10)
    async with asyncio.timeout(T):
        a.write(b"x" * 25)
        drain = asyncio.create_task(a.drain())
        await asyncio.sleep(0)
        assert not drain.done()
        assert await b.read(20) == b"x" * 20
        await drain


class _Echo:
    """An outbound that echoes (TCP) or answers each datagram (UDP), recording sessions."""

    tag = "hop"

    def __init__(self, fail: bool = False) -> None:
        self.sessions: list[Session] = []
        self.fail = fail

    async def handle(self, session: Session, stream: Stream) -> None:
        self.sessions.append(session)
        if self.fail:
            raise ConnectionRefusedError("upstream refused")
        while data := await stream.read():
            stream.write(data)
            await stream.drain()
        stream.write_eof()

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        self.sessions.append(session)
        while (data := await link.recv()) is not None:
            link.send(data.upper())


async def test_dial_dispatches_to_the_tagged_outbound() -> None:
    hop = _Echo()
    chain = ChainTransport("hop", {"hop": hop}.get)
    async with asyncio.timeout(T):
        stream = await chain.dial("example.com", 443)
        stream.write(b"ping")
        stream.write_eof()
        assert await stream.read() == b"ping"
        assert await stream.read() == b""
        stream.close()
        await chain.aclose()
    (session,) = hop.sessions
    assert session.destination is not None
    assert (session.destination.network, session.destination.address) == (
        Network.TCP,
        "example.com",
    )
    assert session.destination.port == 443


async def test_a_failing_hop_resets_the_stream() -> None:
    chain = ChainTransport("hop", {"hop": _Echo(fail=True)}.get)
    async with asyncio.timeout(T):
        stream = await chain.dial("1.2.3.4", 80)
        with pytest.raises(ConnectionResetError, match="upstream refused"):
            await stream.read()
        await chain.aclose()


async def test_a_missing_tag_fails_closed() -> None:
    chain = ChainTransport("gone", {}.get)
    with pytest.raises(ConnectionRefusedError):
        await chain.dial("1.2.3.4", 80)
    with pytest.raises(ConnectionRefusedError):
        await chain.open_packets("1.2.3.4", 53)


async def test_packets_through_the_chain() -> None:
    hop = _Echo()
    chain = ChainTransport("hop", {"hop": hop}.get)
    async with asyncio.timeout(T):
        channel = await chain.open_packets("10.0.0.1", 53)
        channel.send(b"query")
        assert await channel.recv() == b"QUERY"
        channel.close()
        assert await channel.recv() is None
        await chain.aclose()
    assert hop.sessions[0].destination is not None
    assert hop.sessions[0].destination.network is Network.UDP


async def test_aclose_cancels_running_sessions() -> None:
    hop = _Echo()
    chain = ChainTransport("hop", {"hop": hop}.get)
    async with asyncio.timeout(T):
        stream = await chain.dial("example.com", 80)
        await asyncio.sleep(0)
        await chain.aclose()
        with pytest.raises(ConnectionResetError):
            await stream.read()
