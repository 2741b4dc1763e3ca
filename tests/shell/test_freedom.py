"""Freedom and blackhole outbounds (docs/spec/socks-sniffing-freedom.md section 3)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.support.servers import TIMEOUT_S, policy
from tests.support.v2ray import free_port
from v2py.app.packet import PacketLink
from v2py.app.policy import PolicyTable, Timeouts
from v2py.app.session import Session
from v2py.common.net import tcp, udp
from v2py.proxy.blackhole import HTTP_403_RESPONSE, BlackholeOutbound
from v2py.proxy.freedom import (
    DomainStrategy,
    FreedomOutbound,
)
from v2py.transport.tcp import TcpStream, listen_tcp


def test_redirect_target() -> None:
    out = FreedomOutbound(tag="x", redirect=(None, 9), policy=PolicyTable())
    assert out.target(tcp("example.test", 80)) == tcp("example.test", 9)
    out = FreedomOutbound(tag="x", redirect=("10.0.0.2", None), policy=PolicyTable())
    assert out.target(udp("example.test", 53)) == udp("10.0.0.2", 53)


class _PipeEnd:
    """In-memory client side handed to an outbound (a Stream)."""

    def __init__(self, data: bytes, *, end: bool = True) -> None:
        self._chunks = ([data] if data else []) + ([b""] if end else [])
        self.written = bytearray()
        self.eof = asyncio.Event()
        self._hold = asyncio.Event()

    async def read(self, max_bytes: int = 65536) -> bytes:
        if self._chunks:
            return self._chunks.pop(0)
        await self._hold.wait()  # a client that never sends and never ends
        return b""

    def release(self) -> None:
        self._hold.set()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    async def drain(self) -> None:
        return None

    def write_eof(self) -> None:
        self.eof.set()
        self.release()

    def close(self) -> None:
        self.release()

    async def wait_closed(self) -> None:
        return None

    @property
    def peer(self) -> tuple[str, int] | None:
        return None

    @property
    def local(self) -> tuple[str, int] | None:
        return None


def _session(dest: object) -> Session:
    return Session(inbound_tag="t", source=("127.0.0.1", 1), destination=dest)  # type: ignore[arg-type]


@pytest.mark.parametrize("strategy", ["AsIs", "UseIP", "UseIPv4"])
async def test_tcp_relay_with_domain_strategy(strategy: str, echo_server: tuple[str, int]) -> None:
    out = FreedomOutbound(tag="d", domain_strategy=DomainStrategy(strategy), policy=PolicyTable())
    client = _PipeEnd(b"hello freedom")
    async with asyncio.timeout(TIMEOUT_S):
        await out.handle(_session(tcp("localhost", echo_server[1])), client)
    assert bytes(client.written) == b"hello freedom"


async def test_dial_retries_until_the_server_appears() -> None:
    port = free_port()
    out = FreedomOutbound(tag="d", policy=PolicyTable(), dial_delays=(0, 0.05, 0.1, 0.2, 0.4))

    async def echo_once(stream: TcpStream) -> None:
        stream.write(await stream.read())

    async def start_later() -> object:
        await asyncio.sleep(0.1)
        return await listen_tcp("127.0.0.1", port, echo_once)

    client = _PipeEnd(b"late")
    async with asyncio.timeout(TIMEOUT_S):
        starter = asyncio.create_task(start_later())
        await out.handle(_session(tcp("127.0.0.1", port)), client)
        listener = await starter
    listener.close()  # type: ignore[attr-defined]
    assert bytes(client.written) == b"late"


async def test_each_attempt_resolves_again_and_may_pick_another_address(
    echo_server: tuple[str, int],
) -> None:
    """4.34's retry loop resolves the domain on every attempt (UseIP*): an address that
    refuses is not dialled five times when the name has another."""
    import random

    lookups: list[str] = []

    class TwoAddresses:
        async def lookup_ip(
            self, domain: str, *, ipv4: bool = True, ipv6: bool = True
        ) -> tuple[bytes, ...]:
            lookups.append(domain)
            return (bytes([127, 0, 0, 1]), bytes([127, 0, 0, 2]))

    class DeadFirst(random.Random):
        picks = iter([1, 0])

        def choice(self, seq: object) -> object:  # type: ignore[override]
            return seq[next(self.picks)]  # type: ignore[index]

    dead_port = echo_server[1]  # 127.0.0.2 listens on nothing there: refused
    out = FreedomOutbound(
        tag="d",
        domain_strategy=DomainStrategy("UseIPv4"),
        policy=PolicyTable(),
        dial_delays=(0, 0, 0),
        rng=DeadFirst(),
        resolver=TwoAddresses(),
    )
    client = _PipeEnd(b"second try")
    async with asyncio.timeout(TIMEOUT_S):
        await out.handle(_session(tcp("two.test", dead_port)), client)
    assert bytes(client.written) == b"second try"
    assert lookups == ["two.test", "two.test"]


async def test_dial_gives_up_after_all_attempts() -> None:
    out = FreedomOutbound(tag="d", policy=PolicyTable(), dial_delays=(0, 0, 0))
    with pytest.raises(OSError):
        async with asyncio.timeout(TIMEOUT_S):
            await out.handle(_session(tcp("127.0.0.1", free_port())), _PipeEnd(b"x"))


async def test_tcp_idle_timeout(echo_server: tuple[str, int]) -> None:
    out = FreedomOutbound(tag="d", policy=policy(conn_idle=0.1))
    client = _PipeEnd(b"", end=False)  # sends nothing and never ends
    async with asyncio.timeout(TIMEOUT_S):
        await out.handle(_session(tcp("127.0.0.1", echo_server[1])), client)


@pytest.mark.parametrize(("inbound_level", "user_level"), [(0, 1), (1, 0)])
async def test_tcp_idle_timeout_is_the_shorter_of_the_inbounds_and_freedoms_level(
    inbound_level: int, user_level: int, echo_server: tuple[str, int]
) -> None:
    # 4.34 times the inbound at its level and freedom at userLevel; either one ends it.
    table = PolicyTable({0: Timeouts(conn_idle=60.0), 1: Timeouts(conn_idle=0.1)})
    out = FreedomOutbound(tag="d", policy=table, user_level=user_level)
    session = _session(tcp("127.0.0.1", echo_server[1]))
    session.level = inbound_level
    async with asyncio.timeout(TIMEOUT_S):
        await out.handle(session, _PipeEnd(b"", end=False))


class _UdpServer(asyncio.DatagramProtocol):
    """Echoes; ``big`` requests get a 3000-byte answer."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        reply = bytes(range(256)) * 12 if data == b"big" else data
        self.transport.sendto(reply[:3000], addr)  # type: ignore[attr-defined]


@contextlib.asynccontextmanager
async def udp_server():  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_UdpServer, local_addr=("127.0.0.1", 0))
    try:
        yield transport.get_extra_info("sockname")[1]
    finally:
        transport.close()


async def test_udp_roundtrip_truncation_and_link_close() -> None:
    replies: asyncio.Queue[bytes] = asyncio.Queue()
    link = PacketLink(replies.put_nowait)
    out = FreedomOutbound(tag="d", policy=PolicyTable())
    async with udp_server() as port:
        task = asyncio.create_task(out.handle_packets(_session(udp("127.0.0.1", port)), link))
        async with asyncio.timeout(TIMEOUT_S):
            link.push(b"one")
            assert await replies.get() == b"one"
            link.push(b"big")
            assert len(await replies.get()) == 2048  # 4.34 reads at most 2048 bytes
            link.close()
            await task


async def test_udp_idle_teardown() -> None:
    link = PacketLink(lambda data: None)
    out = FreedomOutbound(tag="d", policy=policy(conn_idle=0.1))
    async with udp_server() as port, asyncio.timeout(TIMEOUT_S):
        link.push(b"x")
        await out.handle_packets(_session(udp("127.0.0.1", port)), link)  # returns by itself
    assert not link.closed


# -- blackhole ------------------------------------------------------------------------


async def test_blackhole_none_and_http(echo_server: tuple[str, int]) -> None:
    client = _PipeEnd(b"GET / HTTP/1.1\r\n\r\n")
    await BlackholeOutbound(tag="b").handle(_session(tcp("a", 1)), client)
    assert client.written == b""
    client = _PipeEnd(b"")
    await BlackholeOutbound(tag="b", response="HTTP").handle(_session(tcp("a", 1)), client)
    assert bytes(client.written) == HTTP_403_RESPONSE
    with pytest.raises(ValueError):
        BlackholeOutbound(tag="b", response="teapot")


async def test_blackhole_udp_drops_until_closed() -> None:
    sent: list[bytes] = []
    link = PacketLink(sent.append)
    task = asyncio.create_task(
        BlackholeOutbound(tag="b").handle_packets(_session(udp("a", 1)), link)
    )
    link.push(b"a")
    link.push(b"b")
    link.close()
    async with asyncio.timeout(TIMEOUT_S):
        await task
    assert sent == []
