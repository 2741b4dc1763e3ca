"""VMess over mKCP: a dead or ended mKCP session ends its relay and frees the outbound
connection promptly, and a few hundred concurrent bulk connections all complete.

The first two run a v2py client and server in this process with the mKCP core's idle
timeout and ping tick shortened (module constants, read at every flush), so nothing
waits out the real 30 s. The last runs both sides as ``v2py run`` processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.configs import vmess_client_config, vmess_server_config
from tests.support.many import Plan, check_many
from tests.support.ports import free_dual_ports
from tests.support.servers import TcpEchoServer, run_v2py_process
from tests.support.socks import socks5_connect
from tests.support.v2py import run_v2py
from v2py.instance import Instance
from v2py.protocol.mkcp import connection as kcp_connection
from v2py.transport import KcpTransport
from v2py.transport.mkcp import KcpStream

#: How long the outbound (target) connection may outlive its dead mKCP session: the
#: shortened idle timeout, one ping tick, the 1 s downlinkOnly policy, and slack.
CLOSE_BOUND_S = 4.0


def _kcp(config: dict[str, Any], key: str) -> dict[str, Any]:
    for side in config[key]:
        if side["protocol"] == "vmess":
            side["streamSettings"] = {"network": "kcp"}
    return config


def _server_config(port: int, user: str, ready_port: int) -> dict[str, Any]:
    config = _kcp(vmess_server_config(port, user, 0), "inbounds")
    # mKCP listens on UDP only; this socks inbound is just the "ready" probe for the
    # process runner, which waits for a TCP port.
    config["inbounds"].append(
        {"listen": "127.0.0.1", "port": ready_port, "protocol": "socks", "settings": {}}
    )
    return config


def _client_config(socks_port: int, port: int, user: str) -> dict[str, Any]:
    return _kcp(vmess_client_config(socks_port, port, user, 0, "aes-128-gcm"), "outbounds")


_Peers = asyncio.Queue[tuple[tuple[str, int], tuple[str, int]]]


class _HoldingTarget(asyncio.Protocol):
    """Echoes and ignores a half-close (keeps its end open and stays silent), so the only
    thing that ends the relay after its uplink ends is the relay's own policy timer."""

    def __init__(self, peers: _Peers, held: set[asyncio.BaseTransport]) -> None:
        self._peers = peers
        self._held = held
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._held.add(transport)
        self._peers.put_nowait(
            (transport.get_extra_info("peername"), transport.get_extra_info("sockname"))
        )

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)

    def eof_received(self) -> bool:
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is not None:
            self._held.discard(self._transport)


def _hex_address(address: tuple[str, int]) -> str:
    packed = socket.inet_aton(address[0])
    return f"{int.from_bytes(packed, 'little'):08X}:{address[1]:04X}"


def _closed_by_owner(local: tuple[str, int], remote: tuple[str, int]) -> bool:
    """Whether the TCP socket ``local`` -> ``remote`` is closed by its process: gone from
    /proc/net/tcp, or orphaned there (inode 0, e.g. in FIN_WAIT2). A socket that is only
    half-closed (``shutdown(SHUT_WR)``) still has its inode. The peer cannot tell the two
    apart: after our FIN the full close sends nothing."""
    want = (_hex_address(local), _hex_address(remote))
    with open("/proc/net/tcp") as fh:
        for line in fh.readlines()[1:]:
            fields = line.split()
            if (fields[1], fields[2]) == want:
                return fields[9] == "0"
    return True


async def _wait_closed_by_owner(local: tuple[str, int], remote: tuple[str, int]) -> None:
    while not _closed_by_owner(local, remote):
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _chain() -> AsyncIterator[tuple[int, int, Instance, Instance, _Peers]]:
    """An in-process socks -> vmess/mKCP -> vmess/mKCP -> freedom -> holding target chain;
    ``peers`` yields (freedom's address, the target's) for each connection to the target."""
    loop = asyncio.get_running_loop()
    peers: _Peers = asyncio.Queue()
    held: set[asyncio.BaseTransport] = set()
    target = await loop.create_server(lambda: _HoldingTarget(peers, held), "127.0.0.1", 0)
    target_port = target.sockets[0].getsockname()[1]
    kcp_port, socks_port, ready_port = free_dual_ports(3)
    user = str(uuid.uuid4())
    try:
        async with (
            run_v2py(_server_config(kcp_port, user, ready_port)) as server,
            run_v2py(_client_config(socks_port, kcp_port, user)) as client,
        ):
            yield socks_port, target_port, client, server, peers
    finally:
        target.close()
        for transport in list(held):
            transport.abort()  # type: ignore[attr-defined]
        await target.wait_closed()


def _client_kcp_stream(client: Instance) -> KcpStream:
    (transport,) = [t for t in client.builder.transports if isinstance(t, KcpTransport)]
    streams: tuple[KcpStream, ...] = transport.streams()  # the client's live mKCP stream
    assert len(streams) == 1
    return streams[0]


@pytest.fixture
def short_kcp_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kcp_connection, "IDLE_TIMEOUT_MS", 600)
    monkeypatch.setattr(kcp_connection, "PING_TICK_MS", 100)
    monkeypatch.setattr(kcp_connection, "PING_INTERVAL_MS", 100)


async def _open(socks_port: int, target_port: int) -> asyncio.StreamWriter:
    reader, writer = await socks5_connect(socks_port, "127.0.0.1", target_port)
    writer.write(b"ping")
    assert await reader.readexactly(4) == b"ping"
    return writer


async def test_silent_peer_idle_timeout_closes_the_outbound(short_kcp_timers: None) -> None:
    """The client's mKCP stops sending (a vanished peer). The server's session reaches its
    idle timeout; its relay must end then (4.34's Read returns EOF in ReadyToClose) and
    close the freedom connection, not hold it through ReadyToClose and Terminating."""
    async with asyncio.timeout(20), _chain() as (socks_port, target_port, client, _, peers):
        writer = await _open(socks_port, target_port)
        freedom, target = peers.get_nowait()
        stream = _client_kcp_stream(client)
        stream._send = lambda datagram: None  # the peer vanishes silently
        muted = time.monotonic()
        await _wait_closed_by_owner(freedom, target)
        assert time.monotonic() - muted < CLOSE_BOUND_S
        writer.close()
        await writer.wait_closed()


async def test_terminated_session_closes_an_idle_outbound(short_kcp_timers: None) -> None:
    """The client aborts its mKCP session (one TERMINATE) while the target is idle and
    ignores half-closes: the server's relay ends within downlinkOnly and closes freedom."""
    async with asyncio.timeout(20), _chain() as (socks_port, target_port, client, _, peers):
        writer = await _open(socks_port, target_port)
        freedom, target = peers.get_nowait()
        stream = _client_kcp_stream(client)
        aborted = time.monotonic()
        stream.abort()
        await _wait_closed_by_owner(freedom, target)
        assert time.monotonic() - aborted < CLOSE_BOUND_S
        writer.close()
        await writer.wait_closed()


# -- many concurrent connections ---------------------------------------------------------

MANY = Plan(connections=500, setup_parallel=128, transfer_timeout=40.0)


async def test_500_concurrent_bulk_connections_over_mkcp() -> None:
    """500 x 64 KiB echoed at once through one mKCP listener socket: every byte back as
    sent, and both processes return to their descriptor baseline."""
    kcp_port, socks_port, ready_port = free_dual_ports(3)
    user = str(uuid.uuid4())
    async with (
        asyncio.timeout(90),
        TcpEchoServer() as echo,
        run_v2py_process(_server_config(kcp_port, user, ready_port), wait_tcp=ready_port) as server,
        run_v2py_process(_client_config(socks_port, kcp_port, user), wait_tcp=socks_port) as client,
    ):
        await check_many(socks_port, echo, {"client": client.pid, "server": server.pid}, MANY)


# -- forged pings ------------------------------------------------------------------------


async def test_vmess_over_mkcp_serves_new_connections_through_a_forged_ping_flood(
    caplog: pytest.LogCaptureFixture, echo_server: tuple[str, int]
) -> None:
    """Thousands of forged 22-byte pings for fresh conv ids (64 source ports) at the
    server's mKCP port: new socks -> VMess/mKCP connections still open and echo, and the
    dropped half-open sessions log nothing above INFO."""
    from tests.shell.test_mkcp_half_open import forged_ping

    kcp_port, socks_port, ready_port = free_dual_ports(3)
    user = str(uuid.uuid4())
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(64)]
    for s in sockets:
        s.setblocking(False)
    stop = asyncio.Event()
    sent = 0

    async def flood() -> None:
        nonlocal sent
        conv = 0
        while not stop.is_set() and sent < 60_000:
            for s in sockets:
                for _ in range(4):
                    conv = (conv + 1) & 0xFFFF
                    with contextlib.suppress(BlockingIOError):
                        s.sendto(forged_ping(conv), ("127.0.0.1", kcp_port))
                        sent += 1
            await asyncio.sleep(0)

    async with (
        asyncio.timeout(60),
        run_v2py(_server_config(kcp_port, user, ready_port)),
        run_v2py(_client_config(socks_port, kcp_port, user)),
    ):
        flood_task = asyncio.create_task(flood())
        try:
            while sent < 3000:
                await asyncio.sleep(0.01)
            writers = [await _open(socks_port, echo_server[1]) for _ in range(4)]
        finally:
            stop.set()
            await flood_task
            for s in sockets:
                s.close()
        for writer in writers:
            writer.close()
            await writer.wait_closed()
    assert sent >= 3000
    noisy = [r for r in caplog.records if r.levelno > logging.INFO]
    assert not noisy, [r.getMessage() for r in noisy[:3]]
