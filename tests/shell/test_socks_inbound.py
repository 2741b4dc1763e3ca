"""SOCKS inbound over loopback: curl, exact bytes, sniffing, policy timeouts, UDP.

The small servers and fakes it uses live in ``tests/support/servers.py``.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from tests.support.servers import (
    BODY,
    TIMEOUT_S,
    HttpOrigin,
    RecordingFreedom,
    RecordingOutbound,
    client_hello,
    freedom,
    policy,
    read_all,
    run_curl,
    serve_inbound,
    socks_connect,
    socks_inbound,
)
from tests.support.socks import socks5_udp_roundtrip, start_udp_echo
from tests.support.v2ray import free_port
from v2py.app.policy import PolicyTable
from v2py.app.session import SniffingSettings
from v2py.common.net import tcp, udp
from v2py.proxy.freedom import FreedomOutbound


@pytest.mark.parametrize(
    "scheme,host",
    [
        ("socks5", "127.0.0.1"),
        ("socks5h", "localhost"),
        ("socks4", "127.0.0.1"),
        ("socks4a", "localhost"),
    ],
)
async def test_curl_through_socks(scheme: str, host: str) -> None:
    async with HttpOrigin() as origin, serve_inbound(socks_inbound(), [freedom()]) as port:
        body = await run_curl(
            "-x", f"{scheme}://127.0.0.1:{port}", f"http://{host}:{origin.port}/x"
        )
    assert hashlib.sha256(body).digest() == hashlib.sha256(BODY).digest()


async def test_curl_with_password() -> None:
    inbound = socks_inbound(auth="password", accounts={"alice": "pw"})
    spy = RecordingFreedom(tag="direct", policy=PolicyTable())
    async with HttpOrigin() as origin, serve_inbound(inbound, [spy]) as port:
        url = f"http://127.0.0.1:{origin.port}/"
        body = await run_curl("-x", f"socks5h://alice:pw@127.0.0.1:{port}", url)
        assert body == BODY
        with pytest.raises(AssertionError):
            await run_curl("-x", f"socks5h://alice:nope@127.0.0.1:{port}", url)
        with pytest.raises(AssertionError):
            await run_curl("-x", f"socks4://127.0.0.1:{port}", url)
    assert [s.user_email for s in spy.sessions] == ["alice"]


# -- exact bytes ----------------------------------------------------------------------


async def test_connect_reply_carries_listen_address_and_port() -> None:
    recorder = RecordingOutbound()
    async with serve_inbound(socks_inbound(), [recorder]) as port:
        reader, writer, reply = await socks_connect(port, b"\x01\x0a\x00\x00\x01\x75\x30")
        assert reply == b"\x05\x00" + b"\x05\x00\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big")
        assert await read_all(reader) == b"recorded"
        writer.close()
    session = recorder.sessions[0]
    assert session.destination == tcp("10.0.0.1", 30000)
    assert session.inbound_tag == "in" and session.level == 0


async def test_password_server_refuses_noauth_client() -> None:
    inbound = socks_inbound(auth="password", accounts={"u": "p"})
    async with serve_inbound(inbound, [RecordingOutbound()]) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x05\x01\x00")
        assert await read_all(reader) == b"\x05\xff"  # then closed
        writer.close()


async def test_bind_and_disabled_udp_get_07() -> None:
    async with serve_inbound(socks_inbound(), [RecordingOutbound()]) as port:
        for cmd in (2, 3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"\x05\x01\x00" + bytes((5, cmd, 0)) + b"\x01" + bytes(6))
            assert await read_all(reader) == b"\x05\x00" + bytes.fromhex("05070001000000000000")
            writer.close()


async def test_pipelined_payload_and_half_close_reach_the_outbound() -> None:
    recorder = RecordingOutbound()
    async with serve_inbound(socks_inbound(), [recorder]) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50early")
        writer.write_eof()
        data = await read_all(reader)
        assert data.endswith(b"recorded")
        writer.close()
    assert recorder.first_bytes == [b"early"]


# -- sniffing -------------------------------------------------------------------------

SNIFF = SniffingSettings(enabled=True, dest_override=("http", "tls"))


@pytest.mark.parametrize(
    "payload",
    [b"GET / HTTP/1.1\r\nHost: Example.TEST:9999\r\n\r\n", client_hello("example.test")],
    ids=["http", "tls"],
)
async def test_sniffing_replaces_the_address_keeps_the_port(payload: bytes) -> None:
    recorder = RecordingOutbound()
    async with serve_inbound(socks_inbound(sniffing=SNIFF), [recorder]) as port:
        # 10.255.255.1 is never dialled: the sniffed domain replaces it.
        reader, writer, _ = await socks_connect(port, b"\x01\x0a\xff\xff\x01\x75\x30")
        writer.write(payload)
        await writer.drain()
        assert await read_all(reader) == b"recorded"
        writer.close()
    assert recorder.destinations == [tcp("example.test", 30000)]
    assert recorder.first_bytes == [payload]  # the sniffed bytes are forwarded intact


async def test_sniffing_disabled_keeps_the_ip() -> None:
    recorder = RecordingOutbound()
    async with serve_inbound(socks_inbound(), [recorder]) as port:
        reader, writer, _ = await socks_connect(port, b"\x01\x0a\xff\xff\x01\x75\x30")
        writer.write(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
        await read_all(reader)
        writer.close()
    assert recorder.destinations == [tcp("10.255.255.1", 30000)]


async def test_sniffed_localhost_is_dialled_by_freedom() -> None:
    # spec 2 [verified]: CONNECT 10.255.255.1:P + "Host: LocalHost:9999" -> tcp:localhost:P
    async with HttpOrigin(b"hello") as origin:
        out = RecordingFreedom(tag="direct", policy=PolicyTable())
        async with serve_inbound(socks_inbound(sniffing=SNIFF), [out]) as port:
            request = b"\x01\x0a\xff\xff\x01" + origin.port.to_bytes(2, "big")
            reader, writer, _ = await socks_connect(port, request)
            writer.write(b"GET / HTTP/1.1\r\nHost: LocalHost:9999\r\n\r\n")
            response = await read_all(reader)
            writer.close()
    assert response.endswith(b"\r\n\r\nhello")
    assert origin.requests[0].startswith(b"GET / HTTP/1.1\r\nHost: LocalHost:9999")


async def test_sniffed_domain_with_freedom_redirect() -> None:
    async with HttpOrigin(b"tls-ish") as origin:
        out = RecordingFreedom(
            tag="direct", policy=PolicyTable(), redirect=("127.0.0.1", origin.port)
        )
        async with serve_inbound(socks_inbound(sniffing=SNIFF), [out]) as port:
            reader, writer, _ = await socks_connect(port, b"\x01\x0a\xff\xff\x01\x01\xbb")
            writer.write(b"GET /r HTTP/1.1\r\nHost: example.test\r\n\r\n")
            response = await read_all(reader)
            writer.close()
    assert out.destinations == [tcp("example.test", 443)]
    assert response.endswith(b"tls-ish")


# -- policy ---------------------------------------------------------------------------


async def test_idle_connection_closed_after_conn_idle(echo_server: tuple[str, int]) -> None:
    table = policy(conn_idle=0.2)
    out = FreedomOutbound(tag="direct", policy=table)
    async with serve_inbound(socks_inbound(policy=table), [out]) as port:
        request = b"\x01\x7f\x00\x00\x01" + echo_server[1].to_bytes(2, "big")
        reader, writer, _ = await socks_connect(port, request)
        writer.write(b"ping")
        assert await reader.readexactly(4) == b"ping"
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await read_all(reader) == b""  # closed by connIdle, not by us
        assert loop.time() - started < 5
        writer.close()


async def test_unfinished_handshake_closed_after_handshake_timeout() -> None:
    recorder = RecordingOutbound()
    async with serve_inbound(socks_inbound(policy=policy(handshake=0.2)), [recorder]) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x05\x01")  # never completes
        assert await read_all(reader) == b""
        writer.close()
    assert recorder.sessions == []


# -- UDP ------------------------------------------------------------------------------


async def test_udp_associate_through_freedom() -> None:
    echo, echo_port = await start_udp_echo()
    port = free_port()
    try:
        inbound = socks_inbound(port, udp=True)
        async with serve_inbound(inbound, [freedom()], port=port):
            got = await socks5_udp_roundtrip(port, "127.0.0.1", echo_port, b"datagram")
    finally:
        echo.close()
    assert got == b"datagram"


class _Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


async def test_udp_reply_header_flows_and_idle_teardown() -> None:
    recorder = RecordingOutbound()
    port = free_port()
    inbound = socks_inbound(port, udp=True, udp_flow_idle=0.2, udp_source_idle=0.4)
    async with serve_inbound(inbound, [recorder], port=port):
        # UDP ASSOCIATE over TCP announces 127.0.0.1:<port> to a loopback client.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x05\x01\x00\x05\x03\x00\x01" + bytes(6))
        reply = await asyncio.wait_for(reader.readexactly(12), TIMEOUT_S)
        assert reply[2:] == b"\x05\x00\x00\x01\x7f\x00\x00\x01" + port.to_bytes(2, "big")
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_datagram_endpoint(
            _Collector, local_addr=("127.0.0.1", 0)
        )
        try:
            header = bytes.fromhex("00000001 0a000001 7530".replace(" ", ""))
            transport.sendto(b"\x00\x00\x01" + header[3:] + b"fragment", ("127.0.0.1", port))
            transport.sendto(header + b"", ("127.0.0.1", port))  # empty: ignored
            transport.sendto(header + b"one", ("127.0.0.1", port))
            async with asyncio.timeout(TIMEOUT_S):
                got = await proto.queue.get()
                # spec 1.4 [verified]: the header is the destination the client asked for
                assert got == header + b"one"
                await recorder.link_closed.wait()  # 0.2 s idle -> flow torn down
            assert recorder.destinations == [udp("10.0.0.1", 30000)]
            assert recorder.sessions[0].sniffing.enabled is False
            stats = inbound.udp_statistics()
            assert stats is not None
            assert (stats.flows, stats.flows_opened, stats.dropped) == (0, 1, 1)  # FRAG != 0
            # A new datagram after teardown opens a new flow.
            recorder.link_closed.clear()
            transport.sendto(header + b"two", ("127.0.0.1", port))
            async with asyncio.timeout(TIMEOUT_S):
                assert await proto.queue.get() == header + b"two"
                await recorder.link_closed.wait()
            assert len(recorder.sessions) == 2
        finally:
            transport.close()
            writer.close()
