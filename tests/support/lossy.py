"""A seeded lossy datagram link driven by explicit time (loss, duplication, reorder, delay)."""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field


@dataclass
class LossyLink:
    """One direction of a datagram path.

    ``send(data, now)`` may drop, duplicate or delay ``data``; ``deliver(now)``
    returns what has arrived by ``now`` in arrival order. ``reorder`` is the
    fraction of datagrams that get ``reorder_delay`` extra latency, so later ones
    overtake them. Everything is decided by ``random.Random(seed)``.
    """

    seed: int = 0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay: float = 0.0
    reorder_delay: float = 0.03
    sent: int = 0
    dropped: int = 0
    duplicated: int = 0
    _rng: random.Random = field(init=False)
    _queue: list[tuple[float, int, bytes]] = field(init=False, default_factory=list)
    _seq: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def send(self, data: bytes, now: float) -> None:
        self.sent += 1
        rng = self._rng
        if rng.random() < self.loss:
            self.dropped += 1
            return
        copies = 1
        if rng.random() < self.duplicate:
            copies = 2
            self.duplicated += 1
        for _ in range(copies):
            at = now + self.delay
            if rng.random() < self.reorder:
                at += self.reorder_delay
            self._seq += 1
            heapq.heappush(self._queue, (at, self._seq, data))

    def deliver(self, now: float) -> list[bytes]:
        out: list[bytes] = []
        q = self._queue
        while q and q[0][0] <= now + 1e-9:
            out.append(heapq.heappop(q)[2])
        return out

    def next_arrival(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def __len__(self) -> int:
        return len(self._queue)


#: Relay socket buffers: a window-sized mKCP burst must not overflow the relay
#: itself, or "5% loss" silently becomes much more (the kernel caps at rmem_max).
RELAY_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


def _big_buffers(transport) -> None:  # type: ignore[no-untyped-def]
    import socket

    sock = transport.get_extra_info("socket")
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, RELAY_SOCKET_BUFFER_BYTES)


class LossyUdpRelay:
    """An in-process UDP relay on 127.0.0.1 dropping and delaying datagrams (seeded).

    Clients send to ``port``; each client address gets its own upstream socket to
    ``target``, so the server sees distinct (addr, port) per client. Both directions
    pass through a :class:`LossyLink`-like decision with the same parameters.
    """

    def __init__(self, target: tuple[str, int], *, loss: float, delay: float, seed: int) -> None:
        self.target = target
        self.loss = loss
        self.delay = delay
        self._rng = random.Random(seed)
        self.port = 0
        self.forwarded = 0
        self.dropped = 0
        self._front: object = None
        self._uplinks: dict[tuple[str, int], object] = {}
        self._opening: dict[tuple[str, int], list[bytes]] = {}

    async def start(self) -> LossyUdpRelay:
        import asyncio

        loop = asyncio.get_running_loop()
        relay = self

        class Front(asyncio.DatagramProtocol):
            def connection_made(self, transport):  # type: ignore[no-untyped-def]
                self.transport = transport

            def datagram_received(self, data, addr):  # type: ignore[no-untyped-def]
                up = relay._uplinks.get(addr)
                if up is None:
                    waiting = relay._opening.get(addr)
                    if waiting is None:
                        relay._opening[addr] = [data]
                        loop.create_task(relay._open_uplink(addr))
                    else:
                        waiting.append(data)
                    return
                relay._forward(up.transport, data, None)  # type: ignore[attr-defined]

        transport, proto = await loop.create_datagram_endpoint(Front, local_addr=("127.0.0.1", 0))
        _big_buffers(transport)
        self._front = proto
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def _open_uplink(self, client):  # type: ignore[no-untyped-def]
        import asyncio

        loop = asyncio.get_running_loop()
        relay = self

        class Up(asyncio.DatagramProtocol):
            def connection_made(self, transport):  # type: ignore[no-untyped-def]
                self.transport = transport

            def datagram_received(self, data, addr):  # type: ignore[no-untyped-def]
                relay._forward(relay._front.transport, data, client)  # type: ignore[attr-defined]

        transport, proto = await loop.create_datagram_endpoint(Up, remote_addr=self.target)
        _big_buffers(transport)
        self._uplinks[client] = proto
        for data in self._opening.pop(client):
            self._forward(proto.transport, data, None)

    def _forward(self, transport, data: bytes, addr) -> None:  # type: ignore[no-untyped-def]
        import asyncio

        if self._rng.random() < self.loss:
            self.dropped += 1
            return
        self.forwarded += 1

        def send() -> None:
            if not transport.is_closing():
                transport.sendto(data, addr) if addr else transport.sendto(data)

        asyncio.get_running_loop().call_later(self.delay, send)

    def close(self) -> None:
        for up in self._uplinks.values():
            up.transport.close()  # type: ignore[attr-defined]
        if self._front is not None:
            self._front.transport.close()  # type: ignore[attr-defined]
