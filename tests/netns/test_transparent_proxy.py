"""Transparent proxying as the V2Ray guide sets it up, in network namespaces: a
client whose traffic a gateway intercepts with iptables TPROXY or REDIRECT into a
dokodemo-door with ``followRedirect``, and a server behind the gateway.

The server answers with the source address it saw, so each test tells a proxied
connection (source: the gateway, or its ``sendThrough`` address) from a forwarded one
(source: the client). The same rules and config run on v2py and on V2Ray 4.34.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.netns import (
    CLIENT_IP,
    GATEWAY_SECOND_IP,
    GATEWAY_SERVER_SIDE_IP,
    SERVER_IP,
    Topology,
    make_topology,
    remove_topology,
)
from tests.support.v2ray import require_v2ray

pytestmark = pytest.mark.netns

PROXY_PORT = 12345
TCP_PORT = 7000
UDP_PORT = 7001
MARK = 255
STEP_S = 10.0
UDP_RETRY_S = 0.2

IMPLEMENTATIONS = ["v2py", pytest.param("v2ray", marks=pytest.mark.interop)]


@pytest.fixture
def topo() -> Iterator[Topology]:
    topology = make_topology()
    try:
        yield topology
    finally:
        remove_topology(topology)


def _config(mode: str, *, send_through: str | None) -> dict[str, Any]:
    freedom: dict[str, Any] = {
        "protocol": "freedom",
        "streamSettings": {"sockopt": {"mark": MARK}},
    }
    if send_through is not None:
        freedom["sendThrough"] = send_through
    return {
        "log": {"loglevel": "debug"},
        "inbounds": [
            {
                "port": PROXY_PORT,
                "protocol": "dokodemo-door",
                "settings": {"network": "tcp,udp", "followRedirect": True},
                "streamSettings": {"sockopt": {"tproxy": mode}},
            }
        ],
        "outbounds": [freedom],
    }


@contextlib.asynccontextmanager
async def _proxy(topo: Topology, kind: str, config: dict[str, Any]) -> AsyncIterator[Path]:
    """Run ``config`` on v2py or V2Ray inside the gateway namespace."""
    workdir = Path(tempfile.mkdtemp(prefix="v2py-netns-"))
    cfg = workdir / "config.json"
    cfg.write_text(json.dumps(config))
    log = workdir / "out.log"
    if kind == "v2ray":
        command = [require_v2ray(), "-config", str(cfg)]
    else:
        command = [sys.executable, "-m", "v2py", "run", "-c", str(cfg)]
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", topo.gw, *command, stdout=out, stderr=out, env=dict(os.environ)
        )
    try:
        async with asyncio.timeout(STEP_S):
            while not _listening(topo, PROXY_PORT):
                if proc.returncode is not None:
                    raise RuntimeError(f"{kind} exited: {log.read_text(errors='replace')}")
                await asyncio.sleep(0.05)
        yield log
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _listening(topo: Topology, port: int) -> bool:
    """Whether the gateway has both the TCP and the UDP socket of ``port`` (asked of the
    kernel: a probe connection would be proxied to the listener itself)."""
    tcp = topo.run(topo.gw, "ss", "-Hltn", f"sport = :{port}")
    udp = topo.run(topo.gw, "ss", "-Hlun", f"sport = :{port}")
    return bool(tcp.strip()) and bool(udp.strip())


@contextlib.asynccontextmanager
async def _servers(topo: Topology) -> AsyncIterator[None]:
    """TCP and UDP servers in the server namespace that answer ``<source ip>|<data>``."""
    loop = asyncio.get_running_loop()

    async def on_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        with contextlib.suppress(OSError):
            data = await reader.read(1024)
            writer.write(f"{peer}|".encode() + data)
            await writer.drain()
        writer.close()

    class Udp(asyncio.DatagramProtocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport

        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            self.transport.sendto(f"{addr[0]}|".encode() + data, addr)  # type: ignore[attr-defined]

    tcp_sock = topo.socket(topo.srv, socket.SOCK_STREAM)
    tcp_sock.bind((SERVER_IP, TCP_PORT))
    server = await asyncio.start_server(on_tcp, sock=tcp_sock)
    udp_sock = topo.socket(topo.srv, socket.SOCK_DGRAM)
    udp_sock.bind((SERVER_IP, UDP_PORT))
    udp_transport, _ = await loop.create_datagram_endpoint(Udp, sock=udp_sock)
    try:
        yield
    finally:
        server.close()
        udp_transport.close()


async def _tcp_exchange(topo: Topology, payload: bytes) -> bytes:
    sock = topo.socket(topo.cli, socket.SOCK_STREAM)
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(STEP_S):
        await loop.sock_connect(sock, (SERVER_IP, TCP_PORT))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(payload)
        await writer.drain()
        answer = await reader.read(1024)
        writer.close()
    return answer


async def _udp_exchange(topo: Topology, payload: bytes) -> tuple[bytes, tuple[str, int]]:
    """Send ``payload`` to the server until an answer comes (a lost first datagram is
    UDP's way), return it and the address it came from."""
    sock = topo.socket(topo.cli, socket.SOCK_DGRAM)
    sock.bind((CLIENT_IP, 0))
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(STEP_S):
            while True:
                await loop.sock_sendto(sock, payload, (SERVER_IP, UDP_PORT))
                try:
                    async with asyncio.timeout(UDP_RETRY_S):
                        data, addr = await loop.sock_recvfrom(sock, 2048)
                except TimeoutError:
                    continue
                return data, (str(addr[0]), int(addr[1]))
    finally:
        sock.close()


def _marked_packets(topo: Topology) -> int:
    listing = topo.run(topo.gw, "iptables", "-t", "mangle", "-L", "OUTPUT", "-v", "-x", "-n")
    for line in listing.splitlines():
        if f"mark match 0x{MARK:x}" in line:
            return int(line.split()[0])
    raise AssertionError(listing)


def _count_marked(topo: Topology) -> None:
    topo.run(topo.gw, "iptables", "-t", "mangle", "-A", "OUTPUT", "-m", "mark", "--mark", str(MARK))


@pytest.mark.parametrize("kind", IMPLEMENTATIONS)
async def test_tproxy_tcp_and_udp_with_mark_and_send_through(topo: Topology, kind: str) -> None:
    for proto in ("tcp", "udp"):
        topo.run(
            topo.gw,
            *("iptables", "-t", "mangle", "-A", "PREROUTING", "-s", CLIENT_IP, "-p", proto),
            *("-j", "TPROXY", "--on-port", str(PROXY_PORT), "--tproxy-mark", "1"),
        )
    _count_marked(topo)
    async with (
        _servers(topo),
        _proxy(topo, kind, _config("tproxy", send_through=GATEWAY_SECOND_IP)),
    ):
        assert await _tcp_exchange(topo, b"hello") == f"{GATEWAY_SECOND_IP}|hello".encode()
        data, origin = await _udp_exchange(topo, b"ping")
        # The answer comes from the original destination, though the gateway sent it.
        assert origin == (SERVER_IP, UDP_PORT)
        assert data == f"{GATEWAY_SECOND_IP}|ping".encode()
        # A second datagram of the same flow, then a new flow from another client port.
        assert (await _udp_exchange(topo, b"again"))[0] == f"{GATEWAY_SECOND_IP}|again".encode()
    assert _marked_packets(topo) > 0


@pytest.mark.parametrize("kind", IMPLEMENTATIONS)
async def test_redirect_tcp(topo: Topology, kind: str) -> None:
    topo.run(
        topo.gw,
        *("iptables", "-t", "nat", "-A", "PREROUTING", "-s", CLIENT_IP, "-p", "tcp"),
        *("-j", "REDIRECT", "--to-ports", str(PROXY_PORT)),
    )
    _count_marked(topo)
    async with _servers(topo), _proxy(topo, kind, _config("redirect", send_through=None)):
        assert await _tcp_exchange(topo, b"hello") == f"{GATEWAY_SERVER_SIDE_IP}|hello".encode()
        assert await _tcp_exchange(topo, b"twice") == f"{GATEWAY_SERVER_SIDE_IP}|twice".encode()
    assert _marked_packets(topo) > 0


async def test_without_rules_traffic_is_forwarded(topo: Topology) -> None:
    """The control: with no interception the server sees the client itself."""
    async with _servers(topo):
        assert await _tcp_exchange(topo, b"hello") == f"{CLIENT_IP}|hello".encode()
