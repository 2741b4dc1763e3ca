"""Interop: the ``dns`` outbound behind a dokodemo-door (the usual "dns-out" setup).

The same config runs on the real v2ray and on v2py, and the same queries (UDP and
TCP) must get the same reply bytes: A/AAAA answered by the built-in DNS (static
hosts, a name server's addresses, its NXDOMAIN, an empty answer for the missing
family), other types forwarded to the dokodemo-door's target, redirected by the
outbound's ``settings`` (here over TCP as well), and no reply where the name
server stays silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import dns.message
import dns.rcode
import pytest

from tests.app.test_dns import FakeDnsServer, dns_server
from tests.support.v2py import run_side
from tests.support.v2ray import free_ports_of

pytestmark = pytest.mark.interop

RECORDS = {"remote.test": ["10.9.9.9", "10.9.9.8", "2001:db8::9"], "other.test": ["10.8.8.8"]}
#: (transport, name, type): the questions asked, in this order, on both binaries.
QUESTIONS = [
    ("udp", "hosted.test", "A"),
    ("udp", "hosted.test", "AAAA"),
    ("udp", "HoStEd.test", "A"),
    ("udp", "remote.test", "A"),
    ("udp", "remote.test", "AAAA"),
    ("udp", "missing.test", "A"),
    ("udp", "remote.test", "MX"),
    ("udp", "alias.test", "A"),
    ("udp", "silent.test", "A"),
    ("tcp", "hosted.test", "A"),
    ("tcp", "remote.test", "AAAA"),
    ("tcp", "other.test", "TXT"),
]
NO_REPLY_WAIT_S = 1.5


def config(port: int, fake: int, tcp_fake: int, udp_via_tcp: bool) -> dict[str, Any]:
    override = {"network": "tcp", "port": tcp_fake} if udp_via_tcp else {}
    return {
        "log": {"loglevel": "warning"},
        "dns": {
            "hosts": {"hosted.test": "10.0.0.1", "alias.test": "other.test"},
            "servers": [{"address": "127.0.0.1", "port": fake}],
        },
        "inbounds": [
            {
                "tag": "dns-in",
                "listen": "127.0.0.1",
                "port": port,
                "protocol": "dokodemo-door",
                "settings": {"address": "127.0.0.1", "port": fake, "network": "tcp,udp"},
            }
        ],
        "outbounds": [
            {"tag": "direct", "protocol": "freedom"},
            {"tag": "dns-out", "protocol": "dns", "settings": override},
            {"tag": "dns-tcp", "protocol": "dns", "settings": {"port": tcp_fake}},
        ],
        "routing": {
            "rules": [
                {"type": "field", "inboundTag": ["dns-in"], "network": net, "outboundTag": out}
                for net, out in (("udp", "dns-out"), ("tcp", "dns-tcp"))
            ]
        },
    }


@contextlib.asynccontextmanager
async def tcp_dns_server(udp: FakeDnsServer) -> AsyncIterator[int]:
    """DNS over TCP on a free port, answering as the UDP fake does."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while True:
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                query = await reader.readexactly(size)
                replies: list[bytes] = []
                fake = FakeDnsServer(udp.records, udp.ttl)
                fake.transport = _Collect(replies)  # type: ignore[assignment]
                fake.datagram_received(query, ("127.0.0.1", 0))
                for reply in replies:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


class _Collect:
    def __init__(self, out: list[bytes]) -> None:
        self.out = out

    def sendto(self, data: bytes, addr: object) -> None:
        self.out.append(data)


async def ask_udp(port: int, query: bytes) -> bytes | None:
    loop = asyncio.get_running_loop()
    got: asyncio.Future[bytes] = loop.create_future()

    class Client(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: object) -> None:
            if not got.done():
                got.set_result(data)

    transport, _ = await loop.create_datagram_endpoint(
        Client, remote_addr=("127.0.0.1", port), family=socket.AF_INET
    )
    try:
        for _ in range(3):  # a UDP listener may come up after the TCP one
            transport.sendto(query)
            try:
                async with asyncio.timeout(NO_REPLY_WAIT_S):
                    return await asyncio.shield(got)
            except TimeoutError:
                continue
        return None
    finally:
        transport.close()


async def ask_tcp(port: int, query: bytes) -> bytes | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(struct.pack("!H", len(query)) + query)
        await writer.drain()
        try:
            async with asyncio.timeout(NO_REPLY_WAIT_S * 2):
                (size,) = struct.unpack("!H", await reader.readexactly(2))
                return await reader.readexactly(size)
        except (TimeoutError, asyncio.IncompleteReadError):
            return None
    finally:
        writer.close()


async def replies(kind: str, udp_via_tcp: bool) -> list[bytes | None]:
    async with dns_server(RECORDS) as fake, tcp_dns_server(fake) as tcp_fake:
        fake.nxdomain.add("missing.test")
        fake.silent.add("silent.test")
        port = free_ports_of(1, (socket.SOCK_STREAM, socket.SOCK_DGRAM))[0]
        out: list[bytes | None] = []
        async with run_side(kind, config(port, fake.port, tcp_fake, udp_via_tcp), port):
            async with asyncio.timeout(60):
                for index, (transport, name, rdtype) in enumerate(QUESTIONS):
                    query = dns.message.make_query(name, rdtype, id=0x4000 + index).to_wire()
                    ask = ask_udp if transport == "udp" else ask_tcp
                    out.append(await ask(port, query))
        return out


@pytest.mark.parametrize("udp_via_tcp", [False, True], ids=["as-asked", "udp-forwarded-over-tcp"])
async def test_dns_outbound_replies_match_v2ray(udp_via_tcp: bool) -> None:
    got_v2ray, got_v2py = await asyncio.gather(
        replies("v2ray", udp_via_tcp), replies("v2py", udp_via_tcp)
    )
    for question, theirs, ours in zip(QUESTIONS, got_v2ray, got_v2py, strict=True):
        assert ours == theirs, question
    parsed = {
        q: dns.message.from_wire(r) if r else None for q, r in zip(QUESTIONS, got_v2py, strict=True)
    }
    hosted = parsed[("udp", "hosted.test", "A")]
    assert hosted is not None
    assert [r.to_text() for rrset in hosted.answer for r in rrset] == ["10.0.0.1"]
    assert hosted.answer[0].ttl == 600
    remote = parsed[("udp", "remote.test", "A")]
    assert remote is not None
    assert sorted(r.to_text() for rrset in remote.answer for r in rrset) == ["10.9.9.8", "10.9.9.9"]
    empty = parsed[("udp", "hosted.test", "AAAA")]
    assert empty is not None and empty.rcode() == dns.rcode.NOERROR and not empty.answer
    missing = parsed[("udp", "missing.test", "A")]
    assert missing is not None and missing.rcode() == dns.rcode.NXDOMAIN
    assert parsed[("tcp", "remote.test", "AAAA")] is not None
    assert parsed[("udp", "remote.test", "MX")] is not None  # forwarded, answered by the fake
    assert parsed[("udp", "silent.test", "A")] is None
