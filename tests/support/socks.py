"""A minimal SOCKS5 client for tests (CONNECT and UDP ASSOCIATE)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct


def _encode_addr(host: str, port: int) -> bytes:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raw = host.encode()
        return b"\x03" + bytes([len(raw)]) + raw + struct.pack(">H", port)
    if ip.version == 4:
        return b"\x01" + ip.packed + struct.pack(">H", port)
    return b"\x04" + ip.packed + struct.pack(">H", port)


async def _read_reply(reader: asyncio.StreamReader) -> tuple[str, int]:
    head = await reader.readexactly(4)
    if head[1] != 0:
        raise ConnectionError(f"socks reply {head[1]}")
    atyp = head[3]
    if atyp == 1:
        host = socket.inet_ntoa(await reader.readexactly(4))
    elif atyp == 4:
        host = socket.inet_ntop(socket.AF_INET6, await reader.readexactly(16))
    else:
        n = (await reader.readexactly(1))[0]
        host = (await reader.readexactly(n)).decode()
    (port,) = struct.unpack(">H", await reader.readexactly(2))
    return host, port


async def socks5_connect(
    proxy_port: int, host: str, port: int, *, proxy_host: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Open a CONNECT tunnel through a no-auth SOCKS5 proxy."""
    reader, writer = await asyncio.open_connection(proxy_host, proxy_port, limit=1 << 20)
    writer.write(b"\x05\x01\x00")
    await writer.drain()
    if await reader.readexactly(2) != b"\x05\x00":
        raise ConnectionError("socks method rejected")
    writer.write(b"\x05\x01\x00" + _encode_addr(host, port))
    await writer.drain()
    await _read_reply(reader)
    return reader, writer


class _UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


async def socks5_udp_roundtrip(
    proxy_port: int, host: str, port: int, payload: bytes, *, timeout: float = 10.0
) -> bytes:
    """UDP ASSOCIATE, send ``payload`` to host:port, return the first reply's data."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    try:
        writer.write(b"\x05\x01\x00")
        await writer.drain()
        assert await reader.readexactly(2) == b"\x05\x00"
        writer.write(b"\x05\x03\x00" + _encode_addr("0.0.0.0", 0))
        await writer.drain()
        relay_host, relay_port = await _read_reply(reader)
        if relay_host in ("0.0.0.0", "::"):
            relay_host = "127.0.0.1"
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(
            _UdpClient, local_addr=("127.0.0.1", 0)
        )
        try:
            packet = b"\x00\x00\x00" + _encode_addr(host, port) + payload
            async with asyncio.timeout(timeout):
                while True:
                    transport.sendto(packet, (relay_host, relay_port))
                    try:
                        async with asyncio.timeout(1.0):
                            reply = await proto.queue.get()
                        break
                    except TimeoutError:
                        continue  # UDP may be dropped while the chain warms up
            # strip RSV(2) FRAG(1) ATYP ADDR PORT
            atyp = reply[3]
            if atyp == 1:
                offset = 4 + 4 + 2
            elif atyp == 4:
                offset = 4 + 16 + 2
            else:
                offset = 4 + 1 + reply[4] + 2
            return reply[offset:]
        finally:
            transport.close()
    finally:
        writer.close()


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


async def start_udp_echo() -> tuple[asyncio.DatagramTransport, int]:
    """A UDP echo server on 127.0.0.1; returns (transport, port)."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=("127.0.0.1", 0))
    return transport, transport.get_extra_info("sockname")[1]


async def socks5_echo_bulk(socks_port: int, echo_port: int, size: int = 1 << 20) -> None:
    """Send ``size`` random bytes through the SOCKS5 proxy to an echo server on
    127.0.0.1 while reading them back; assert the echo by hash."""
    import hashlib
    import os

    reader, writer = await socks5_connect(socks_port, "127.0.0.1", echo_port)
    payload = os.urandom(size)
    try:

        async def send() -> None:
            writer.write(payload)
            await writer.drain()

        sender = asyncio.create_task(send())
        got = await reader.readexactly(size)
        await sender
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    finally:
        writer.close()
