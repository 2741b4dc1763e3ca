"""``streamSettings.sockopt`` and ``sendThrough`` on loopback sockets: which options a
listener and a dialled socket carry (as 4.34's ``applyInbound/OutboundSocketOptions``
set them), the local address a dial binds, and the pure parsers of original
destinations. SO_MARK and IP_TRANSPARENT need CAP_NET_ADMIN (root)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
from collections.abc import AsyncIterator

import pytest

from tests.support.ports import free_ports_of
from tests.support.socks import socks5_connect, socks5_udp_roundtrip
from tests.support.v2py import run_v2py
from v2py.build import socket_options
from v2py.config.load import load_config
from v2py.transport import TcpTransport
from v2py.transport.sockopt import (
    IP_ORIGDSTADDR,
    IP_TRANSPARENT,
    IPV6_ORIGDSTADDR,
    SO_MARK,
    SOL_IP,
    SOL_IPV6,
    SOL_TCP,
    TCP_FASTOPEN,
    TCP_FASTOPEN_CONNECT,
    SocketOptions,
    TproxyMode,
    original_destination_of,
    parse_original_destination,
    unsupported_reason,
)
from v2py.transport.tcp import TcpListener, TcpStream, dial_tcp

STEP_S = 5.0
SOURCE_IP = "127.0.0.2"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="SO_MARK / IP_TRANSPARENT need root")


def _stream_config(sockopt: object) -> object:
    text = json.dumps(
        {"inbounds": [{"port": 1, "protocol": "socks", "streamSettings": {"sockopt": sockopt}}]}
    )
    return load_config([("t.json", text)], {}).config.inbounds[0].stream


# -- config -> options ------------------------------------------------------


def test_options_from_config_as_4_34_builds_them() -> None:
    assert socket_options(_stream_config({})) is None  # type: ignore[arg-type]
    assert socket_options(_stream_config({"tproxy": "off", "mark": 0})) is None  # type: ignore[arg-type]
    assert socket_options(_stream_config({"mark": 255, "tcpFastOpen": False})) == SocketOptions(  # type: ignore[arg-type]
        mark=255, tcp_fast_open=False
    )
    assert socket_options(_stream_config({"tproxy": "TProxy"})) == SocketOptions(  # type: ignore[arg-type]
        tproxy=TproxyMode.TPROXY
    )
    # followRedirect: "redirect" unless "tproxy" is set, and the original destination.
    assert socket_options(_stream_config({}), follow_redirect=True) == SocketOptions(  # type: ignore[arg-type]
        tproxy=TproxyMode.REDIRECT, receive_original_destination=True
    )
    assert socket_options(_stream_config({"tproxy": "tproxy"}), follow_redirect=True) == (  # type: ignore[arg-type]
        SocketOptions(tproxy=TproxyMode.TPROXY, receive_original_destination=True)
    )


def test_other_systems_are_refused_with_a_reason() -> None:
    assert unsupported_reason(SocketOptions(), "darwin") is None
    assert unsupported_reason(SocketOptions(mark=1), "linux") is None
    reason = unsupported_reason(SocketOptions(mark=1), "darwin")
    assert reason is not None and "Linux" in reason and "\n" not in reason


# -- pure parsers -------------------------------------------------------------


def test_original_destination_from_control_messages() -> None:
    v4 = struct.pack("!HH4s8x", socket.AF_INET, 53, socket.inet_aton("10.1.2.3"))
    v6 = struct.pack(
        "!HHI16sI", socket.AF_INET6, 443, 0, socket.inet_pton(socket.AF_INET6, "fd00::1"), 0
    )
    assert parse_original_destination([(SOL_IP, IP_ORIGDSTADDR, v4)]) == ("10.1.2.3", 53)
    assert parse_original_destination([(SOL_IPV6, IPV6_ORIGDSTADDR, v6)]) == ("fd00::1", 443)
    assert parse_original_destination([(SOL_IP, 99, v4)]) is None
    assert parse_original_destination([]) is None
    assert parse_original_destination([(SOL_IP, IP_ORIGDSTADDR, v4[:5])]) is None  # truncated


# -- listeners and dials ------------------------------------------------------


@pytest.fixture
async def sink() -> AsyncIterator[tuple[TcpListener, list[TcpStream]]]:
    accepted: list[TcpStream] = []
    done = asyncio.Event()

    async def handler(stream: TcpStream) -> None:
        accepted.append(stream)
        await done.wait()

    listener = TcpListener(handler)
    await listener.start("127.0.0.1", 0)
    yield listener, accepted
    done.set()
    listener.close()


@needs_root
async def test_listener_carries_mark_fast_open_and_transparent() -> None:
    async def handler(stream: object) -> None:
        return None

    options = SocketOptions(mark=255, tcp_fast_open=True, tproxy=TproxyMode.TPROXY)
    listener = await TcpTransport(options).listen("127.0.0.1", 0, handler)
    assert isinstance(listener, TcpListener)
    try:
        (sock,) = listener.sockets
        assert sock.getsockopt(socket.SOL_SOCKET, SO_MARK) == 255
        assert sock.getsockopt(SOL_TCP, TCP_FASTOPEN) == 1
        assert sock.getsockopt(SOL_IP, IP_TRANSPARENT) == 1
    finally:
        listener.close()


async def test_listener_without_options_is_untouched() -> None:
    async def handler(stream: object) -> None:
        return None

    listener = await TcpTransport().listen("127.0.0.1", 0, handler)
    assert isinstance(listener, TcpListener)
    try:
        (sock,) = listener.sockets
        assert sock.getsockopt(SOL_TCP, TCP_FASTOPEN) == 0
        assert sock.getsockopt(SOL_IP, IP_TRANSPARENT) == 0
    finally:
        listener.close()


@needs_root
async def test_dial_carries_mark_and_fast_open_connect(
    sink: tuple[TcpListener, list[TcpStream]],
) -> None:
    listener, _ = sink
    options = SocketOptions(mark=7, tcp_fast_open=False)
    async with asyncio.timeout(STEP_S):
        stream = await dial_tcp("127.0.0.1", listener.port, options=options)
    try:
        sock = stream.raw_socket()
        assert sock is not None
        assert sock.getsockopt(socket.SOL_SOCKET, SO_MARK) == 7
        assert sock.getsockopt(SOL_TCP, TCP_FASTOPEN_CONNECT) == 0
        assert sock.getsockopt(SOL_IP, IP_TRANSPARENT) == 0
    finally:
        stream.close()


async def test_dial_binds_send_through(sink: tuple[TcpListener, list[TcpStream]]) -> None:
    listener, accepted = sink
    async with asyncio.timeout(STEP_S):
        stream = await TcpTransport(source=SOURCE_IP).dial("127.0.0.1", listener.port)
        while not accepted:
            await asyncio.sleep(0.01)
    try:
        assert stream.local is not None and stream.local[0] == SOURCE_IP
        assert accepted[0].peer is not None and accepted[0].peer[0] == SOURCE_IP
    finally:
        stream.close()


async def test_dial_with_send_through_of_another_family_fails() -> None:
    with pytest.raises(OSError, match="family"):
        async with asyncio.timeout(STEP_S):
            await dial_tcp("127.0.0.1", 9, source="::1")


async def test_no_original_destination_without_nat(
    sink: tuple[TcpListener, list[TcpStream]],
) -> None:
    listener, accepted = sink
    async with asyncio.timeout(STEP_S):
        stream = await dial_tcp("127.0.0.1", listener.port)
        while not accepted:
            await asyncio.sleep(0.01)
    try:
        sock = accepted[0].raw_socket()
        assert sock is not None
        # No REDIRECT rule: SO_ORIGINAL_DST fails (logged), the door uses its address.
        assert original_destination_of(sock, TproxyMode.REDIRECT) is None
        # TPROXY mode reads the local address: here the listener's own.
        assert original_destination_of(sock, TproxyMode.TPROXY) == ("127.0.0.1", listener.port)
        assert original_destination_of(sock, TproxyMode.OFF) is None
    finally:
        stream.close()


# -- freedom and dokodemo-door through a running instance ---------------------------


@pytest.fixture
async def recording_servers() -> AsyncIterator[tuple[int, int, list[str]]]:
    """TCP and UDP echo servers on 127.0.0.1 that record each client's address."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("peername")[0])
        with contextlib.suppress(OSError):
            writer.write(await reader.read(100))
            await writer.drain()
        writer.close()

    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            seen.append(addr[0])
            self.transport.sendto(data, addr)  # type: ignore[attr-defined]

    server = await asyncio.start_server(on_tcp, "127.0.0.1", 0)
    udp_transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    yield server.sockets[0].getsockname()[1], udp_transport.get_extra_info("sockname")[1], seen
    server.close()
    udp_transport.close()


@needs_root
async def test_freedom_sends_tcp_and_udp_through_the_configured_address(
    recording_servers: tuple[int, int, list[str]],
) -> None:
    tcp_port, udp_port, seen = recording_servers
    (socks_port,) = free_ports_of(1, (socket.SOCK_STREAM, socket.SOCK_DGRAM))
    config = {
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": socks_port,
                "protocol": "socks",
                "settings": {"udp": True},
            }
        ],
        "outbounds": [
            {
                "protocol": "freedom",
                "sendThrough": SOURCE_IP,
                "streamSettings": {"sockopt": {"mark": 9, "tcpFastOpen": True}},
            }
        ],
    }
    async with run_v2py(config):
        async with asyncio.timeout(STEP_S):
            reader, writer = await socks5_connect(socks_port, "127.0.0.1", tcp_port)
            writer.write(b"hi")
            assert await reader.read(100) == b"hi"
            writer.close()
        assert (
            await socks5_udp_roundtrip(socks_port, "127.0.0.1", udp_port, b"ping", timeout=STEP_S)
            == b"ping"
        )
    assert seen == [SOURCE_IP, SOURCE_IP]


async def test_follow_redirect_without_an_original_destination_uses_the_address(
    recording_servers: tuple[int, int, list[str]],
) -> None:
    """Connections that were not redirected (no NAT entry) go to ``address:port``,
    as 4.34 falls back when SO_ORIGINAL_DST fails."""
    tcp_port, _, seen = recording_servers
    (door_port,) = free_ports_of(1, (socket.SOCK_STREAM, socket.SOCK_DGRAM))
    config = {
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": door_port,
                "protocol": "dokodemo-door",
                "settings": {
                    "address": "127.0.0.1",
                    "port": tcp_port,
                    "network": "tcp",
                    "followRedirect": True,
                },
            }
        ],
        "outbounds": [{"protocol": "freedom"}],
    }
    async with run_v2py(config):
        async with asyncio.timeout(STEP_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", door_port)
            writer.write(b"hello")
            assert await reader.read(100) == b"hello"
            writer.close()
    assert seen == ["127.0.0.1"]


async def test_socks_outbound_udp_relay_socket_sends_through_and_marks() -> None:
    """The socks outbound's UDP relay socket (UDP ASSOCIATE) is bound to ``sendThrough``
    and carries ``sockopt`` as its TCP dials do (4.34 dials UDP the same way)."""
    from v2py.proxy.socks_outbound import open_udp_channel
    from v2py.transport.sockopt import SocketOptions

    relay = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    relay.bind(("127.0.0.1", 0))
    relay.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        channel = await open_udp_channel(
            "127.0.0.1", relay.getsockname()[1], source="127.0.0.2", options=SocketOptions(mark=7)
        )
        try:
            channel.send(b"hello")
            async with asyncio.timeout(5):
                data, source = await loop.sock_recvfrom(relay, 64)
        finally:
            channel.close()
        assert (data, source[0]) == (b"hello", "127.0.0.2")
    finally:
        relay.close()


# -- mKCP and QUIC: UDP sockets (4.34 ListenSystemPacket: mark, IP_TRANSPARENT) ---------


def _record_option_sockets(monkeypatch: pytest.MonkeyPatch) -> list[socket.socket]:
    """Every socket ``apply_inbound_options`` is given (then applied as usual)."""
    from v2py.transport import sockopt

    seen: list[socket.socket] = []
    original = sockopt.apply_inbound_options

    def recording(sock: socket.socket, options: SocketOptions) -> None:
        seen.append(sock)
        original(sock, options)

    monkeypatch.setattr(sockopt, "apply_inbound_options", recording)
    return seen


@needs_root
async def test_kcp_sockets_carry_mark_and_transparent_and_bind_send_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from v2py.protocol.mkcp.settings import KcpSettings
    from v2py.transport import KcpTransport

    seen = _record_option_sockets(monkeypatch)
    peers: asyncio.Queue[object] = asyncio.Queue()

    async def handler(stream: TcpStream) -> None:
        await peers.put(stream.peer)
        await stream.read()

    transport = KcpTransport(
        KcpSettings(), SocketOptions(mark=9, tproxy=TproxyMode.TPROXY), SOURCE_IP
    )
    listener = await transport.listen("127.0.0.1", 0, handler)  # type: ignore[arg-type]
    try:
        (listening,) = seen
        port = listening.getsockname()[1]
        async with asyncio.timeout(STEP_S):
            stream = await transport.dial("127.0.0.1", port)
            stream.write(b"hello")
            peer = await peers.get()
        try:
            dialled = seen[1]
            for sock in (listening, dialled):
                assert sock.getsockopt(socket.SOL_SOCKET, SO_MARK) == 9
                assert sock.getsockopt(SOL_IP, IP_TRANSPARENT) == 1
            assert dialled.getsockname()[0] == SOURCE_IP
            assert peer == dialled.getsockname()
        finally:
            stream.close()
    finally:
        listener.close()
        await transport.aclose()


@needs_root
async def test_quic_sockets_carry_mark_and_transparent(monkeypatch: pytest.MonkeyPatch) -> None:
    from v2py.config.transport_extra import QuicConfig
    from v2py.transport.quic import QuicTransport

    seen = _record_option_sockets(monkeypatch)

    async def handler(stream: object) -> None:
        return None

    transport = QuicTransport(QuicConfig(), None, options=SocketOptions(mark=11))
    listener = await transport.listen("127.0.0.1", 0, handler)
    try:
        (sock,) = seen
        assert sock.getsockopt(socket.SOL_SOCKET, SO_MARK) == 11
        assert sock.getsockopt(SOL_IP, IP_TRANSPARENT) == 0
    finally:
        listener.close()
        await transport.aclose()


def test_sockopt_and_send_through_accepted_on_every_network() -> None:
    """4.34 applies them to mKCP's sockets, only sockopt to QUIC's (its dialer binds the
    any-address) and neither to domain sockets; none of it is refused."""
    for network in ("kcp", "quic", "ds"):
        stream: dict[str, object] = {"network": network, "sockopt": {"mark": 255}}
        if network == "ds":
            stream["dsSettings"] = {"path": "/tmp/v2py-test.sock"}
        text = json.dumps(
            {
                "inbounds": [{"port": 1, "protocol": "socks", "streamSettings": stream}],
                "outbounds": [
                    {
                        "protocol": "vmess",
                        "sendThrough": "127.0.0.2",
                        "settings": {
                            "vnext": [
                                {
                                    "address": "127.0.0.1",
                                    "port": 1,
                                    "users": [{"id": "d17a1af7-efa5-42ca-b7e9-6a35282d737f"}],
                                }
                            ]
                        },
                        "streamSettings": stream,
                    }
                ],
            }
        )
        load_config([("t.json", text)], {})


@needs_root
async def test_socks_udp_relay_socket_carries_sockopt(monkeypatch: pytest.MonkeyPatch) -> None:
    """A socks inbound with ``udp`` sets ``sockopt`` on its UDP relay socket too (4.34's
    proxyman listens with ListenSystemPacket); v2py refused that config before."""
    seen = _record_option_sockets(monkeypatch)
    (port,) = free_ports_of(1, (socket.SOCK_STREAM, socket.SOCK_DGRAM))
    config = {
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": port,
                "protocol": "socks",
                "settings": {"udp": True},
                "streamSettings": {"sockopt": {"mark": 13}},
            }
        ],
        "outbounds": [{"protocol": "freedom"}],
    }
    async with run_v2py(config):
        udp_socks = [s for s in seen if s.type == socket.SOCK_DGRAM]
        assert len(udp_socks) == 1
        assert udp_socks[0].getsockopt(socket.SOL_SOCKET, SO_MARK) == 13
        assert udp_socks[0].getsockname() == ("127.0.0.1", port)
