"""The asyncio side of one Mux.Cool connection: sub-connections as streams.

:class:`MuxEndpoint` owns a pure :class:`~v2py.protocol.mux.MuxConnection` and turns
each session into a :class:`MuxSubStream`, which has the ordinary
:class:`~v2py.transport.stream.Stream` shape, so the relay, sniffing and every
outbound run over a sub-connection unchanged (v2ray-core ``common/mux`` gives each
session a pipe pair the same way).

Input is pushed in with :meth:`MuxEndpoint.feed`; output leaves through the
``emit`` callback and backpressure comes from ``drain``. The server side
(``app/mux_server.py``) reads the inbound's stream into ``feed``; the client side
(``app/mux_client.py``) presents the endpoint as a stream to the outbound that
carries it.

Flow control: Mux.Cool has none per session, so a sub-connection whose reader stops
can only be buffered or stall the whole connection. Each session buffers up to
``session_buffer`` bytes and the connection up to ``connection_buffer``; beyond
either, :attr:`MuxEndpoint.paused` is true and the feeder stops reading the
underlying stream until the readers catch up (4.34 blocks its reader loop on a full
64 KiB pipe in the same way). Memory per connection stays bounded.

End semantics are 4.34's (``common/mux/{client,server}.go``):

* A client's ``write_eof`` sends End and also ends its read side: TCP half-close is
  not carried (buffered data is still delivered). A server's ``write_eof`` sends End.
* End received ends the read side (EOF); writing stays possible (a server answers
  on; a client's further data is refused by the server with End, as in 4.34).
* End with the error option, or the mux connection failing, aborts both sides
  (``ConnectionResetError``).
* ``finish(error=...)`` is the owner's last word: End (with E on error) unless sent.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable

from v2py.common.net import Destination, Network
from v2py.protocol.mux import (
    MAX_PACKET_BYTES,
    ConnectionEnded,
    DataReceived,
    MuxConnection,
    MuxRole,
    SessionEnded,
    SessionOpened,
)
from v2py.transport.stream import READ_CHUNK_BYTES, PushTarget

#: ``when_writable(callback)`` of the underlying connection (see PushStream).
WhenWritable = Callable[[Callable[[BaseException | None], None]], None]

log = logging.getLogger(__name__)

#: How long a client waits for a session's first payload before sending New alone
#: (4.34 ``writeFirstPayload``: CopyOnceTimeout of 100 ms).
FIRST_PAYLOAD_WAIT_S = 0.1
#: Per-session and per-connection input buffers before the feeder pauses.
DEFAULT_SESSION_BUFFER_BYTES = 512 * 1024
DEFAULT_CONNECTION_BUFFER_BYTES = 4 * 1024 * 1024


class QueuedPush:
    """Push mode (:class:`~v2py.transport.stream.PushStream`) over a queue of byte
    chunks: a mux session's input (:class:`MuxSubStream`), a mux link's frames
    (``app/mux_client.py`` ``MuxLink``).

    ``_queue_in(data)`` hands ``data`` straight to the push target when pushing, not
    paused and nothing is queued; else it queues it (``_held``, ``buffered`` bytes)
    and flushes (pushing) or wakes the reader (``_notify``, ``_wake``). ``_push_flush`` hands the
    whole queue on as one batch (``_hand_on``), then, unless the target stopped or
    paused us, calls ``_push_end`` (the end, an error, or nothing yet). Subclasses set
    ``_held``, ``buffered``, ``_push`` and ``_push_paused`` in ``__init__``.
    """

    _held: collections.deque[bytes]
    buffered: int
    _push: PushTarget | None
    _push_paused: bool

    def _wake(self) -> None:
        raise NotImplementedError

    def _hand_on(self, target: PushTarget, data: bytes) -> None:
        target.pushed_data(data)

    def _push_end(self, target: PushTarget) -> None:
        raise NotImplementedError

    def _queue_in(self, data: bytes) -> None:
        push = self._push
        if push is not None and not self._push_paused and not self._held:
            push.pushed_data(data)
            return
        self._held.append(data)
        self.buffered += len(data)
        self._notify()

    def _notify(self) -> None:
        """What is held changed (data, the end): flush when pushing, else wake."""
        if self._push is not None:
            self._push_flush()
        else:
            self._wake()

    def start_push(self, target: PushTarget) -> None:
        self._push = target
        self._push_paused = False
        self._push_flush()

    def stop_push(self) -> None:
        self._push = None

    def pause_push(self) -> None:
        self._push_paused = True

    def resume_push(self) -> None:
        self._push_paused = False
        self._push_flush()

    def _push_flush(self) -> None:
        target = self._push
        if target is None or self._push_paused:
            return
        if self._held:
            data = b"".join(self._held)
            self._held.clear()
            self.buffered = 0
            self._hand_on(target, data)
            if self._push is not target or self._push_paused:
                return
        self._push_end(target)


class MuxSubStream(QueuedPush):
    """One Mux.Cool session seen as a byte stream (or, for UDP, a datagram stream).

    Made by :class:`MuxEndpoint`; ``destination`` is the session's target.
    """

    def __init__(self, endpoint: MuxEndpoint, session_id: int, destination: Destination) -> None:
        self._endpoint = endpoint
        self.session_id = session_id
        self.destination = destination
        self.is_packet = destination.network is Network.UDP
        self._held: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self._read_eof = False
        self._abort: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.end_sent = False
        self._first_timer: asyncio.TimerHandle | None = None
        self.dropped_datagrams = 0
        self._push: PushTarget | None = None
        self._push_paused = False

    # -- fed by the endpoint --------------------------------------------------------
    def _deliver(self, data: bytes) -> None:
        if self._read_eof or self._abort is not None:
            return
        self._queue_in(data)
        if self.buffered:
            self._endpoint._grown = True

    def _end_input(self) -> None:
        self._read_eof = True
        self._notify()

    def _aborted(self, exc: BaseException) -> None:
        if self._abort is None:
            self._abort = exc
        self._drop_inbox()
        self._cancel_first_timer()
        self._notify()

    # -- push mode (QueuedPush): session data handed on as frames arrive ---------------
    @property
    def can_push(self) -> bool:
        return self._endpoint.can_push

    @property
    def write_paused(self) -> bool:
        return self._endpoint.write_paused()

    def when_writable(self, callback: Callable[[BaseException | None], None]) -> None:
        self._endpoint.when_writable(callback)

    def _hand_on(self, target: PushTarget, data: bytes) -> None:
        # Hand the batch on before telling the endpoint there is room: room can resume
        # the feeder at once, and what it feeds must come after this batch.
        target.pushed_data(data)
        self._endpoint._consumed()

    def _push_end(self, target: PushTarget) -> None:
        """After the data: the abort or the end."""
        if self._abort is not None:
            self._push = None
            target.pushed_error(self._abort)
        elif self._read_eof:
            self._push = None
            target.pushed_eof()

    def _drop_inbox(self) -> None:
        if self.buffered:
            self._held.clear()
            self.buffered = 0
            self._endpoint._consumed()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_input(self) -> bool:
        """True when there is input to take; False at the end. Raises when aborted."""
        while not self._held:
            if self._abort is not None:
                raise self._abort
            if self._read_eof:
                return False
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return True

    # -- Stream ---------------------------------------------------------------------
    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        """Up to ``max_bytes`` of the session's data; ``b""`` at its end. Raises
        ConnectionResetError when the session or the mux connection was aborted."""
        if not await self._wait_input():
            return b""
        inbox = self._held
        first = inbox[0]
        if len(first) > max_bytes:
            inbox[0] = first[max_bytes:]
            data = first[:max_bytes]
        elif len(inbox) == 1 or len(first) + len(inbox[1]) > max_bytes:
            data = inbox.popleft()
        else:
            parts = [inbox.popleft()]
            size = len(parts[0])
            while inbox and size + len(inbox[0]) <= max_bytes:
                part = inbox.popleft()
                parts.append(part)
                size += len(part)
            data = b"".join(parts)
        self.buffered -= len(data)
        self._endpoint._consumed()
        return data

    async def read_datagram(self) -> bytes | None:
        """The next datagram of a UDP session, or None at its end."""
        if not await self._wait_input():
            return None
        data = self._held.popleft()
        self.buffered -= len(data)
        self._endpoint._consumed()
        return data

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` (queued on the mux connection; ``drain`` for backpressure).

        Raises ConnectionResetError after an abort, BrokenPipeError after our End.
        """
        if self._abort is not None:
            raise ConnectionResetError("mux session aborted") from self._abort
        if self.end_sent:
            raise BrokenPipeError("mux session already ended")
        if not data:
            return
        self._cancel_first_timer()
        self._endpoint._send(self.session_id, data)

    def write_datagram(self, data: bytes) -> None:
        """Send one datagram of a UDP session (one frame). Dropped when above 2048 bytes
        (a 4.34 peer would end the session over it; its UDP reads never exceed that
        size, so it never sends one either) or while the connection is write-paused."""
        if len(data) > MAX_PACKET_BYTES or self._endpoint.write_paused():
            # UDP may drop; a flood must not queue without bound behind a slow connection
            self.dropped_datagrams += 1
            return
        self.write(data)

    async def drain(self) -> None:
        if self._abort is not None:
            raise ConnectionResetError("mux session aborted") from self._abort
        await self._endpoint.drain()

    def write_eof(self) -> None:
        """Send End; on a client this also ends reading (4.34 closes both ways)."""
        if self.end_sent or self._abort is not None:
            return
        self._send_end(error=False)
        if self._endpoint.role is MuxRole.CLIENT:
            self._end_input()

    def finish(self, *, error: bool) -> None:
        """The owner is done: End (with the error option when ``error``) unless sent,
        and no more input. Idempotent."""
        if not self.end_sent:
            self._send_end(error=error)
        self._end_input()
        self._drop_inbox()
        self._endpoint._forget(self)

    def never_end(self) -> None:
        """This side never writes to nor ends the session, not even when the connection
        is aborted (4.34's reverse bridge and the portal's control session)."""
        self.end_sent = True
        self._cancel_first_timer()
        self._endpoint.core.stop_sending(self.session_id)

    def close(self) -> None:
        """Abort the session at once (End with the error option unless sent)."""
        self.finish(error=True)

    async def wait_closed(self) -> None:
        return None

    @property
    def peer(self) -> tuple[str, int] | None:
        return self._endpoint.peer

    @property
    def local(self) -> tuple[str, int] | None:
        return self._endpoint.local

    # -- client first payload ------------------------------------------------------------
    def _arm_first_timer(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._first_timer = loop.call_later(delay, self._first_timeout)

    def _first_timeout(self) -> None:
        self._first_timer = None
        if not self.end_sent and self._abort is None:
            self._endpoint._send(self.session_id, b"")

    def _cancel_first_timer(self) -> None:
        if self._first_timer is not None:
            self._first_timer.cancel()
            self._first_timer = None

    def _send_end(self, *, error: bool) -> None:
        self._cancel_first_timer()
        self.end_sent = True
        self._endpoint._send_end(self.session_id, error)


class MuxEndpoint:
    """One end of a mux connection in the shell.

    * ``emit(data)`` writes frames to the underlying connection; ``drain()`` waits
      for its backpressure to clear.
    * ``on_open(sub)`` (server) is called for each New frame.
    * ``session_buffer`` / ``connection_buffer`` bound the input held for readers.
    * ``peer`` / ``local``: the underlying connection's addresses, for sub-streams.
    * ``write_paused()`` / ``when_writable(cb)``: the underlying connection's write
      state as a :class:`~v2py.transport.stream.PushStream` has it; with both given,
      sub-streams can push (the relay's fast path).
    """

    def __init__(
        self,
        role: MuxRole,
        *,
        emit: Callable[[bytes], None],
        drain: Callable[[], Awaitable[None]],
        on_open: Callable[[MuxSubStream], None] | None = None,
        session_buffer: int = DEFAULT_SESSION_BUFFER_BYTES,
        connection_buffer: int = DEFAULT_CONNECTION_BUFFER_BYTES,
        first_payload_wait: float = FIRST_PAYLOAD_WAIT_S,
        peer: tuple[str, int] | None = None,
        local: tuple[str, int] | None = None,
        write_paused: Callable[[], bool] | None = None,
        when_writable: WhenWritable | None = None,
    ) -> None:
        self.role = role
        self._write_paused = write_paused
        self._when_writable = when_writable
        self._room_callbacks: list[Callable[[], None]] = []
        self._writable_callbacks: list[Callable[[BaseException | None], None]] = []
        self.core = MuxConnection(role)
        self._emit = emit
        self._drain = drain
        self._on_open = on_open
        self._session_buffer = session_buffer
        self._connection_buffer = connection_buffer
        self._first_payload_wait = first_payload_wait
        self.peer = peer
        self.local = local
        self._subs: dict[int, MuxSubStream] = {}
        self._drain_fut: asyncio.Future[None] | None = None
        self._room: asyncio.Future[None] | None = None
        self._paused = False
        # Some session's buffer grew since the last _check_room (only that can pause).
        self._grown = False
        self._flush_queued = False
        self.closed = False

    # -- state ------------------------------------------------------------------------
    @property
    def can_push(self) -> bool:
        """Whether sub-streams offer push mode (the underlying write state is known)."""
        return self._write_paused is not None and self._when_writable is not None

    def write_paused(self) -> bool:
        """True while the underlying connection is above its write high-water mark."""
        return self._write_paused is not None and self._write_paused()

    def when_writable(self, callback: Callable[[BaseException | None], None]) -> None:
        """Call ``callback(None)`` once the underlying connection takes writes again
        (``callback(exc)`` if it is lost first). Any number of sub-streams may wait: the
        underlying stream holds one callback, which calls them all."""
        if self._when_writable is None:
            callback(None)
            return
        self._writable_callbacks.append(callback)
        if len(self._writable_callbacks) == 1:
            self._when_writable(self._on_writable)

    def _on_writable(self, exc: BaseException | None) -> None:
        callbacks, self._writable_callbacks = self._writable_callbacks, []
        for callback in callbacks:
            callback(exc)

    @property
    def active_sessions(self) -> int:
        """Sessions still receiving (4.34's session map size)."""
        return self.core.active_sessions

    @property
    def total_sessions(self) -> int:
        return self.core.total_sessions

    @property
    def buffered(self) -> int:
        """Input bytes held for sub-stream readers."""
        return sum(sub.buffered for sub in self._subs.values())

    @property
    def paused(self) -> bool:
        """True while a reader is behind by more than the buffers allow."""
        return self._paused

    def streams(self) -> list[MuxSubStream]:
        """The sub-streams that have not finished."""
        return list(self._subs.values())

    # -- client -----------------------------------------------------------------------
    def open(self, destination: Destination) -> MuxSubStream:
        """Client: a new session towards ``destination``. Its New frame leaves with the
        first write, or alone after the first-payload wait. Raises LocalProtocolError
        when the connection is over."""
        session_id = self.core.open_session(destination)
        sub = MuxSubStream(self, session_id, destination)
        self._subs[session_id] = sub
        sub._arm_first_timer(self._first_payload_wait)
        return sub

    # -- input ------------------------------------------------------------------------
    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from the underlying connection (``b""``: it ended). Raises MuxError when
        the peer broke the protocol; every session is then aborted (End with the error
        option sent for each, as 4.34's server does)."""
        core = self.core
        core.receive_data(data)
        try:
            while (event := core.next_event()) is not None:
                if isinstance(event, DataReceived):
                    sub = self._subs.get(event.session_id)
                    if sub is not None:
                        sub._deliver(event.data)
                elif isinstance(event, SessionOpened):
                    self._opened(event.session_id, event.destination)
                elif isinstance(event, SessionEnded):
                    self._ended(event.session_id, event.error)
                elif isinstance(event, ConnectionEnded):
                    self._connection_ended()
        except Exception as exc:
            self.abort(exc)
            raise
        finally:
            self._flush()
            if self._paused or self._grown:
                self._check_room()

    def _opened(self, session_id: int, destination: Destination) -> None:
        old = self._subs.get(session_id)
        if old is not None:
            old._aborted(ConnectionResetError("mux session id reused"))
        sub = MuxSubStream(self, session_id, destination)
        self._subs[session_id] = sub
        if self._on_open is not None:
            self._on_open(sub)

    def _ended(self, session_id: int, error: bool) -> None:
        sub = self._subs.get(session_id)
        if sub is None:
            return
        if error:
            sub._aborted(ConnectionResetError("mux session ended with an error"))
        else:
            sub._end_input()

    def _connection_ended(self) -> None:
        if self.role is MuxRole.CLIENT:
            # 4.34's client worker is done once its reader ends: every session closes,
            # with no End frame (it closes its link writer at once) [verified with a
            # reverse portal, which is a plain client worker].
            self.abort(ConnectionResetError("mux connection ended"), send_end=False)
            return
        # 4.34's server closes each session's uplink (EOF) and lets responses finish.
        for sub in list(self._subs.values()):
            sub._end_input()

    def abort(self, exc: BaseException, *, send_end: bool = True) -> None:
        """End the connection: every sub-stream is aborted, End with the error option is
        sent for each session not ended yet (none when not ``send_end``). Flush
        afterwards (``feed`` does)."""
        if self.closed:
            return
        self.closed = True
        for sub in list(self._subs.values()):
            sub._aborted(exc)
            if not sub.end_sent:
                sub.end_sent = True
                if send_end:
                    self.core.send_end(sub.session_id, error=True)
        for session_id in self.core.sendable_session_ids():
            if send_end:
                self.core.send_end(session_id, error=True)
            else:
                self.core.stop_sending(session_id)
        self._subs.clear()
        self._flush()
        self._paused = False
        self._wake_room()

    # -- output -----------------------------------------------------------------------
    def _send(self, session_id: int, data: bytes | bytearray | memoryview) -> None:
        if self.closed:
            raise ConnectionResetError("mux connection closed")
        self.core.send_data(session_id, data)
        self._flush_soon()

    def _send_end(self, session_id: int, error: bool) -> None:
        if self.closed:
            return
        self.core.send_end(session_id, error=error)
        self._flush_soon()

    def _flush_soon(self) -> None:
        """Emit what the sessions queued at the end of this loop turn: frames written by
        several sessions (or data and End of one) in one turn leave in one write of the
        underlying stream, as 4.34's link writer batches them."""
        if not self._flush_queued:
            self._flush_queued = True
            asyncio.get_running_loop().call_soon(self._queued_flush)

    def _queued_flush(self) -> None:
        self._flush_queued = False
        self._flush()

    def _flush(self) -> None:
        out = self.core.data_to_send()
        if out:
            try:
                self._emit(out)
            except Exception as exc:  # the underlying connection is gone
                log.debug("mux: emit failed: %s", exc)
                self.abort(exc if isinstance(exc, ConnectionError) else ConnectionResetError())

    async def drain(self) -> None:
        """Wait for the underlying connection's backpressure (one wait shared by all
        sub-streams)."""
        fut = self._drain_fut
        if fut is None or fut.done():
            fut = self._drain_fut = asyncio.ensure_future(self._drain())
        await asyncio.shield(fut)

    def _forget(self, sub: MuxSubStream) -> None:
        if self._subs.get(sub.session_id) is sub:
            del self._subs[sub.session_id]
        if self._paused:  # a session going away only frees room
            self._check_room()

    # -- flow control -------------------------------------------------------------------
    def _consumed(self) -> None:
        if self._paused:
            self._check_room()

    def _check_room(self) -> None:
        """Pause input when a session or the connection holds too much (O(sessions):
        called only while paused or after a buffer grew; a server keeps ended
        sessions for their downlinkOnly time, hundreds on a busy connection)."""
        self._grown = False
        total = 0
        limit = self._session_buffer
        over = False
        for sub in self._subs.values():
            total += sub.buffered
            if sub.buffered > limit:
                over = True
        self._paused = over or total > self._connection_buffer
        if not self._paused:
            self._wake_room()

    def _wake_room(self) -> None:
        room = self._room
        if room is not None:
            self._room = None
            if not room.done():
                room.set_result(None)
        if self._room_callbacks:
            callbacks, self._room_callbacks = self._room_callbacks, []
            for callback in callbacks:
                callback()

    def when_room(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once the buffers have room (at once when not paused)."""
        if self._paused:
            self._room_callbacks.append(callback)
        else:
            callback()

    async def wait_room(self) -> None:
        """Return once the buffers have room again (at once when not paused)."""
        while self._paused:
            if self._room is None:
                self._room = asyncio.get_running_loop().create_future()
            await self._room
