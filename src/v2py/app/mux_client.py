"""Mux.Cool on an outbound (v2ray-core common/mux/client.go, app/proxyman/outbound;
``docs/spec/transports.md`` sections 1.1 and 1.3).

With ``mux.enabled``, an outbound carries every connection (TCP and UDP) as a
session of a mux connection. A mux connection ("worker") is one ordinary connection
of the wrapped outbound to the destination ``v1.mux.cool:9527`` (VMess sends that
as command 3, other protocols as the literal domain), whose stream is the worker's
frame stream.

As 4.34:

* A new session goes to the first worker that is not full; when none, closed
  workers are dropped (v2py also sets aside the ones that have had 128 sessions)
  and a new one is made. A worker is full when closed, when it
  has ``concurrency`` active sessions, or when it has ever had 128.
* A session's New frame carries its first payload, or goes alone after 100 ms.
* The local side ending (EOF) sends End and ends the session both ways: TCP
  half-close is not carried. End from the server ends the local read side.
* Every 16 s a worker without active sessions closes (its request stream ends).

Each session is relayed with the policy timeouts of its level, like a direct one.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from typing import Protocol

from v2py.app.mux_endpoint import MuxEndpoint, MuxSubStream, QueuedPush
from v2py.app.packet import PacketLink, relay_datagrams
from v2py.app.policy import PolicyTable, Timeouts
from v2py.app.relay import relay
from v2py.app.session import Session, SessionLogger, session_logger
from v2py.common.net import Destination, Network, tcp
from v2py.errors import LocalProtocolError, ProtocolError
from v2py.protocol.mux import MAX_SESSIONS_PER_CONNECTION, MUX_COOL_HOST, MUX_COOL_PORT, MuxRole
from v2py.transport.stream import READ_CHUNK_BYTES, PushTarget, Stream

log = logging.getLogger(__name__)

#: Sessions per worker when ``concurrency`` is 0 (4.34 MuxConfig.Build).
DEFAULT_CONCURRENCY = 8
MAX_CONCURRENCY = 1024
#: A worker with no active session closes at its next tick (4.34 ``monitor``).
IDLE_TICK_S = 16.0
#: Workers tried per new session before giving up (4.34 ``ClientManager.Dispatch``).
PICK_ATTEMPTS = 16
#: Frames queued for the carrying outbound before sessions wait in ``drain``.
LINK_HIGH_WATER_BYTES = 256 * 1024


class Carrier(Protocol):
    """The outbound protocol handler that carries mux connections."""

    tag: str

    async def handle(self, session: Session, stream: Stream) -> None: ...

    async def handle_packets(self, session: Session, link: PacketLink) -> None: ...


async def relay_over(stream: Stream, sub: MuxSubStream, timeouts: Timeouts) -> None:
    """Relay ``stream`` over the mux session ``sub``, then end the session (End, with
    the error flag when a timeout or a failure ended the relay)."""
    error = True
    try:
        error = not await relay(stream, sub, timeouts)
    finally:
        sub.finish(error=error)


async def relay_packets_over(
    link: PacketLink, sub: MuxSubStream, timeouts: Timeouts, slog: SessionLogger, name: str
) -> None:
    """Relay the datagrams of ``link`` over the mux session ``sub``, then end the
    session; a failure is logged as ``<name>: udp session ended: ...``."""
    error = True
    try:
        await relay_datagrams(link, sub, timeouts.downlink_only)
        error = False
    except* (OSError, ProtocolError) as errors:
        slog.info("%s: udp session ended: %s", name, errors.exceptions[0])
    finally:
        sub.finish(error=error)


class MuxLink(QueuedPush):
    """The worker's frame stream as the carrying outbound sees it: ``read`` returns the
    frames the sessions send, ``write`` feeds the server's frames in, and ``drain``
    waits while a session's reader is behind (the mux buffers are full).

    It is a push stream too: frames go straight to the carrier's push target, and
    sessions see the carrier's backpressure through :attr:`out_paused`."""

    def __init__(self) -> None:
        self.endpoint: MuxEndpoint | None = None
        self._held: collections.deque[bytes] = collections.deque()
        self.buffered = 0  # frames the carrier has not taken
        self._eof = False
        self._eof_pushed = False
        self._reader: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self._room_callbacks: list[Callable[[BaseException | None], None]] = []
        self._push: PushTarget | None = None
        self._push_paused = False

    # -- the sessions' side -------------------------------------------------------------
    def push_out(self, data: bytes) -> None:
        if self._eof:
            raise ConnectionResetError("mux connection closed")
        self._queue_in(data)

    def out_paused(self) -> bool:
        """True while the carrier has not taken more than the high-water mark."""
        return self.buffered > LINK_HIGH_WATER_BYTES

    def when_out_room(self, callback: Callable[[BaseException | None], None]) -> None:
        if self._eof:
            callback(ConnectionResetError("mux connection closed"))
        elif not self.out_paused():
            callback(None)
        else:
            self._room_callbacks.append(callback)

    async def wait_out_room(self) -> None:
        while self.buffered > LINK_HIGH_WATER_BYTES and not self._eof:
            if self._room is None:
                self._room = asyncio.get_running_loop().create_future()
            await self._room
        if self._eof:
            raise ConnectionResetError("mux connection closed")

    def finish_out(self) -> None:
        """No more frames: ``read`` returns ``b""`` once the queue is empty."""
        self._eof = True
        self._wake()
        self._wake_room()
        if self._push is not None:
            self._push_flush()

    def _wake(self) -> None:
        fut = self._reader
        if fut is not None:
            self._reader = None
            if not fut.done():
                fut.set_result(None)

    def _wake_room(self) -> None:
        fut = self._room
        if fut is not None:
            self._room = None
            if not fut.done():
                fut.set_result(None)
        if self._room_callbacks:
            callbacks, self._room_callbacks = self._room_callbacks, []
            error = ConnectionResetError("mux connection closed") if self._eof else None
            for callback in callbacks:
                callback(error)

    # -- push mode (QueuedPush: the carrier's relay takes frames as they are made) ----------
    @property
    def can_push(self) -> bool:
        return True

    @property
    def write_paused(self) -> bool:
        """The server's frames wait while a session's reader is behind."""
        return self.endpoint is not None and self.endpoint.paused

    def when_writable(self, callback: Callable[[BaseException | None], None]) -> None:
        if self.endpoint is None:
            callback(None)
        else:
            self.endpoint.when_room(lambda: callback(None))

    def _hand_on(self, target: PushTarget, data: bytes) -> None:
        target.pushed_data(data)
        self._wake_room()

    def _push_end(self, target: PushTarget) -> None:
        if self._eof and not self._held and not self._eof_pushed:
            self._eof_pushed = True
            self._push = None
            target.pushed_eof()

    # -- Stream (the carrying outbound's side) ----------------------------------------------
    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        out = self._held
        while not out:
            if self._eof:
                return b""
            self._reader = asyncio.get_running_loop().create_future()
            await self._reader
        parts: list[bytes] = []
        size = 0
        while out and size < max_bytes:
            part = out.popleft()
            if size + len(part) > max_bytes:
                cut = max_bytes - size
                out.appendleft(part[cut:])
                part = part[:cut]
            parts.append(part)
            size += len(part)
        self.buffered -= size
        if self.buffered <= LINK_HIGH_WATER_BYTES:
            self._wake_room()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self.endpoint is not None and data:
            self.endpoint.feed(data)

    async def drain(self) -> None:
        if self.endpoint is not None:
            await self.endpoint.wait_room()

    def write_eof(self) -> None:
        if self.endpoint is not None:
            self.endpoint.feed(b"")
        # 4.34's client worker closes its link writer as soon as its reader ends.
        self.finish_out()

    def close(self) -> None:
        self.finish_out()

    async def wait_closed(self) -> None:
        return None

    @property
    def peer(self) -> tuple[str, int] | None:
        return None

    @property
    def local(self) -> tuple[str, int] | None:
        return None


class MuxWorker:
    """One mux connection of a client: its endpoint and the task of the outbound
    connection that carries it."""

    def __init__(
        self,
        carrier: Carrier,
        concurrency: int,
        *,
        idle_tick: float,
        max_sessions: int | None = MAX_SESSIONS_PER_CONNECTION,
    ) -> None:
        self.concurrency = concurrency  # 0: no limit (a reverse portal's workers)
        self.max_sessions = max_sessions  # None: no limit (a reverse portal's workers)
        self.link = MuxLink()
        self.endpoint = MuxEndpoint(
            MuxRole.CLIENT,
            emit=self.link.push_out,
            drain=self.link.wait_out_room,
            write_paused=self.link.out_paused,
            when_writable=self.link.when_out_room,
        )
        self.link.endpoint = self.endpoint
        self._idle_tick = idle_tick
        self._closed = False
        loop = asyncio.get_running_loop()
        carrier_session = Session(
            inbound_tag="", source=None, destination=tcp(MUX_COOL_HOST, MUX_COOL_PORT)
        )
        self._slog = session_logger(log, carrier_session)
        self.task = loop.create_task(self._carry(carrier, carrier_session))
        self._tick = loop.call_later(idle_tick, self._on_tick)

    @property
    def closed(self) -> bool:
        return self._closed or self.endpoint.closed

    @property
    def spent(self) -> bool:
        """Closed, or 128 sessions opened in total: never takes a session again."""
        limit = self.max_sessions
        return self.closed or (limit is not None and self.endpoint.total_sessions >= limit)

    @property
    def full(self) -> bool:
        """4.34 ``IsFull``: spent, or at ``concurrency`` active sessions."""
        limit = self.concurrency
        return self.spent or (limit > 0 and self.endpoint.active_sessions >= limit)

    def open(self, destination: Destination) -> MuxSubStream:
        return self.endpoint.open(destination)

    async def _carry(self, carrier: Carrier, session: Session) -> None:
        try:
            await carrier.handle(session, self.link)
        except (OSError, ProtocolError) as exc:
            self._slog.info("mux: failed to handle mux client connection: %s", exc)
        finally:
            self.close()
            self.endpoint.abort(ConnectionResetError("mux connection ended"))

    def _on_tick(self) -> None:
        if self.closed:
            return
        if self.endpoint.active_sessions == 0:
            self.close()
        else:
            self._tick = asyncio.get_running_loop().call_later(self._idle_tick, self._on_tick)

    def close(self) -> None:
        """Stop taking sessions and end the request stream (4.34: the worker is done)."""
        if self._closed:
            return
        self._closed = True
        self._tick.cancel()
        self.link.finish_out()

    async def aclose(self) -> None:
        self.close()
        self.endpoint.abort(ConnectionResetError("mux client closed"))
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


class MuxClientOutbound:
    """An outbound whose traffic goes through Mux.Cool over ``carrier`` (the configured
    protocol handler): the ``mux`` setting of an outbound."""

    def __init__(
        self, carrier: Carrier, *, concurrency: int, policy: PolicyTable, enabled: bool = True
    ) -> None:
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"invalid mux concurrency: {concurrency}")
        self.carrier = carrier
        #: False: ``mux`` is given but disabled; only sessions that prefer mux
        #: (``Session.mux_preferred``) use it, the others go to ``carrier`` directly.
        self.enabled = enabled
        self.tag = carrier.tag
        self.concurrency = concurrency
        self.policy = policy
        self.idle_tick = IDLE_TICK_S
        self.workers: list[MuxWorker] = []
        self._spent: list[MuxWorker] = []  # open, but at 128 sessions: never picked again

    def _pick(self) -> MuxWorker:
        workers = self.workers
        for index, worker in enumerate(workers):
            if not worker.full:
                last = len(workers) - 1
                if index != last:  # 4.34 moves the pick to the end of the list
                    workers[index], workers[last] = workers[last], workers[index]
                return worker
        # None is available: 4.34 drops the closed workers here. v2py also moves the
        # spent ones (128 sessions opened) aside: they can never be picked again, and
        # at high connection rates hundreds of them would be scanned on every pick.
        live = [w for w in (*self._spent, *workers) if not w.closed]
        self._spent = [w for w in live if w.spent]
        self.workers = workers = [w for w in live if not w.spent]
        worker = MuxWorker(self.carrier, self.concurrency, idle_tick=self.idle_tick)
        workers.append(worker)
        return worker

    def open(self, destination: Destination) -> MuxSubStream:
        """A new session towards ``destination`` on an available worker."""
        for _ in range(PICK_ATTEMPTS):
            worker = self._pick()
            try:
                return worker.open(destination)
            except LocalProtocolError:
                worker.close()
        raise ConnectionError("unable to find an available mux client")

    async def handle(self, session: Session, stream: Stream) -> None:
        if not self.enabled and not session.mux_preferred:
            await self.carrier.handle(session, stream)
            return
        dest = session.destination
        assert dest is not None
        sub = self.open(dest)
        if log.isEnabledFor(logging.INFO):
            session_logger(log, session).info(
                "mux: dispatching request to %s (session %d)", dest, sub.session_id
            )
        await relay_over(stream, sub, self.policy.for_level(session.level))

    async def handle_packets(self, session: Session, link: PacketLink) -> None:
        if not self.enabled and not session.mux_preferred:
            await self.carrier.handle_packets(session, link)
            return
        dest = session.destination
        assert dest is not None and dest.network is Network.UDP
        sub = self.open(dest)
        slog = session_logger(log, session)
        await relay_packets_over(link, sub, self.policy.for_level(session.level), slog, "mux")

    async def aclose(self) -> None:
        """Close every worker (instance shutdown)."""
        workers, self.workers, self._spent = self.workers + self._spent, [], []
        for worker in workers:
            await worker.aclose()
