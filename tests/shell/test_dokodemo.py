"""dokodemo-door inbound over loopback (TCP and UDP to a fixed destination)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.servers import (
    TIMEOUT_S,
    RecordingOutbound,
    freedom,
    read_all,
    serve_inbound,
)
from tests.support.socks import start_udp_echo
from tests.support.v2ray import free_port
from v2py.app.policy import PolicyTable
from v2py.app.session import SniffingSettings
from v2py.common.net import tcp, udp
from v2py.proxy.dokodemo import DokodemoInbound


def dokodemo(**kwargs: Any) -> DokodemoInbound:
    kwargs.setdefault("policy", PolicyTable())
    kwargs.setdefault("sniffing", SniffingSettings())
    kwargs.setdefault("listen", "127.0.0.1")
    kwargs.setdefault("port", 0)
    return DokodemoInbound(tag="door", **kwargs)


async def test_tcp_to_fixed_destination(echo_server: tuple[str, int]) -> None:
    inbound = dokodemo(address="127.0.0.1", dest_port=echo_server[1])
    async with serve_inbound(inbound, [freedom()]) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"through the door")
        writer.write_eof()
        assert await read_all(reader) == b"through the door"
        writer.close()


async def test_sniffing_on_dokodemo() -> None:
    recorder = RecordingOutbound()
    sniffing = SniffingSettings(enabled=True, dest_override=("http",))
    inbound = dokodemo(address="10.255.255.1", dest_port=80, sniffing=sniffing, user_level=0)
    async with serve_inbound(inbound, [recorder]) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: door.test\r\n\r\n")
        assert await read_all(reader) == b"recorded"
        writer.close()
    assert recorder.destinations == [tcp("door.test", 80)]


async def test_tcp_disabled_closes() -> None:
    recorder = RecordingOutbound()
    inbound = dokodemo(address="127.0.0.1", dest_port=1, networks=("udp",))
    async with serve_inbound(inbound, [recorder]) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await read_all(reader) == b""
        writer.close()
    assert recorder.sessions == []


class _Client(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


async def test_udp_to_fixed_destination() -> None:
    echo, echo_port = await start_udp_echo()
    port = free_port()
    inbound = dokodemo(port=port, address="127.0.0.1", dest_port=echo_port, networks=("tcp", "UDP"))
    loop = asyncio.get_running_loop()
    try:
        async with serve_inbound(inbound, [freedom()], port=port):
            transport, proto = await loop.create_datagram_endpoint(
                _Client, local_addr=("127.0.0.1", 0)
            )
            try:
                async with asyncio.timeout(TIMEOUT_S):
                    transport.sendto(b"raw datagram", ("127.0.0.1", port))
                    assert await proto.queue.get() == b"raw datagram"
            finally:
                transport.close()
    finally:
        echo.close()


async def test_udp_flow_idle() -> None:
    recorder = RecordingOutbound()
    port = free_port()
    inbound = dokodemo(port=port, address="10.0.0.9", dest_port=53, networks=("udp",), udp_idle=0.2)
    loop = asyncio.get_running_loop()
    async with serve_inbound(inbound, [recorder], port=port):
        transport, proto = await loop.create_datagram_endpoint(_Client, local_addr=("127.0.0.1", 0))
        try:
            async with asyncio.timeout(TIMEOUT_S):
                transport.sendto(b"q", ("127.0.0.1", port))
                assert await proto.queue.get() == b"q"
                await recorder.link_closed.wait()
        finally:
            transport.close()
    assert recorder.destinations == [udp("10.0.0.9", 53)]


def test_unknown_network() -> None:
    with pytest.raises(ValueError):
        dokodemo(address="a", dest_port=1, networks=("sctp",))
