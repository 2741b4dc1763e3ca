"""A datagram link between an inbound and an outbound (one source, one destination)."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from v2py.app.handler import Dispatch
    from v2py.app.session import Session

#: Queued datagrams per link before new ones are dropped (UDP may drop; never block).
PACKET_QUEUE_LIMIT = 256


class PacketLink:
    """Datagrams from the inbound side are ``push``ed and ``recv``ed by the outbound;
    responses go back through ``send`` to the inbound's callback."""

    def __init__(self, send_back: Callable[[bytes], None]) -> None:
        self._send_back = send_back
        self._queue: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.dropped = 0

    def push(self, data: bytes) -> None:
        """Inbound side: queue a datagram for the outbound (dropped when full or closed)."""
        if self._closed or len(self._queue) >= PACKET_QUEUE_LIMIT:
            self.dropped += 1
            return
        self._queue.append(data)
        self._wake()

    async def recv(self) -> bytes | None:
        """Outbound side: next datagram, or None once the link is closed and empty."""
        while not self._queue:
            if self._closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._queue.popleft()

    def send(self, data: bytes) -> None:
        """Outbound side: deliver a response datagram to the inbound's client."""
        if not self._closed:
            self._send_back(data)

    def close(self) -> None:
        self._closed = True
        self._wake()

    @property
    def closed(self) -> bool:
        return self._closed

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)


class DatagramStream(Protocol):
    """An outbound's datagram channel (a VMess UDP body, a Mux.Cool UDP session)."""

    def write_datagram(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def write_eof(self) -> None: ...

    async def read_datagram(self) -> bytes | None: ...


async def relay_datagrams(link: PacketLink, stream: DatagramStream, downlink_only: float) -> None:
    """Carry ``link``'s datagrams to ``stream`` one by one (then its end) and
    ``stream``'s back; once the uplink ended, the downlink goes on for at most
    ``downlink_only`` seconds. A failure leaves as the TaskGroup's ExceptionGroup."""

    async def uplink() -> None:
        while (data := await link.recv()) is not None:
            stream.write_datagram(data)
            await stream.drain()
        stream.write_eof()

    async def downlink() -> None:
        while (data := await stream.read_datagram()) is not None:
            link.send(data)

    async with asyncio.TaskGroup() as group:
        up = group.create_task(uplink())
        down = group.create_task(downlink())
        await up
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(downlink_only):
                await asyncio.shield(down)
        down.cancel()


def _stream_link(
    stream: DatagramStream, dropped: type[OSError]
) -> tuple[PacketLink, Callable[[], Coroutine[Any, Any, None]]]:
    """A link whose answers go back on ``stream`` (one that fails with ``dropped`` is
    dropped, as UDP may drop it), and the pump that feeds it ``stream``'s datagrams
    (closing it at their end)."""

    def send_back(data: bytes) -> None:
        with contextlib.suppress(dropped):
            stream.write_datagram(data)

    link = PacketLink(send_back)

    async def pump() -> None:
        try:
            while (data := await stream.read_datagram()) is not None:
                link.push(data)
        finally:
            link.close()

    return link, pump


@contextlib.asynccontextmanager
async def fed_link(stream: DatagramStream) -> AsyncIterator[PacketLink]:
    """A link fed with ``stream``'s datagrams (by a task, for as long as the block runs)
    whose answers go back on ``stream``; an answer that cannot be written is dropped,
    as UDP may drop it."""
    link, pump = _stream_link(stream, OSError)
    pumping = asyncio.get_running_loop().create_task(pump())
    try:
        yield link
    finally:
        pumping.cancel()
        with contextlib.suppress(asyncio.CancelledError, OSError):
            await pumping


async def dispatch_datagram_stream(
    session: Session, stream: DatagramStream, dispatcher: Dispatch
) -> None:
    """Dispatch the datagrams an inbound reads from ``stream`` (a VMess or VLESS UDP
    body) as one packet session whose answers go back on ``stream``; its writing is
    ended when both directions are done."""

    link, pump = _stream_link(stream, ConnectionError)
    async with asyncio.TaskGroup() as group:
        group.create_task(pump())
        group.create_task(dispatcher.dispatch_packets(session, link))
    stream.write_eof()
