"""An in-process UDP relay between the mKCP client and server that drops packets.

Each client address gets its own upstream socket to the server (so the server sees one peer
per client flow, as without the relay).  Drops are decided by a seeded PRNG, independently
per packet and per direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from dataclasses import dataclass

#: Socket buffers of the relay: without them the relay itself overflows on a full mKCP
#: window burst and measures its own drops rather than the configured loss.
RELAY_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


def _big_buffers(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, RELAY_SOCKET_BUFFER_BYTES)


@dataclass
class RelayStats:
    up_in: int = 0
    up_dropped: int = 0
    down_in: int = 0
    down_dropped: int = 0


class _Upstream(asyncio.DatagramProtocol):
    def __init__(self, relay: LossyUdpRelay, client_addr: tuple[str, int]) -> None:
        self.relay = relay
        self.client_addr = client_addr
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        _big_buffers(transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        r = self.relay
        r.stats.down_in += 1
        if r.drop():
            r.stats.down_dropped += 1
            return
        if r.listen is not None:
            r.listen.sendto(data, self.client_addr)

    def error_received(self, exc: Exception) -> None:
        pass


class _Listen(asyncio.DatagramProtocol):
    def __init__(self, relay: LossyUdpRelay) -> None:
        self.relay = relay

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _big_buffers(transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.from_client(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass


class LossyUdpRelay:
    def __init__(self, target_port: int, loss_pct: float, seed: int = 1) -> None:
        self.target = ("127.0.0.1", target_port)
        self.loss = loss_pct / 100.0
        self.rng = random.Random(seed)
        self.stats = RelayStats()
        self.listen: asyncio.DatagramTransport | None = None
        self.port = 0
        self._up: dict[tuple[str, int], _Upstream] = {}
        self._pending: dict[tuple[str, int], list[bytes]] = {}

    def drop(self) -> bool:
        return self.loss > 0 and self.rng.random() < self.loss

    async def start(self, port: int = 0) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Listen(self), local_addr=("127.0.0.1", port)
        )
        self.listen = transport
        self.port = transport.get_extra_info("sockname")[1]

    def from_client(self, data: bytes, addr: tuple[str, int]) -> None:
        self.stats.up_in += 1
        if self.drop():
            self.stats.up_dropped += 1
            return
        up = self._up.get(addr)
        if up is not None and up.transport is not None:
            up.transport.sendto(data)
            return
        queue = self._pending.get(addr)
        if queue is not None:
            queue.append(data)
            return
        self._pending[addr] = [data]
        asyncio.get_running_loop().create_task(self._open(addr))

    async def _open(self, addr: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, up = await loop.create_datagram_endpoint(
                lambda: _Upstream(self, addr), remote_addr=self.target
            )
        except OSError:
            self._pending.pop(addr, None)
            return
        self._up[addr] = up
        for data in self._pending.pop(addr, []):
            assert up.transport is not None
            up.transport.sendto(data)

    def close(self) -> None:
        for up in self._up.values():
            if up.transport is not None:
                up.transport.close()
        self._up.clear()
        if self.listen is not None:
            self.listen.close()
            self.listen = None
