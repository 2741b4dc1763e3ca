"""mKCP transport shell: dialer, listener and the ``Stream`` adapter over ``KcpConnection``.

Spec: mkcp.md sections 1 and 5 (v2ray-core ``transport/internet/kcp/{dialer,listener}.go``).
Each adapter owns one pure core and repeats one cycle, as aioquic's
``asyncio/protocol.py``: feed datagrams and the clock, drain events, send what
the core wants sent, and re-arm one ``loop.call_at`` timer from ``get_timer()``.
Datagrams arriving in one loop iteration are fed first and serviced once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from v2py.protocol.mkcp.connection import KcpConnection, KcpState
from v2py.protocol.mkcp.events import ConnectionTerminated, DataReceived, StreamEnded
from v2py.protocol.mkcp.packet import PacketCodec
from v2py.protocol.mkcp.segment import KcpCommand
from v2py.protocol.mkcp.settings import KcpSettings
from v2py.transport.stream import READ_CHUNK_BYTES
from v2py.transport.turns import turns_of

if TYPE_CHECKING:
    from v2py.transport.sockopt import SocketOptions

__all__ = [
    "KcpDialer",
    "KcpListener",
    "KcpStream",
    "default_dialer",
    "dial_kcp",
    "listen_kcp",
]

logger = logging.getLogger(__name__)

#: Stop taking data out of the core above this many unread bytes; the receive
#: window then closes (mKCP's only receive flow control).
READ_HIGH_WATER_BYTES = 1024 * 1024
#: Default cap on concurrent listener sessions (garbage cannot grow the table past it).
DEFAULT_MAX_SESSIONS = 1024
#: Default share of the table that sessions which never carried data may hold (see
#: ``KcpListener``): above it the oldest such session makes room for a new one.
DEFAULT_HALF_OPEN_DIVISOR = 2
#: A session that carried no data for this long is dropped when a new one arrives.
HALF_OPEN_TIMEOUT_S = 10.0
#: Requested SO_RCVBUF/SO_SNDBUF for mKCP sockets (see ``_tune_socket``).
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024
#: Datagrams a listener reads per readiness callback (see ``_ListenerEndpoint``).
LISTENER_READ_BATCH = 4096
#: Largest datagram a listener reads; mKCP's are at most mtu (1460) + nonce + header.
LISTENER_RECV_BYTES = 4096
#: A datagram taken in or sent by a stream counts as this many bytes of the loop's
#: per-iteration budget (``transport/turns.py``): through the Python core one costs
#: about as much loop time as relaying this many bytes.
DATAGRAM_TURN_BYTES = 8 * 1024
#: A stream that has taken in and sent fewer datagrams than this is never held (a new
#: connection's handshake and first reply are far below it).
BULK_AFTER_DATAGRAMS = 128
#: Held datagrams one turn feeds to the core, and datagrams one turn sends; the rest
#: wait for the stream's next turn.
TURN_DATAGRAMS = 256
#: Datagrams a held stream keeps for its turn; beyond, they are dropped (as a full
#: socket buffer drops them) and mKCP retransmits.
HELD_DATAGRAMS_MAX = 2048
_CONV_MASK = 0xFFFF
_SEGMENT_PREFIX_BYTES = 4
_CMD_OFFSET = 2

Address = tuple[str, int]
Handler = Callable[["KcpStream"], Awaitable[None]]

# V2Ray's dialer numbers conversations from a random per-process start (dialer.go).
_conv_counter = int.from_bytes(os.urandom(2), "big")


def _tune_socket(transport: Any) -> None:
    """Enlarge the UDP socket buffers so a window-sized burst is not dropped by the kernel.

    V2Ray sends up to a whole receive window (776 x 1350 B by default) per tick;
    the Linux default of ~208 KiB holds ~90 such datagrams, and every one dropped
    there costs a full RTO. Go's reader goroutine drains the socket concurrently;
    a Python loop cannot, so it needs the buffer (quic-go does the same). The
    kernel caps the value at ``net.core.rmem_max``/``wmem_max``.
    """
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)
        except OSError as exc:
            logger.debug("mKCP: cannot set socket buffer option %d: %s", option, exc)


def _next_conv() -> int:
    global _conv_counter
    _conv_counter = (_conv_counter + 1) & _CONV_MASK
    return _conv_counter


class KcpStream:
    """A ``Stream`` over one :class:`KcpConnection` (see ``transport/stream.py``).

    mKCP has no half-close on the wire (a V2Ray peer that sees our CLOSE option
    discards its own pending output), so :meth:`write_eof` only records intent
    and :meth:`close` is the real end. ``read`` returns ``b""`` once the peer has
    terminated and everything it sent was read.

    Fair turns: every stream of a loop spends the loop's per-iteration budget
    (:func:`~v2py.transport.turns.turns_of`), one ``DATAGRAM_TURN_BYTES`` per datagram
    fed to the core or sent. Once the budget is spent, a bulk stream (past
    ``BULK_AFTER_DATAGRAMS``) is *held*: its arrivals queue unprocessed, its service and
    timer wait, and at a later iteration :meth:`take_turn` does all of it at once.
    Without this, with 100 downloads one iteration flushed every session's window
    (thousands of datagrams, 100-250 ms) and a new connection, which needs several
    iterations on each side, got its first byte after 1-2 s (V2Ray 4.34: ~0.1 s).
    """

    #: mKCP streams are read by tasks (the relay's task mode), not pushed.
    can_push = False
    #: A transport connection: the relay never half-closes it (app/relay.py).
    relays_end = False

    def __init__(
        self,
        conn: KcpConnection,
        loop: asyncio.AbstractEventLoop,
        send: Callable[[bytes], None],
        *,
        peer: Address | None,
        local: Address | None,
        on_terminated: Callable[[], None],
        socket_closed: asyncio.Future[None] | None = None,
    ) -> None:
        self._conn = conn
        self._loop = loop
        self._send = send
        self._peer = peer
        self._local = local
        self._on_terminated = on_terminated
        self._buf = bytearray()
        self._eof = False
        self._closing = False
        self._finished = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._service_scheduled = False
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._closed: asyncio.Future[None] = loop.create_future()
        self._socket_closed = socket_closed
        self.terminate_reason: str | None = None
        self._turns = turns_of(loop)
        self._moved = 0  # datagrams fed to the core and sent: bulk past BULK_AFTER_DATAGRAMS
        self._held = False  # waiting for a turn (in the budget's queue)
        self._inbox: list[bytes] = []  # arrivals held for the turn
        self._feed: Callable[[bytes, float], None] = conn.receive_payload
        #: Arrivals dropped because a held stream's inbox was full.
        self.held_dropped = 0

    # -- Stream interface -------------------------------------------------------

    @property
    def peer(self) -> Address | None:
        return self._peer

    @property
    def local(self) -> Address | None:
        return self._local

    @property
    def connection(self) -> KcpConnection:
        """The pure core (for ``statistics()``)."""
        return self._conn

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        """Return 1..max_bytes bytes, or ``b""`` at the peer's end."""
        while not self._buf:
            if self._eof or self._finished:
                return b""
            waiter = self._loop.create_future()
            self._read_waiter = waiter
            try:
                await waiter
            finally:
                self._read_waiter = None
        was_full = len(self._buf) >= READ_HIGH_WATER_BYTES
        data = bytes(self._buf[:max_bytes])
        del self._buf[:max_bytes]
        if was_full and len(self._buf) < READ_HIGH_WATER_BYTES:
            self._schedule_service()
        return data

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data``; raises ``ConnectionResetError`` once the connection cannot send."""
        if self._closing:
            raise ConnectionResetError("mKCP stream is closed")
        if not self._conn.writable:
            raise ConnectionResetError(f"mKCP connection is {self._conn.state.name}")
        self._conn.send_data(data)
        self._schedule_service()

    async def drain(self) -> None:
        """Wait until the send buffer (``writeBufferSize``) has room, or until the
        connection stops taking writes (the next ``write`` then raises)."""
        conn = self._conn
        while conn.send_buffer_available() == 0 and not self._finished and conn.writable:
            waiter = self._loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter
        if self._finished and self._conn.send_buffer_size():
            raise ConnectionResetError("mKCP connection terminated")

    def write_eof(self) -> None:
        """No-op: mKCP cannot half-close without ending the peer's sending too."""

    def close(self) -> None:
        """Graceful close: pending data is still delivered, then TERMINATE."""
        if self._closing:
            return
        self._closing = True
        self._feed_inbox(len(self._inbox))  # held arrivals first (ACKs, the peer's data)
        # Bring the core's clock up to date so its close timers start now.
        self._conn.handle_timer(self._loop.time())
        self._conn.close()
        self._serve()

    def abort(self) -> None:
        """Close at once, sending one TERMINATE."""
        self._closing = True
        self._inbox.clear()
        self._conn.handle_timer(self._loop.time())
        self._conn.abort()
        self._serve()

    def _discard(self, reason: str) -> None:
        """End at once without sending anything (a listener dropping a half-open session)."""
        self._closing = True
        self._inbox.clear()
        self._conn.discard(reason)
        self._serve()

    async def wait_closed(self) -> None:
        """Wait until the connection is Terminated and its resources (socket) are released."""
        await asyncio.shield(self._closed)
        if self._socket_closed is not None:
            await asyncio.shield(self._socket_closed)

    # -- shell cycle ----------------------------------------------------------------

    def _datagram_received(self, data: bytes) -> None:
        """A whole datagram from this stream's own socket (dialer)."""
        if self._held or (self._moved >= BULK_AFTER_DATAGRAMS and self._turns.busy):
            self._feed = self._conn.receive_datagram
            self._keep(data)
            return
        self._conn.receive_datagram(data, self._loop.time())
        self._moved += 1
        self._turns.charge(DATAGRAM_TURN_BYTES)
        self._schedule_service()

    def _payload_received(self, payload: bytes) -> None:
        """Segments a listener opened and demultiplexed to this session."""
        if self._held or (self._moved >= BULK_AFTER_DATAGRAMS and self._turns.busy):
            self._feed = self._conn.receive_payload
            self._keep(payload)
            return
        self._conn.receive_payload(payload, self._loop.time())
        self._moved += 1
        self._turns.charge(DATAGRAM_TURN_BYTES)
        self._schedule_service()

    def _keep(self, data: bytes) -> None:
        """Hold an arrival for this stream's turn (see the class docstring)."""
        inbox = self._inbox
        if len(inbox) < HELD_DATAGRAMS_MAX:
            inbox.append(data)
        else:
            self.held_dropped += 1
        self._hold()

    def _hold(self) -> None:
        if not self._held and not self._finished:
            self._held = True
            self._turns.wait(self)

    def take_turn(self) -> int:
        """Feed held arrivals (up to ``TURN_DATAGRAMS``), run due timers and send;
        called by the loop's :class:`~v2py.transport.turns.Turns`. Returns the work
        done in budget bytes."""
        if not self._held:
            return 0
        self._held = False
        if self._finished:
            self._inbox.clear()
            return 0
        conn = self._conn
        moved = self._feed_inbox(TURN_DATAGRAMS)
        if not conn.pending_datagrams:
            conn.handle_timer(self._loop.time())
        moved += self._serve(TURN_DATAGRAMS)
        self._moved += moved
        if self._inbox or conn.pending_datagrams:
            self._hold()  # the next turn takes the rest, in order
        return moved * DATAGRAM_TURN_BYTES

    def _feed_inbox(self, most: int) -> int:
        """Give up to ``most`` held arrivals to the core, oldest first; returns how many."""
        inbox = self._inbox
        if not inbox:
            return 0
        if len(inbox) <= most:
            batch, self._inbox = inbox, []
        else:
            batch = inbox[:most]
            del inbox[:most]
        feed = self._feed
        now = self._loop.time()
        for data in batch:
            feed(data, now)
        return len(batch)

    def _schedule_service(self) -> None:
        if not self._service_scheduled and not self._finished:
            self._service_scheduled = True
            self._loop.call_soon(self._service)

    def _service(self) -> None:
        self._service_scheduled = False
        if self._finished or self._held:
            return  # a held stream is served by its turn
        if self._moved >= BULK_AFTER_DATAGRAMS and self._turns.busy:
            self._hold()
            return
        self._serve_now(timer=False)

    def _serve_now(self, *, timer: bool) -> None:
        """Serve outside a turn, within ``TURN_DATAGRAMS``; a longer flush continues in
        turns."""
        conn = self._conn
        if timer and not conn.pending_datagrams:
            conn.handle_timer(self._loop.time())
        sent = self._serve(TURN_DATAGRAMS)
        self._moved += sent
        self._turns.charge(sent * DATAGRAM_TURN_BYTES)
        if conn.pending_datagrams:
            self._hold()

    def _serve(self, limit: int | None = None) -> int:
        """Take events, send what the core has (at most ``limit``); returns the
        datagrams sent."""
        if self._finished:
            return 0
        self._process_events()
        return self._transmit(limit)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._held:
            return  # the turn runs what is due
        if self._moved >= BULK_AFTER_DATAGRAMS and self._turns.busy:
            self._hold()
            return
        self._serve_now(timer=True)

    def _process_events(self) -> None:
        conn = self._conn
        woke = False
        while len(self._buf) < READ_HIGH_WATER_BYTES:
            event = conn.next_event()
            if event is None:
                break
            if isinstance(event, DataReceived):
                self._buf += event.data
            elif isinstance(event, StreamEnded):
                self._eof = True
            elif isinstance(event, ConnectionTerminated):
                self.terminate_reason = event.reason
            woke = True
        if woke:
            self._wake_reader()

    def _wake_reader(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _transmit(self, limit: int | None = None) -> int:
        """Send what the core has (at most ``limit``), wake writers, re-arm the timer;
        returns the datagrams sent."""
        conn = self._conn
        send = self._send
        datagrams = conn.datagrams_to_send(self._loop.time(), limit)
        for datagram in datagrams:
            try:
                send(datagram)
            except OSError as exc:  # e.g. ENOBUFS: a lost datagram, the core retransmits
                logger.debug("mKCP conv %d: send failed: %s", conn.conv, exc)
        if self._drain_waiters and (conn.send_buffer_available() > 0 or not conn.writable):
            self._wake_drainers()
        if conn.terminated:
            self._finish()
            return len(datagrams)
        when = conn.get_timer()
        if when != self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = None if when is None else self._loop.call_at(when, self._on_timer)
            self._timer_at = when
        return len(datagrams)

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _finish(self) -> None:
        if self._finished:
            return
        self._process_events()
        self._finished = True
        self._inbox.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._wake_reader()
        self._wake_drainers()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "mKCP conv %d peer %s ended (%s): %s",
                self._conn.conv,
                self._peer,
                self.terminate_reason,
                self._conn.statistics(),
            )
        try:
            self._on_terminated()
        finally:
            if not self._closed.done():
                self._closed.set_result(None)


class _DialerProtocol(asyncio.DatagramProtocol):
    def __init__(self, lost: asyncio.Future[None]) -> None:
        self.stream: KcpStream | None = None
        self.lost = lost

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.stream is not None:
            self.stream._datagram_received(data)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors on a connected UDP socket; mKCP just retransmits.
        logger.debug("mKCP dialer socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        stream = self.stream
        if stream is not None and not stream._finished:
            stream.abort()
        if not self.lost.done():
            self.lost.set_result(None)


class KcpDialer:
    """Dials mKCP connections and tracks each one until its UDP socket is closed.

    A dialed connection outlives its user: after ``close()`` the close handshake
    runs on its own (up to ~8 s against a 4.34 peer, docs/spec/mkcp.md section 10), holding the
    socket. An owner that stops (``Instance.close()``) calls :meth:`aclose`, or
    :meth:`abort_all` then ``await`` :meth:`wait_closed`, so that no socket
    outlives the event loop. Not bound to a loop; each stream lives on the loop
    that dialed it.
    """

    def __init__(self) -> None:
        self._open: dict[KcpStream, _DialerProtocol] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        """True after :meth:`aclose`: :meth:`dial` then raises ``ConnectionError``."""
        return self._closed

    def streams(self) -> tuple[KcpStream, ...]:
        """The tracked streams whose sockets are still open (oldest first)."""
        return tuple(self._open)

    async def dial(
        self,
        host: str,
        port: int,
        settings: KcpSettings,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        options: SocketOptions | None = None,
        source: str | None = None,
    ) -> KcpStream:
        """Open an mKCP connection to ``host:port`` on a fresh UDP socket
        (docs/spec/mkcp.md section 5); ``options`` (``sockopt``: mark, tproxy) and
        ``source`` (``sendThrough``) apply to it as 4.34's ``DialSystem`` applies them
        to a UDP socket.

        There is no handshake: this returns at once and the first write opens the
        session. Raises ``ValueError`` for invalid settings, ``ConnectionError``
        once this dialer is closed, and ``OSError`` from the socket.
        """
        settings.validate()
        if self._closed:
            raise ConnectionError("mKCP dialer is closed")
        loop = loop or asyncio.get_running_loop()
        lost: asyncio.Future[None] = loop.create_future()
        if options is None and source is None:
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _DialerProtocol(lost), remote_addr=(host, port)
            )
        else:
            from v2py.transport.sockopt import connected_udp_socket

            sock = await connected_udp_socket(host, port, source=source, options=options)
            try:
                transport, protocol = await loop.create_datagram_endpoint(
                    lambda: _DialerProtocol(lost), sock=sock
                )
            except BaseException:
                sock.close()
                raise
        _tune_socket(transport)
        conn = KcpConnection(
            _next_conv(), settings, now=loop.time(), rng=os.urandom, is_client=True
        )
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")

        def send(datagram: bytes) -> None:
            transport.sendto(datagram)

        stream = KcpStream(
            conn,
            loop,
            send,
            peer=(peer[0], peer[1]) if peer else None,
            local=(local[0], local[1]) if local else None,
            on_terminated=transport.close,
            socket_closed=lost,
        )
        protocol.stream = stream
        self._open[stream] = protocol
        lost.add_done_callback(lambda _: self._open.pop(stream, None))
        stream._service()
        return stream

    def _live(self) -> list[KcpStream]:
        # A stream of a loop that is gone cannot be serviced any more; forget it.
        for stream in [s for s in self._open if s._loop.is_closed()]:
            del self._open[stream]
        return list(self._open)

    def close_all(self) -> None:
        """Start a graceful close on every tracked stream (queued data first, then TERMINATE)."""
        for stream in self._live():
            stream.close()

    def abort_all(self) -> None:
        """End every tracked stream now: one TERMINATE each, then the socket is closed."""
        for stream in self._live():
            stream.abort()

    async def wait_closed(self) -> None:
        """Wait until the sockets of all tracked streams on the running loop are closed."""
        loop = asyncio.get_running_loop()
        pending = [p.lost for s, p in list(self._open.items()) if s._loop is loop]
        if pending:
            await asyncio.gather(*(asyncio.shield(f) for f in pending))

    async def aclose(self, grace: float = 0.0) -> None:
        """Refuse new dials, let tracked streams close for up to ``grace`` s, abort the rest.

        Returns once every socket is closed. ``grace`` 0 aborts at once, which an
        exiting process wants: the peer gets a TERMINATE either way.
        """
        self._closed = True
        if grace > 0:
            self.close_all()
            try:
                async with asyncio.timeout(grace):
                    await self.wait_closed()
            except TimeoutError:
                pass
        self.abort_all()
        await self.wait_closed()


_default_dialer = KcpDialer()


def default_dialer() -> KcpDialer:
    """The process-wide dialer behind :func:`dial_kcp` when no ``dialer`` is given.

    It is shared by every owner in the process: to release its sockets use
    ``abort_all()`` then ``await wait_closed()``; ``aclose()`` would make every
    later default dial fail. An owner of its own dialer uses ``aclose()``.
    """
    return _default_dialer


async def dial_kcp(
    host: str,
    port: int,
    settings: KcpSettings,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    dialer: KcpDialer | None = None,
) -> KcpStream:
    """Open an mKCP connection with ``dialer`` (default: :func:`default_dialer`).

    See :meth:`KcpDialer.dial`.
    """
    return await (dialer or _default_dialer).dial(host, port, settings, loop=loop)


class _ListenerEndpoint:
    """The listener's UDP socket, read in large batches through ``loop.add_reader``.

    Every session of a listener shares this one socket. An asyncio (uvloop)
    datagram transport reads at most 32 datagrams per loop iteration, while the
    iteration's session timers may send thousands: under load the receive queue
    overflows and the ACKs that would stop the retransmissions are what the
    kernel drops (congestion collapse; at 500 busy sessions 98% of incoming
    datagrams were lost). Draining up to ``LISTENER_READ_BATCH`` per callback
    keeps reading on par with sending. A send that would block is a lost
    datagram, which mKCP retransmits (as it does for ENOBUFS).
    """

    def __init__(
        self, sock: socket.socket, loop: asyncio.AbstractEventLoop, protocol: KcpListener
    ) -> None:
        self._sock = sock
        self._loop = loop
        self._protocol = protocol
        self._closed = False
        self.socket_sendto = sock.sendto
        loop.add_reader(sock.fileno(), self._read_ready)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return self._sock
        if name == "sockname":
            return self._sock.getsockname()
        return default

    def _read_ready(self) -> None:
        recv = self._sock.recvfrom
        protocol = self._protocol
        for _ in range(LISTENER_READ_BATCH):
            if self._closed:
                return
            try:
                data, addr = recv(LISTENER_RECV_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                protocol.error_received(exc)
                return
            protocol.datagram_received(data, addr)

    def sendto(self, data: bytes, addr: Any) -> None:
        if self._closed:
            return
        try:
            self._sock.sendto(data, addr)
        except OSError as exc:  # EAGAIN included: a lost datagram
            self._protocol.error_received(exc)

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, None)


class KcpListener(asyncio.DatagramProtocol):
    """One UDP socket serving many mKCP sessions keyed by (IP, port, conv)
    (docs/spec/mkcp.md section 5).

    A new key creates a session unless its first segment is TERMINATE (as in 4.34).
    The table is bounded (``max_sessions``), which 4.34's is not; the bound must not
    become a lockout, so admission works as follows.

    Without ``seed`` the packet check is public (an FNV hash), so anybody can forge a
    22-byte PING for a fresh conv id from any (spoofed) address, and each one opens a
    session. A session is *half-open* until it carried data (a DATA segment arrived,
    or the application wrote): a real client sends its request at once (VMess is
    client-first), a forged ping never does. Half-open sessions are the cheap class:

    * they are dropped silently (``KcpConnection.discard``: no TERMINATE, which would
      only be reflected at a spoofed address) and their handler sees EOF;
    * a new session never waits for room while a half-open one exists: above the
      half-open budget (``max_half_open``, by default half the table) and whenever the
      table is full, the *oldest* half-open session is dropped (after sessions that
      only wait out TERMINATING, which are dropped first as before). Only a table
      full of sessions that carried data refuses a new peer;
    * one that stays half-open for ``HALF_OPEN_TIMEOUT_S`` is dropped at the next
      admission (pings do not keep it; the ordinary 30 s idle timeout still applies
      to every session).

    Dropping a real client that is still half-open loses nothing: nothing was
    numbered on either side yet (no DATA either way), so its next datagram opens a
    fresh session whose windows start where the client's are, at 0, and its first
    DATA makes it a full session at once. A flood therefore only burns CPU; memory
    stays bounded by ``max_sessions``, and existing and new real clients are served.

    Per-address quotas were rejected: without ``seed`` the source address is as easy
    to forge as the packet, and real clients behind one NAT share an address, so a
    quota would refuse them while a spoofing flood is untouched. A forger who also
    sends DATA makes full sessions; those are bounded by the inbound's handshake
    timeout and then linger in TERMINATING, which is evicted first. ``seed`` makes
    forging impossible without the key and is the real defence on hostile networks.
    """

    def __init__(
        self,
        settings: KcpSettings,
        handler: Handler,
        loop: asyncio.AbstractEventLoop,
        *,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_half_open: int | None = None,
    ) -> None:
        self._settings = settings
        self._handler = handler
        self._loop = loop
        self._max_sessions = max_sessions
        self._max_half_open = (
            max(1, max_sessions // DEFAULT_HALF_OPEN_DIVISOR)
            if max_half_open is None
            else max(1, min(max_half_open, max_sessions))
        )
        self._codec = PacketCodec(settings, os.urandom)
        self._sessions: dict[tuple[str, int, int], KcpStream] = {}
        # Sessions that have not carried data yet, oldest first, with their creation time.
        self._half_open: dict[tuple[str, int, int], float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._transport: asyncio.DatagramTransport | None = None
        self._accepting = True
        self._closed_fut: asyncio.Future[None] = loop.create_future()
        self.dropped = 0
        self.refused = 0
        #: Refused because every session in a full table had carried data.
        self.refused_full = 0
        self.evicted = 0
        self.evicted_half_open = 0

    @property
    def session_count(self) -> int:
        """Sessions currently in the table."""
        return len(self._sessions)

    @property
    def half_open_count(self) -> int:
        """Sessions in the table that have not carried data yet."""
        self._settle_half_open()
        return len(self._half_open)

    def sessions(self) -> tuple[KcpStream, ...]:
        """The sessions currently in the table (oldest first)."""
        return tuple(self._sessions.values())

    @property
    def address(self) -> Address:
        """The bound (host, port)."""
        assert self._transport is not None
        name = self._transport.get_extra_info("sockname")
        return (name[0], name[1])

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # CPython 3.11's selector datagram transport is not a DatagramTransport subclass.
        self._transport = cast(asyncio.DatagramTransport, transport)
        _tune_socket(self._transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed_fut.done():
            self._closed_fut.set_result(None)

    def error_received(self, exc: Exception) -> None:
        logger.debug("mKCP listener socket error: %s", exc)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        payload = self._codec.open(data)
        if payload is None or len(payload) < _SEGMENT_PREFIX_BYTES:
            self.dropped += 1
            return
        conv = int.from_bytes(payload[:2], "big")
        key = (addr[0], addr[1], conv)
        stream = self._sessions.get(key)
        if stream is None:
            if not self._accepting or payload[_CMD_OFFSET] == KcpCommand.TERMINATE:
                self.refused += 1
                return
            if not self._make_room():
                self.refused += 1
                self.refused_full += 1
                return
            stream = self._new_session(key, (addr[0], addr[1]))
            self._half_open[key] = self._loop.time()
        stream._payload_received(payload)
        if key in self._half_open and stream.connection.carried_data:
            del self._half_open[key]

    def _make_room(self) -> bool:
        """Drop sessions so that one more fits; False if every session carried data.

        Amortised O(1) per new session: entries leave ``_half_open`` from the front only.
        """
        half_open = self._half_open
        if half_open:
            deadline = self._loop.time() - HALF_OPEN_TIMEOUT_S
            while half_open and next(iter(half_open.values())) <= deadline:
                self._drop_oldest_half_open()
            while len(half_open) >= self._max_half_open:
                self._drop_oldest_half_open()
        if len(self._sessions) < self._max_sessions:
            return True
        if self._evict_lingering():
            return True
        while half_open and len(self._sessions) >= self._max_sessions:
            self._drop_oldest_half_open()
        return len(self._sessions) < self._max_sessions

    def _settle_half_open(self) -> None:
        """Forget half-open entries whose session has since written data (server-first)."""
        sessions = self._sessions
        for key in [
            k
            for k in self._half_open
            if (stream := sessions.get(k)) is None or stream.connection.carried_data
        ]:
            del self._half_open[key]

    def _drop_oldest_half_open(self) -> None:
        """Pop the oldest entry; drop its session unless it has carried data since."""
        key = next(iter(self._half_open))
        del self._half_open[key]
        stream = self._sessions.get(key)
        if stream is not None and not stream.connection.carried_data:
            stream._discard("half-open session dropped")  # on_terminated leaves the table
            self._sessions.pop(key, None)
            self.evicted_half_open += 1

    def _evict_lingering(self) -> bool:
        """Make room by ending the oldest session that only waits out TERMINATING.

        Such a session has no data left and a silent peer (the 8 s close timer of
        docs/spec/mkcp.md section 10); under a steady connection rate these would otherwise fill
        the table and refuse live clients.
        """
        for stream in self._sessions.values():
            if stream.connection.state is KcpState.TERMINATING:
                stream.abort()  # one more TERMINATE; its on_terminated leaves the table
                self.evicted += 1
                return len(self._sessions) < self._max_sessions
        return False

    def _new_session(self, key: tuple[str, int, int], addr: Address) -> KcpStream:
        transport = self._transport
        assert transport is not None
        conn = KcpConnection(
            key[2],
            self._settings,
            now=self._loop.time(),
            rng=os.urandom,
            is_client=False,
            codec=self._codec,
        )

        if isinstance(transport, _ListenerEndpoint):
            # Straight to the socket: the stream counts a failed send as a lost datagram.
            sendto = transport.socket_sendto

            def send(datagram: bytes) -> None:
                sendto(datagram, addr)

        else:

            def send(datagram: bytes) -> None:
                transport.sendto(datagram, addr)

        def forget() -> None:
            if self._sessions.get(key) is stream:
                del self._sessions[key]
                self._half_open.pop(key, None)

        stream = KcpStream(
            conn, self._loop, send, peer=addr, local=self.address, on_terminated=forget
        )
        self._sessions[key] = stream
        task = self._loop.create_task(self._run_handler(stream))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return stream

    async def _run_handler(self, stream: KcpStream) -> None:
        try:
            await self._handler(stream)
        except asyncio.CancelledError:
            raise
        except Exception:
            # One bad connection never stops the listener.
            logger.exception("mKCP session %s conv %d failed", stream.peer, stream.connection.conv)
        finally:
            stream.close()

    def stop_accepting(self) -> None:
        """Refuse new sessions; existing ones continue."""
        self._accepting = False

    def close(self) -> None:
        """Stop accepting, abort every session (one TERMINATE each) and close the socket."""
        self._accepting = False
        for stream in list(self._sessions.values()):
            stream.abort()
        self._sessions.clear()
        self._half_open.clear()
        for task in self._tasks:
            task.cancel()
        if self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        """Wait for the socket and all handler tasks to finish."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._transport is not None:
            await asyncio.shield(self._closed_fut)


async def listen_kcp(
    host: str,
    port: int,
    settings: KcpSettings,
    handler: Handler,
    *,
    loop: asyncio.AbstractEventLoop | None = None,
    max_sessions: int = DEFAULT_MAX_SESSIONS,
    max_half_open: int | None = None,
    reuse_port: bool = False,
    options: SocketOptions | None = None,
) -> KcpListener:
    """Serve mKCP on UDP ``host:port``; each new session runs ``handler(stream)``.
    ``options`` (``sockopt``) are set on the socket as 4.34 sets a listener's.

    ``reuse_port`` sets SO_REUSEPORT: worker processes share the port and the
    kernel keeps each peer address on one of them.
    Raises ``ValueError`` for invalid settings and ``OSError`` from the socket.
    """
    settings.validate()
    loop = loop or asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP, flags=socket.AI_PASSIVE
    )
    if not infos:
        raise OSError(f"getaddrinfo({host!r}) returned nothing")
    from v2py.transport.sockopt import bound_udp_socket

    family, _, proto, _, address = infos[0]
    sock = bound_udp_socket(family, address, options, reuse_port=reuse_port, proto=proto)
    try:
        listener = KcpListener(
            settings, handler, loop, max_sessions=max_sessions, max_half_open=max_half_open
        )
        endpoint = _ListenerEndpoint(sock, loop, listener)
    except BaseException:
        sock.close()
        raise
    listener.connection_made(cast(asyncio.BaseTransport, endpoint))
    return listener
