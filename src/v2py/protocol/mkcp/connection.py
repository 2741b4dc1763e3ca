"""One mKCP connection as a sans-I/O datagram core.

Spec: mkcp.md sections 5, 7-12 (v2ray-core ``transport/internet/kcp/connection.go``).
Symmetric: dialer and listener sessions run the same logic. The shell feeds
datagrams and the clock in, fires :meth:`KcpConnection.handle_timer` at
:meth:`KcpConnection.get_timer`, and sends what :meth:`datagrams_to_send` returns.

Theory of operation
-------------------
Two periodic "updaters" from V2Ray drive one ``flush``: the data updater (every
``tti`` ms while there is something to send or acknowledge; woken by writes,
incoming DATA/ACK and reads) and the ping updater (every 5 s until Terminated).
A flush checks the close timers, sends due ACKs, (re)transmits due DATA, and
pings every 3 s. Internally time is integer milliseconds since construction,
as on the wire.

State machine (docs/spec/mkcp.md section 11)::

    event                  ACTIVE        READY_TO_CLOSE PEER_CLOSED  TERMINATING  PEER_TERMINATING
    close()                READY_TO_CLOSE  -            TERMINATING    -          TERMINATED
    option CLOSE seen      PEER_CLOSED   TERMINATING      -            -            -
    TERMINATE received     PEER_TERMINATING TERMINATED* PEER_TERMINATING TERMINATED  -
    flush, window empty      -           TERMINATING      -            -            -
    flush, idle >= 30 s    close()         -            close()**      -            -
    flush, > 15 s in state   -           TERMINATING      -            -            -
    flush, > 4 s in state    -             -              -            -          TERMINATING
    flush, > 8 s in state    -             -              -          TERMINATED     -

Entering PEER_CLOSED, TERMINATING, PEER_TERMINATING or TERMINATED discards the
send window (V2Ray ``CloseWrite``): mKCP has no half-close, so a 4.34 peer that
sees our CLOSE option stops sending.

Wire-compatible additions that only cut latency: data written (or let in by
an ACK that opens the peer's window) is transmitted for the first time at the
next ``datagrams_to_send`` instead of at the next tick (see
``SendingWindow.flush_new``), and reading a quarter of the receive window
since the last ACK sends an ACK (a window update) at once rather than at the
next tick. The advertised window itself is exactly 4.34's. Additions that only
shorten the close: entering TERMINATING or
calling ``close()`` flushes at once instead of at the next ping tick, a
local close in PEER_TERMINATING answers with one TERMINATE so the peer can leave
TERMINATING without waiting 8 s, and (*) a TERMINATE received in READY_TO_CLOSE
is answered with one TERMINATE and ends the connection (4.34 goes to TERMINATING
and lingers 8 s, since the peer, already Terminated by our reply, stays silent).
(**) The idle timeout also applies in PEER_CLOSED: a peer that closed and whose
TERMINATE was lost is gone, but 4.34 stays PeerClosed until its application
closes (its relay's connIdle, 300 s by default), holding the outbound connection.
A live peer in ReadyToClose or Terminating is never silent for 30 s.
An idle timeout also ends reading (``StreamEnded``), as 4.34's ``Read`` returns
EOF once the connection left Active that way.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from v2py.errors import LocalProtocolError
from v2py.protocol.mkcp.events import (
    ConnectionTerminated,
    DataReceived,
    KcpEvent,
    StreamEnded,
)
from v2py.protocol.mkcp.packet import PacketCodec
from v2py.protocol.mkcp.rtt import RoundTripInfo
from v2py.protocol.mkcp.segment import (
    OPTION_CLOSE,
    UINT32_MASK,
    AckSegment,
    CommandSegment,
    DataSegment,
    KcpCommand,
    decode_segments,
    encode_segment,
)
from v2py.protocol.mkcp.settings import KcpSettings
from v2py.protocol.mkcp.window import OutgoingSegment, ReceivingWindow, SendingWindow

__all__ = [
    "IDLE_TIMEOUT_MS",
    "KcpConnection",
    "KcpState",
    "KcpStatistics",
    "PING_INTERVAL_MS",
]

Rng = Callable[[int], bytes]

IDLE_TIMEOUT_MS = 30000
PING_INTERVAL_MS = 3000
PING_TICK_MS = 5000
PEER_TERMINATING_TIMEOUT_MS = 4000
TERMINATING_TIMEOUT_MS = 8000
READY_TO_CLOSE_TIMEOUT_MS = 15000
#: Reading this fraction of the receive window since the last ACK sends one at
#: once (a window update) instead of at the next tick.
WINDOW_UPDATE_DIVISOR = 4
#: ACK timestamps older than this give no RTT sample (sending.go).
MAX_RTT_SAMPLE_MS = 10000
# Guards float->ms conversion so a timer fired exactly at get_timer() is due.
_MS_EPSILON = 1e-3
_DATA = struct.Struct(">HBBIIIH")


class KcpState(Enum):
    """Connection states (docs/spec/mkcp.md section 11), valued as V2Ray logs them."""

    ACTIVE = 0
    READY_TO_CLOSE = 1
    PEER_CLOSED = 2
    TERMINATING = 3
    PEER_TERMINATING = 4
    TERMINATED = 5


_WINDOW_CLOSED_STATES = frozenset(
    {
        KcpState.PEER_CLOSED,
        KcpState.TERMINATING,
        KcpState.PEER_TERMINATING,
        KcpState.TERMINATED,
    }
)
# Data still flows in these states (Active, and ReadyToClose until the window drains).
_FRESH_DATA_STATES = frozenset({KcpState.ACTIVE, KcpState.READY_TO_CLOSE})
_NO_RECEIVE_STATES = frozenset({KcpState.TERMINATING, KcpState.TERMINATED})
# The idle timeout closes these (4.34: Active only; see the module docstring (**)).
_IDLE_STATES = frozenset({KcpState.ACTIVE, KcpState.PEER_CLOSED})


@dataclass(frozen=True, slots=True, kw_only=True)
class KcpStatistics:
    """A snapshot of one connection's counters."""

    state: KcpState
    rto_ms: int
    srtt_ms: int
    send_una: int
    send_next: int
    remote_window_end: int
    send_buffered_bytes: int
    receive_next: int
    receive_buffered_segments: int
    ack_pending: int
    control_window: int
    datagrams_sent: int
    datagrams_received: int
    datagrams_dropped: int
    segments_malformed: int
    data_segments_sent: int
    retransmits: int
    duplicates_received: int
    out_of_window_received: int
    bytes_sent: int
    bytes_received: int


class KcpConnection:
    """One mKCP conversation (docs/spec/mkcp.md sections 7-11).

    ``conv`` is the 16-bit conversation id, ``now`` the creation time in seconds,
    ``rng`` the randomness source for headers and GCM nonces. ``codec`` lets a
    listener share one header object across its sessions. Raises ``ValueError``
    for invalid ``settings``.
    """

    def __init__(
        self,
        conv: int,
        settings: KcpSettings,
        *,
        now: float,
        rng: Rng,
        is_client: bool,
        codec: PacketCodec | None = None,
    ) -> None:
        settings.validate()
        self.conv = conv & 0xFFFF
        self.settings = settings
        self.is_client = is_client
        self._t0 = now
        self._codec = codec if codec is not None else PacketCodec(settings, rng)
        self._tti = settings.tti
        self._window_size = settings.receiving_window
        self._send = SendingWindow(
            mss=settings.mss,
            in_flight=settings.sending_in_flight,
            buffer_segments=settings.sending_buffer_segments,
            congestion=settings.congestion,
        )
        self._send_limit = settings.sending_buffer_segments * settings.mss
        self._recv = ReceivingWindow(settings.receiving_window)
        self._rtt = RoundTripInfo(settings.tti)
        self._state = KcpState.ACTIVE
        self._state_since = 0
        self._last_incoming = 0
        self._last_ping = 0
        self._last_ms = 0
        self._data_next: int | None = None
        self._ping_next = 0
        self._urgent = False
        self._fresh = False
        self._window_update = False
        self._advertised_next = 0
        self._window_step = max(1, settings.receiving_window // WINDOW_UPDATE_DIVISOR)
        self._out: list[bytes] = []
        self._peer_done = False
        # Set when the idle timeout closes the connection: reading ends too (4.34's Read
        # returns EOF in ReadyToClose), so the application stops waiting on a dead peer.
        self._read_closed = False
        self._ended_reported = False
        self._terminated_reported = False
        self._reason = ""
        self._close_reason = "closed"
        self._datagrams_sent = 0
        self._datagrams_received = 0
        self._datagrams_dropped = 0
        self._malformed = 0
        self._data_sent = 0
        self._bytes_sent = 0
        self._bytes_received = 0
        self._carried_data = False

    # -- clock ------------------------------------------------------------------

    def _ms(self, now: float) -> int:
        current = int((now - self._t0) * 1000.0 + _MS_EPSILON)
        if current > self._last_ms:
            self._last_ms = current
        return max(current, 0)

    # -- properties ---------------------------------------------------------------

    @property
    def state(self) -> KcpState:
        """Current state (docs/spec/mkcp.md section 11)."""
        return self._state

    @property
    def terminated(self) -> bool:
        """True once the connection reached Terminated."""
        return self._state is KcpState.TERMINATED

    @property
    def carried_data(self) -> bool:
        """True once a DATA segment arrived or the application queued data.

        A session that only exchanged PING/ACK has not (a listener evicts those first).
        """
        return self._carried_data

    @property
    def writable(self) -> bool:
        """True while ``send_data`` is accepted (state Active)."""
        return self._state is KcpState.ACTIVE

    def send_buffer_size(self) -> int:
        """Bytes written and not yet acknowledged."""
        return self._send.buffered_bytes

    def send_buffer_limit(self) -> int:
        """The send buffer's capacity in bytes (``writeBufferSize`` rounded to segments)."""
        return self._send_limit

    def send_buffer_available(self) -> int:
        """Bytes that fit before the send buffer is full; apply backpressure at 0."""
        return max(0, self._send_limit - self._send.buffered_bytes)

    # -- input ----------------------------------------------------------------------

    def receive_datagram(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Process one UDP datagram (header + security + segments). Never raises on bad input.

        Flush afterwards (``datagrams_to_send``).
        """
        payload = self._codec.open(data)
        if payload is None:
            self._datagrams_dropped += 1
            return
        self.receive_payload(payload, now)

    def receive_payload(self, payload: bytes, now: float) -> None:
        """Process segments already opened by the packet layer (used by a listener's demux).

        Never raises on bad input. Flush afterwards.
        """
        if self._state is KcpState.TERMINATED:
            self._datagrams_dropped += 1
            return
        current = self._ms(now)
        segments, clean = decode_segments(payload)
        if not clean:
            self._malformed += 1
        if not segments:
            self._datagrams_dropped += 1
            return
        self._datagrams_received += 1
        self._last_incoming = current
        for seg in segments:
            if seg.conv != self.conv:
                break
            if isinstance(seg, DataSegment):
                self._carried_data = True
                self._handle_option(seg.option, current)
                self._on_data(seg)
                self._wake(current)
            elif isinstance(seg, AckSegment):
                self._handle_option(seg.option, current)
                self._on_ack(seg, current)
                self._wake(current)
            else:
                self._on_command(seg, current)
            if self.terminated:
                break

    def _on_data(self, seg: DataSegment) -> None:
        recv = self._recv
        if recv.process_data(seg.number, seg.timestamp, seg.sending_next) and (
            self._state not in _NO_RECEIVE_STATES
        ):
            recv.store(seg.number, seg.payload)

    def _on_ack(self, seg: AckSegment, current: int) -> None:
        removed = self._send.process_ack(
            receiving_window=seg.receiving_window,
            receiving_next=seg.receiving_next,
            numbers=seg.numbers,
            rto=self._rtt.rto,
        )
        if self._send.has_unsent:
            self._fresh = True
        if removed:
            sample = (current - seg.timestamp) & UINT32_MASK
            if sample < MAX_RTT_SAMPLE_MS:
                self._rtt.update(sample, current)

    def _on_command(self, seg: CommandSegment, current: int) -> None:
        self._handle_option(seg.option, current)
        if seg.command == KcpCommand.TERMINATE:
            self._peer_done = True
            state = self._state
            if state in (KcpState.ACTIVE, KcpState.PEER_CLOSED):
                self._set_state(KcpState.PEER_TERMINATING, current)
            elif state is KcpState.READY_TO_CLOSE:
                # A peer sends TERMINATE only once it is Terminating itself, where our
                # TERMINATE ends it; 4.34 would then sit in Terminating for 8 s more
                # waiting for another one that never comes (and hold a listener slot).
                self._set_state(KcpState.TERMINATING, current)
                self._queue_command(current, KcpCommand.TERMINATE)
                self._terminate(current, "closed")
                return
            elif state is KcpState.TERMINATING:
                self._terminate(current, "closed")
                return
        self._send.process_receiving_next(seg.receiving_next)
        self._recv.process_sending_next(seg.sending_next)
        self._rtt.update_peer_rto(seg.peer_rto, current)

    def _handle_option(self, option: int, current: int) -> None:
        if not option & OPTION_CLOSE:
            return
        if self._state is KcpState.READY_TO_CLOSE:
            self._set_state(KcpState.TERMINATING, current)
        elif self._state is KcpState.ACTIVE:
            self._set_state(KcpState.PEER_CLOSED, current)

    # -- state ------------------------------------------------------------------------

    def _set_state(self, state: KcpState, current: int) -> None:
        self._state = state
        self._state_since = current
        if state in _WINDOW_CLOSED_STATES:
            self._send.close_write()
        if state is KcpState.TERMINATING:
            self._urgent = True

    def _terminate(self, current: int, reason: str) -> None:
        self._set_state(KcpState.TERMINATED, current)
        self._reason = reason
        self._data_next = None
        self._urgent = False

    def _wake(self, current: int) -> None:
        if self._data_next is None:
            self._data_next = current

    # -- actions ----------------------------------------------------------------------

    def send_data(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` (any size; cut into MSS-sized segments). Flush afterwards.

        Raises ``LocalProtocolError`` after our own ``close()``. Once the peer has
        closed, data is discarded, as V2Ray discards its send window then.
        """
        if self._state is KcpState.ACTIVE:
            if data:
                self._carried_data = True
                self._send.write(data)
                self._bytes_sent += len(data)
                self._fresh = True
                self._wake(self._last_ms)
            return
        if self._state is KcpState.READY_TO_CLOSE or (
            self._state in (KcpState.TERMINATING, KcpState.TERMINATED) and not self._peer_done
        ):
            raise LocalProtocolError(f"send_data in state {self._state.name}")

    def send_eof(self) -> None:
        """Finish sending. mKCP has no half-close, so this is :meth:`close`. Flush afterwards."""
        self.close()

    def close(self) -> None:
        """Close as V2Ray's ``Close()`` does; queued data is still delivered first.

        Idempotent. Flush afterwards.
        """
        current = self._last_ms
        state = self._state
        if state is KcpState.ACTIVE:
            self._set_state(KcpState.READY_TO_CLOSE, current)
            self._urgent = True
        elif state is KcpState.PEER_CLOSED:
            self._set_state(KcpState.TERMINATING, current)
        elif state is KcpState.PEER_TERMINATING:
            self._queue_command(current, KcpCommand.TERMINATE)
            self._terminate(current, "closed")

    def abort(self) -> None:
        """Terminate now, sending one TERMINATE. Flush afterwards."""
        if self._state is KcpState.TERMINATED:
            return
        self._queue_command(self._last_ms, KcpCommand.TERMINATE)
        self._terminate(self._last_ms, "aborted")

    def discard(self, reason: str) -> None:
        """Terminate now without sending anything; reading ends (``StreamEnded``).

        For a listener dropping a session whose peer may be forged: a TERMINATE
        would only be reflected at the spoofed address. Flush afterwards (it sends
        nothing but lets the shell see Terminated).
        """
        if self._state is KcpState.TERMINATED:
            return
        self._read_closed = True
        self._out.clear()
        self._terminate(self._last_ms, reason)

    # -- output ----------------------------------------------------------------------

    def next_event(self) -> KcpEvent | None:
        """Next event, or ``None``. Taking data advances the receive window (flow control).

        A shell that stops calling this while its read buffer is full makes the
        receive window close, which is V2Ray's only receive-side flow control.
        ``StreamEnded`` comes once the peer terminated and its data was taken, or
        once the idle timeout closed the connection (in-order data already buffered
        is delivered first, nothing after it): 4.34's ``Read`` returns EOF then.
        """
        data = b"" if self._read_closed and self._ended_reported else self._recv.read()
        if data:
            self._bytes_received += len(data)
            self._wake(self._last_ms)
            if self._recv.next_number - self._advertised_next >= self._window_step:
                self._window_update = True
            return DataReceived(data=data)
        if (self._peer_done or self._read_closed) and not self._ended_reported:
            self._ended_reported = True
            return StreamEnded()
        if self._state is KcpState.TERMINATED and not self._terminated_reported:
            self._terminated_reported = True
            return ConnectionTerminated(reason=self._reason)
        return None

    def handle_timer(self, now: float) -> None:
        """Run whatever is due at ``now``. Flush afterwards."""
        self._run_due(self._ms(now))

    def datagrams_to_send(self, now: float, limit: int | None = None) -> list[bytes]:
        """Run due work, then return the datagrams to send (one segment each).

        With ``limit``, at most that many are sealed and returned; the rest stay
        queued (:attr:`pending_datagrams`) and go out first at the next call with a
        ``limit``, which runs no new work until they are gone (a shell sharing the loop
        fairly sends a bulk flush in several turns; the core makes no more than the
        shell sends). Without ``limit`` everything due is made and returned.
        """
        out = self._out
        if limit is None or not out:
            self._run_due(self._ms(now))
            out = self._out
            if not out:
                return []
        if limit is not None and len(out) > limit:
            self._out = out[limit:]
            out = out[:limit]
        else:
            self._out = []
        seal = self._codec.seal
        sealed = [seal(s) for s in out]
        self._datagrams_sent += len(sealed)
        return sealed

    @property
    def pending_datagrams(self) -> int:
        """Segments made and not yet returned by :meth:`datagrams_to_send` (``limit``)."""
        return len(self._out)

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` should next run (seconds), or ``None`` once Terminated."""
        if self._state is KcpState.TERMINATED:
            return None
        due = self._ping_next
        if self._data_next is not None and self._data_next < due:
            due = self._data_next
        if self._urgent and self._last_ms < due:
            due = self._last_ms
        return self._t0 + due / 1000.0

    def statistics(self) -> KcpStatistics:
        """A snapshot of counters, windows and timers."""
        send = self._send
        recv = self._recv
        return KcpStatistics(
            state=self._state,
            rto_ms=self._rtt.rto,
            srtt_ms=self._rtt.srtt,
            send_una=send.first_unacked,
            send_next=send.next_number,
            remote_window_end=send.remote_next,
            send_buffered_bytes=send.buffered_bytes,
            receive_next=recv.next_number,
            receive_buffered_segments=recv.buffered_segments,
            ack_pending=len(recv.acks),
            control_window=send.control_window,
            datagrams_sent=self._datagrams_sent,
            datagrams_received=self._datagrams_received,
            datagrams_dropped=self._datagrams_dropped,
            segments_malformed=self._malformed,
            data_segments_sent=self._data_sent,
            retransmits=send.retransmits,
            duplicates_received=recv.duplicates,
            out_of_window_received=recv.out_of_window,
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
        )

    # -- flush ------------------------------------------------------------------------

    def _run_due(self, current: int) -> None:
        if self._state is KcpState.TERMINATED:
            return
        flushed = False
        if self._urgent:
            self._urgent = False
            self._flush(current)
            flushed = True
        if self._data_next is not None and current >= self._data_next:
            if self._data_should_continue():
                if not flushed:
                    self._flush(current)
                    flushed = True
                self._data_next = current + self._tti
            else:
                self._data_next = None
        if current >= self._ping_next and not self.terminated:
            if not flushed:
                self._flush(current)
            self._ping_next = current + PING_TICK_MS
        # A flush that entered Terminating sends TERMINATE now, not at the next tick.
        if self._urgent and not self.terminated:
            self._urgent = False
            self._flush(current)
        if self._window_update:
            self._window_update = False
            if self._state not in _NO_RECEIVE_STATES:
                # The ACK fields carry the new window; entries due anyway go along.
                self._recv.acks.dirty = True
                self._flush_acks(current)
        if self._fresh:
            self._fresh = False
            if self._state in _FRESH_DATA_STATES:
                self._queue_data(self._send.flush_new(current, self._rtt.rto), current)

    def _data_should_continue(self) -> bool:
        if self._state in _NO_RECEIVE_STATES:
            return False
        # A moved una also keeps the updater alive for one more flush, so the PING
        # that stops the peer's re-acks goes out within one TTI (docs/spec/README.md item 24).
        send = self._send
        return not send.is_empty() or send.una_changed or len(self._recv.acks) > 0

    def _option(self) -> int:
        return OPTION_CLOSE if self._state is KcpState.READY_TO_CLOSE else 0

    def _queue_command(self, current: int, command: KcpCommand) -> None:
        self._out.append(
            encode_segment(
                CommandSegment(
                    conv=self.conv,
                    command=command,
                    option=self._option(),
                    sending_next=self._send.first_unacked,
                    receiving_next=self._recv.next_number,
                    peer_rto=self._rtt.rto,
                )
            )
        )
        self._last_ping = current

    def _flush(self, current: int) -> None:
        if self._state is KcpState.TERMINATED:
            return
        if self._state in _IDLE_STATES and current - self._last_incoming >= IDLE_TIMEOUT_MS:
            self._close_reason = "idle timeout"
            self._read_closed = True
            self.close()
        if self._state is KcpState.READY_TO_CLOSE and self._send.is_empty():
            self._set_state(KcpState.TERMINATING, current)
        if self._state is KcpState.TERMINATING:
            self._urgent = False
            self._queue_command(current, KcpCommand.TERMINATE)
            if current - self._state_since > TERMINATING_TIMEOUT_MS:
                self._terminate(current, self._close_reason if not self._peer_done else "closed")
            return
        since = current - self._state_since
        if self._state is KcpState.PEER_TERMINATING and since > PEER_TERMINATING_TIMEOUT_MS:
            self._set_state(KcpState.TERMINATING, current)
        if self._state is KcpState.READY_TO_CLOSE and since > READY_TO_CLOSE_TIMEOUT_MS:
            self._close_reason = "close timeout"
            self._set_state(KcpState.TERMINATING, current)
        self._flush_acks(current)
        sent = self._flush_data(current)
        if self._send.take_una_changed() and not sent:
            self._queue_command(current, KcpCommand.PING)
        if current - self._last_ping >= PING_INTERVAL_MS:
            self._queue_command(current, KcpCommand.PING)

    def _flush_acks(self, current: int) -> None:
        recv = self._recv
        if not len(recv.acks) and not recv.acks.dirty:
            return
        option = self._option()
        self._advertised_next = recv.next_number
        for numbers, timestamp in recv.acks.flush(current, self._rtt.rto):
            self._out.append(
                encode_segment(
                    AckSegment(
                        conv=self.conv,
                        option=option,
                        receiving_window=recv.next_number + self._window_size,
                        receiving_next=recv.next_number,
                        timestamp=timestamp,
                        numbers=tuple(numbers),
                    )
                )
            )

    def _flush_data(self, current: int) -> bool:
        return self._queue_data(self._send.flush(current, self._rtt.rto), current)

    def _queue_data(self, segments: list[OutgoingSegment], current: int) -> bool:
        if not segments:
            return False
        conv = self.conv
        option = self._option()
        una = self._send.first_unacked & UINT32_MASK
        ts = current & UINT32_MASK
        pack = _DATA.pack
        out = self._out
        for seg in segments:
            payload = seg.payload
            out.append(
                pack(
                    conv,
                    KcpCommand.DATA,
                    option,
                    ts,
                    seg.number & UINT32_MASK,
                    una,
                    len(payload),
                )
                + payload
            )
        self._data_sent += len(segments)
        return True
