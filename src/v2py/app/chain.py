"""``proxySettings``: an outbound's connections opened through another outbound
(v2ray-core 4.34 ``app/proxyman/outbound/handler.go`` ``Handler.Dial``).

4.34 does not dial the network when an outbound has ``proxySettings.tag``: it builds a
pipe pair, dispatches one end to the outbound with that tag (target = the address the
first outbound wanted to dial) and uses the other end as its connection. Of the
first outbound's ``streamSettings`` only TLS is kept on top of that connection; the
network (ws, kcp, ...) is not used. The handler reached this way is the complete
outbound: its own ``mux``, its own ``proxySettings`` (chains may be longer than two)
and its traffic counters apply.

:class:`ChainTransport` is that dialer as a :class:`~v2py.transport.Transport`, so the
VMess, SOCKS and HTTP outbounds dial through it unchanged (the TLS layer goes on top,
``v2py.build``). :meth:`ChainTransport.open_packets` does the same for datagrams (the
SOCKS outbound's UDP relay socket).

Difference from 4.34 (fail closed): when no outbound has the tag at dial time (the
config loader refuses unknown tags, so only the API's RemoveOutbound gets here) 4.34
dials directly; v2py fails the connection.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable

from v2py.app.handler import Outbound
from v2py.app.packet import PacketLink
from v2py.app.session import Session
from v2py.common.net import Destination, Network
from v2py.transport import Listener, StreamHandler
from v2py.transport.multiplex import cancel_and_wait
from v2py.transport.stream import READ_CHUNK_BYTES, Stream

__all__ = ["PIPE_LIMIT_BYTES", "ChainTransport", "PacketChannel", "PipeStream", "stream_pair"]

log = logging.getLogger(__name__)

#: Bytes one direction of a pipe holds before ``drain`` waits (4.34's pipes hold the
#: level's buffer size, 512 KiB by default).
PIPE_LIMIT_BYTES = 512 * 1024
#: How long closing waits for the chained sessions to end after cancelling them.
CLOSE_WAIT_S = 2.0


class _Half:
    """One direction of a pipe: chunks written by one end, read by the other."""

    __slots__ = ("broken", "chunks", "eof", "error", "limit", "room_waiters", "size", "waiter")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.eof = False  # the writer finished (data before it is still read)
        self.error: BaseException | None = None  # the writer aborted: reads fail
        self.broken = False  # the reader is gone: writes fail
        self.waiter: asyncio.Future[None] | None = None
        self.room_waiters: list[asyncio.Future[None]] = []

    def wake_reader(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wake_writers(self) -> None:
        waiters, self.room_waiters = self.room_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def put(self, data: bytes) -> None:
        if self.broken or self.eof or self.error is not None or not data:
            return
        self.chunks.append(data)
        self.size += len(data)
        self.wake_reader()

    async def get(self, max_bytes: int) -> bytes:
        while not self.chunks:
            if self.error is not None:
                raise self.error
            if self.eof:
                return b""
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        chunk = self.chunks.popleft()
        if len(chunk) > max_bytes:
            self.chunks.appendleft(chunk[max_bytes:])
            chunk = chunk[:max_bytes]
        self.size -= len(chunk)
        if self.size <= self.limit:
            self.wake_writers()
        return chunk

    async def wait_room(self) -> None:
        while self.size > self.limit and not self.broken:
            waiter = asyncio.get_running_loop().create_future()
            self.room_waiters.append(waiter)
            await waiter
        if self.broken:
            raise ConnectionResetError("the other end of the pipe is closed")

    def abort(self, exc: BaseException) -> None:
        self.error = exc
        self.chunks.clear()
        self.size = 0
        self.wake_reader()
        self.wake_writers()

    def reader_gone(self) -> None:
        self.broken = True
        self.chunks.clear()
        self.size = 0
        self.wake_writers()


class PipeStream:
    """One end of an in-memory stream pair (4.34 ``transport/pipe`` as a connection).

    ``write_eof`` ends the other end's reading after what was written; ``close``
    also makes the other end's ``drain`` fail (its writes have no reader any more);
    ``abort(exc)`` discards what the other end has not read yet and makes its reads
    raise ``exc``.
    """

    def __init__(self, inbox: _Half, outbox: _Half) -> None:
        self._in = inbox
        self._out = outbox
        self._closed = False
        self._done: asyncio.Event = asyncio.Event()

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        if self._closed:
            return b""
        return await self._in.get(max_bytes)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._closed:
            self._out.put(bytes(data))

    async def drain(self) -> None:
        if self._closed:
            raise ConnectionResetError("pipe closed")
        await self._out.wait_room()

    @property
    def input_ended(self) -> bool:
        """Nothing more will be read: closed, or the other end finished (or aborted)
        and everything it wrote was read."""
        inbox = self._in
        return self._closed or (not inbox.chunks and (inbox.eof or inbox.error is not None))

    def write_eof(self) -> None:
        self._out.eof = True
        self._out.wake_reader()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.write_eof()
        self._in.reader_gone()
        self._done.set()

    def abort(self, exc: BaseException) -> None:
        """Close, and make the other end's reads raise ``exc`` (after nothing more)."""
        if self._closed:
            return
        self._out.abort(exc)
        self.close()

    async def wait_closed(self) -> None:
        await self._done.wait()

    @property
    def peer(self) -> tuple[str, int] | None:
        return None

    @property
    def local(self) -> tuple[str, int] | None:
        return None

    @property
    def can_push(self) -> bool:
        return False


def stream_pair(limit: int = PIPE_LIMIT_BYTES) -> tuple[PipeStream, PipeStream]:
    """Two connected :class:`PipeStream` ends (what one writes, the other reads)."""
    forward, backward = _Half(limit), _Half(limit)
    return PipeStream(backward, forward), PipeStream(forward, backward)


class PacketChannel:
    """Datagrams to one destination through a chained outbound's ``handle_packets``."""

    def __init__(self, link: PacketLink, task: asyncio.Task[None]) -> None:
        self._link = link
        self._task = task
        self._inbox: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        task.add_done_callback(lambda _: self._wake())

    def deliver(self, data: bytes) -> None:
        """The chained outbound's answer (the link's ``send_back``)."""
        self._inbox.append(data)
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def send(self, data: bytes) -> None:
        """Send one datagram (dropped when the link is full or closed)."""
        self._link.push(data)

    async def recv(self) -> bytes | None:
        """The next answer, or None once the chained outbound has ended."""
        while not self._inbox:
            if self._task.done() or self._link.closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._inbox.popleft()

    def close(self) -> None:
        """End the link; the chained outbound returns on its own."""
        self._link.close()
        self._wake()


class ChainTransport:
    """Dials through the outbound tagged ``tag`` (found with ``lookup`` at each dial).

    ``dial`` never fails for the network's sake (as in 4.34 the connection exists at
    once and the chained outbound's failure shows as a reset on it); it raises
    ConnectionRefusedError only when no outbound has the tag.
    """

    name = "tcp"
    listener_ends_sessions = False

    def __init__(self, tag: str, lookup: Callable[[str], Outbound | None]) -> None:
        self.tag = tag
        self._lookup = lookup
        self._tasks: set[asyncio.Task[None]] = set()

    def _outbound(self, destination: Destination) -> Outbound:
        outbound = self._lookup(self.tag)
        if outbound is None:
            log.warning("proxySettings: no outbound tagged %r for %s", self.tag, destination)
            raise ConnectionRefusedError(f"proxySettings: no outbound tagged {self.tag!r}")
        return outbound

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream:
        destination = Destination(Network.TCP, host, port)
        outbound = self._outbound(destination)
        ours, theirs = stream_pair()
        session = Session(inbound_tag="", source=None, destination=destination)
        log.debug("proxying to %s for %s", self.tag, destination)
        task = asyncio.get_running_loop().create_task(self._serve(outbound, session, theirs))
        self._keep(task)
        return ours

    async def _serve(self, outbound: Outbound, session: Session, theirs: PipeStream) -> None:
        try:
            await outbound.handle(session, theirs)
        except asyncio.CancelledError:
            theirs.abort(ConnectionResetError("proxySettings: closed"))
            raise
        except Exception as exc:  # any failure of the chained outbound ends this stream
            log.info("proxySettings: %s through %r failed: %s", session.destination, self.tag, exc)
            theirs.abort(ConnectionResetError(f"proxySettings: {self.tag}: {exc}"))
        else:
            theirs.close()

    async def open_packets(self, host: str, port: int) -> PacketChannel:
        """A datagram channel to ``host:port`` through the chained outbound."""
        destination = Destination(Network.UDP, host, port)
        outbound = self._outbound(destination)
        channel: PacketChannel | None = None

        def send_back(data: bytes) -> None:
            if channel is not None:
                channel.deliver(data)

        link = PacketLink(send_back)
        session = Session(inbound_tag="", source=None, destination=destination)
        task = asyncio.get_running_loop().create_task(self._serve_packets(outbound, session, link))
        self._keep(task)
        channel = PacketChannel(link, task)
        return channel

    async def _serve_packets(self, outbound: Outbound, session: Session, link: PacketLink) -> None:
        try:
            await outbound.handle_packets(session, link)
        except Exception as exc:  # the channel reports the end as None
            log.info("proxySettings: %s through %r failed: %s", session.destination, self.tag, exc)
        finally:
            link.close()

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def listen(
        self, host: str, port: int, handler: StreamHandler, *, reuse_port: bool = False
    ) -> Listener:
        raise OSError("an outbound's proxySettings cannot listen")

    async def aclose(self) -> None:
        """Cancel the chained sessions still running."""
        await cancel_and_wait(self._tasks, CLOSE_WAIT_S)
