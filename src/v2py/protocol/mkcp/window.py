"""mKCP send and receive windows and the ack list.

Spec: mkcp.md sections 7 and 8 (v2ray-core ``kcp/sending.go``, ``kcp/receiving.go``).
Integer millisecond clocks; sequence numbers are plain ints here and masked to
u32 only on the wire. Pure module.

Deliberate, wire-compatible differences from 4.34 (they only make us a better
sender):

* Bytes written are cut into MSS-sized segments lazily, at flush time, so small
  writes coalesce.
* Segments at or beyond the peer's advertised window end are not transmitted
  (4.34 sends them and the receiver drops them unacked). When the window is
  closed, the first unacknowledged segment is still sent once per RTO as a probe,
  which is what 4.34's ``cwnd`` minimum of one achieves.
* Never-sent segments go out as soon as they are written or the peer's window
  opens (:meth:`SendingWindow.flush_new`), not only at the next tick; 4.34 does
  that only when its data updater was idle. They draw on the same per-tick
  budget, and retransmissions stay on the tick.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from v2py.protocol.mkcp.segment import ACK_MAX_NUMBERS, UINT32_MASK

__all__ = ["AckList", "OutgoingSegment", "ReceivingWindow", "SendingWindow"]

#: Initial ``remoteNextNumber`` before the first ACK (sending.go).
INITIAL_REMOTE_NEXT = 32
#: 4.34 multiplies the per-tick transmission cap by this (sending.go "magic").
CWND_MULTIPLIER = 20
MIN_CONTROL_WINDOW = 16
LOSS_RATE_SHRINK_PERCENT = 15
LOSS_RATE_GROW_PERCENT = 5
MIN_ACK_INTERVAL_MS = 20
HALF_RANGE = 0x7FFFFFFF


@dataclass(slots=True)
class OutgoingSegment:
    """One DATA segment in the send window."""

    number: int
    payload: bytes
    timeout: int = 0
    transmit: int = 0
    acked: bool = False


class SendingWindow:
    """Sender state (docs/spec/mkcp.md section 7): numbering, una, remote window,
    retransmission timers."""

    def __init__(self, *, mss: int, in_flight: int, buffer_segments: int, congestion: bool) -> None:
        self.mss = mss
        self.in_flight = in_flight
        self.buffer_segments = buffer_segments
        self.congestion = congestion
        self.next_number = 0
        self.first_unacked = 0
        self.remote_next = INITIAL_REMOTE_NEXT
        self.control_window = in_flight
        self.closed = False
        self.retransmits = 0
        self._segments: deque[OutgoingSegment] = deque()
        self._pending = bytearray()
        self._window_bytes = 0
        self._una_changed = False
        # Number of the first segment never transmitted; fresh segments are a suffix
        # of the window because both flush paths transmit new segments in order.
        self._unsent = 0
        self._budget = self._cwnd()

    # -- application side -------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue application bytes; they become segments at flush time."""
        if not self.closed:
            self._pending += data

    @property
    def buffered_bytes(self) -> int:
        """Bytes written but not yet acknowledged."""
        return len(self._pending) + self._window_bytes

    def is_empty(self) -> bool:
        """True when nothing is queued or in flight."""
        return not self._segments and not self._pending

    @property
    def in_window(self) -> int:
        """Segments currently numbered and not acknowledged."""
        return sum(1 for s in self._segments if not s.acked)

    def close_write(self) -> None:
        """Discard everything (V2Ray ``CloseWrite``)."""
        self.closed = True
        self._segments.clear()
        self._pending.clear()
        self._window_bytes = 0

    @property
    def una_changed(self) -> bool:
        """Whether una moved since :meth:`take_una_changed` was last called."""
        return self._una_changed

    def take_una_changed(self) -> bool:
        """Whether una moved since the last call."""
        changed = self._una_changed
        self._una_changed = False
        return changed

    # -- acknowledgements -----------------------------------------------------

    def _advance(self) -> None:
        segs = self._segments
        while segs and segs[0].acked:
            segs.popleft()
        una = segs[0].number if segs else self.next_number
        if una != self.first_unacked:
            self.first_unacked = una
            self._una_changed = True

    def process_receiving_next(self, receiving_next: int) -> None:
        """Cumulative ack: drop every segment numbered below ``receiving_next`` (u32 wire value)."""
        if self.closed:
            return
        segs = self._segments
        # Interpret the wire value relative to una so that stale values are ignored.
        ahead = (receiving_next - self.first_unacked) & UINT32_MASK
        if ahead == 0 or ahead > HALF_RANGE:
            return
        limit = self.first_unacked + ahead
        while segs and segs[0].number < limit:
            seg = segs.popleft()
            if not seg.acked:
                self._window_bytes -= len(seg.payload)
        self._advance()

    def _ack_number(self, wire_number: int) -> bool:
        segs = self._segments
        if not segs:
            return False
        idx = (wire_number - segs[0].number) & UINT32_MASK
        if idx >= len(segs):
            return False
        seg = segs[idx]
        if seg.acked:
            return False
        seg.acked = True
        self._window_bytes -= len(seg.payload)
        return True

    def process_ack(
        self,
        *,
        receiving_window: int,
        receiving_next: int,
        numbers: tuple[int, ...],
        rto: int,
    ) -> bool:
        """Apply one ACK segment; return whether its largest number was newly acked.

        The caller then feeds the RTT sample (docs/spec/mkcp.md section 7 "On ACK").
        """
        if self.closed:
            return False
        ahead = (receiving_window - self.remote_next) & UINT32_MASK
        if 0 < ahead <= HALF_RANGE:
            self.remote_next += ahead
        self.process_receiving_next(receiving_next)
        if not numbers:
            return False
        base = self.first_unacked
        max_rel = -1
        max_removed = False
        for n in numbers:
            rel = (n - base) & UINT32_MASK
            removed = self._ack_number(n)
            if rel > HALF_RANGE:
                continue
            if rel > max_rel:
                max_rel = rel
                max_removed = removed
        self._advance()
        if max_removed:
            self._fast_ack(base + max_rel, rto)
        return max_removed

    def _fast_ack(self, number: int, rto: int) -> None:
        step = rto // 3
        for seg in self._segments:
            if seg.number >= number:
                break
            if seg.transmit > 0 and not seg.acked and seg.timeout > step:
                seg.timeout -= step

    # -- transmission -----------------------------------------------------------

    def _cwnd(self) -> int:
        cwnd = max(0, min(self.in_flight, self.remote_next - self.first_unacked))
        if self.congestion:
            cwnd = min(cwnd, self.control_window)
        return cwnd * CWND_MULTIPLIER

    def _limit(self) -> int:
        # The probe rule: with the peer's window closed, una itself may still go out.
        return max(self.remote_next, self.first_unacked + 1)

    def _segment_pending(self, limit: int) -> None:
        segs = self._segments
        pending = self._pending
        if not pending or len(segs) >= self.buffer_segments or self.next_number >= limit:
            return
        mss = self.mss
        view = memoryview(pending)
        offset = 0
        size = len(pending)
        number = self.next_number
        room = min(self.buffer_segments - len(segs), limit - number)
        added = 0
        while offset < size and room > 0:
            chunk = bytes(view[offset : offset + mss])
            offset += len(chunk)
            segs.append(OutgoingSegment(number, chunk))
            added += len(chunk)
            number += 1
            room -= 1
        view.release()
        del pending[:offset]
        self._window_bytes += added
        self.next_number = number

    @property
    def has_unsent(self) -> bool:
        """Whether bytes or segments wait for their first transmission."""
        return bool(self._pending) or self._unsent < self.next_number

    def flush(self, current: int, rto: int) -> list[OutgoingSegment]:
        """Segments due for (re)transmission at ``current``; updates their timers (section 7).

        This is one tick of V2Ray's data updater; it also resets the per-tick
        transmission budget that :meth:`flush_new` draws from.
        """
        if self.closed:
            return []
        cwnd = self._cwnd()
        limit = self._limit()
        self._segment_pending(limit)
        segs = self._segments
        if not segs:
            self._advance()
            self._budget = cwnd
            return []
        out: list[OutgoingSegment] = []
        lost = 0
        for seg in segs:
            if seg.number >= limit:
                break
            if seg.acked or current < seg.timeout:
                continue
            if seg.transmit:
                lost += 1
            seg.timeout = current + rto
            seg.transmit += 1
            out.append(seg)
            if len(out) >= cwnd:
                break
        if out and out[-1].number >= self._unsent:
            self._unsent = out[-1].number + 1
        self._budget = cwnd - len(out)
        self.retransmits += lost
        if out and self.congestion and rto != 0:
            total = sum(1 for s in segs if s.transmit and not s.acked)
            if total:
                self._on_packet_loss(lost * 100 // total)
        return out

    def flush_new(self, current: int, rto: int) -> list[OutgoingSegment]:
        """First transmissions only, between ticks, within the peer's window.

        V2Ray's writer wakes its data updater, which flushes at once when it is
        idle; a running updater waits for its next tick. Sending never-sent
        segments as soon as they are written or the peer's window opens keeps
        that first-write latency for every write (the receiver cannot tell the
        difference). Retransmissions stay on the tick, and the per-tick budget
        of :meth:`flush` still caps the total.
        """
        if self.closed or self._budget <= 0:
            return []
        limit = self._limit()
        self._segment_pending(limit)
        segs = self._segments
        if not segs or self._unsent >= limit:
            return []
        base = segs[0].number
        # max(): a (bogus) cumulative ack may have removed segments never sent.
        start = max(0, self._unsent - base)
        stop = min(len(segs), limit - base, start + self._budget)
        if start >= stop:
            return []
        out: list[OutgoingSegment] = []
        timeout = current + rto
        for i in range(start, stop):
            seg = segs[i]
            seg.timeout = timeout
            seg.transmit = 1
            out.append(seg)
        self._unsent = base + stop
        self._budget -= len(out)
        return out

    def _on_packet_loss(self, rate: int) -> None:
        if rate >= LOSS_RATE_SHRINK_PERCENT:
            self.control_window = 3 * self.control_window // 4
        elif rate <= LOSS_RATE_GROW_PERCENT:
            self.control_window += self.control_window // 4
        self.control_window = max(MIN_CONTROL_WINDOW, self.control_window)
        self.control_window = min(2 * self.in_flight, self.control_window)


@dataclass(slots=True)
class _AckEntry:
    timestamp: int
    next_flush: int = 0


@dataclass(slots=True)
class AckList:
    """Numbers to acknowledge, each re-acked every ``max(RTO/2, 20)`` ms
    (docs/spec/mkcp.md section 8)."""

    entries: dict[int, _AckEntry] = field(default_factory=dict)
    dirty: bool = False
    _low: int = 0

    def add(self, number: int, timestamp: int) -> None:
        entry = self.entries.get(number)
        if entry is None:
            if not self.entries or number < self._low:
                self._low = number
            self.entries[number] = _AckEntry(timestamp)
        else:
            entry.timestamp = timestamp
        self.dirty = True

    def clear(self, una: int) -> None:
        """Forget numbers below the sender's ``una``."""
        if not self.entries or una <= self._low:
            return
        kept = {n: e for n, e in self.entries.items() if n >= una}
        if len(kept) != len(self.entries):
            self.dirty = True
        self.entries = kept
        self._low = min(kept) if kept else 0

    def __len__(self) -> int:
        return len(self.entries)

    def flush(self, current: int, rto: int) -> Iterator[tuple[list[int], int]]:
        """Yield (numbers, newest timestamp) for each ACK segment due at ``current``."""
        interval = max(rto // 2, MIN_ACK_INTERVAL_MS)
        numbers: list[int] = []
        newest: int | None = None
        candidates: list[tuple[int, int]] = []
        for number, entry in self.entries.items():
            if entry.next_flush > current:
                if len(candidates) < ACK_MAX_NUMBERS:
                    candidates.append((number, entry.timestamp))
                continue
            numbers.append(number)
            newest = _newer(newest, entry.timestamp)
            entry.next_flush = current + interval
            if len(numbers) >= ACK_MAX_NUMBERS:
                yield numbers, newest
                numbers, newest = [], None
                self.dirty = False
        if self.dirty or numbers:
            for number, ts in candidates:
                if len(numbers) >= ACK_MAX_NUMBERS:
                    break
                numbers.append(number)
                newest = _newer(newest, ts)
            yield numbers, newest if newest is not None else 0
            self.dirty = False


def _newer(a: int | None, b: int) -> int:
    if a is None:
        return b
    return b if 0 < ((b - a) & UINT32_MASK) < HALF_RANGE else a


class ReceivingWindow:
    """Receiver state (docs/spec/mkcp.md section 8): ``nextNumber`` advances only as the
    application reads."""

    def __init__(self, window_size: int) -> None:
        self.window_size = window_size
        self.next_number = 0
        self.acks = AckList()
        self._segments: dict[int, bytes] = {}
        self.duplicates = 0
        self.out_of_window = 0

    def process_data(self, number: int, timestamp: int, sending_next: int) -> bool:
        """Register DATA ``number``; return True if its payload should be stored."""
        idx = (number - self.next_number) & UINT32_MASK
        if idx >= self.window_size:
            self.out_of_window += 1
            return False
        self.process_sending_next(sending_next)
        absolute = self.next_number + idx
        self.acks.add(absolute, timestamp)
        if absolute in self._segments:
            self.duplicates += 1
            return False
        return True

    def store(self, number: int, payload: bytes) -> None:
        """Keep ``payload`` for wire ``number`` (after :meth:`process_data` said so)."""
        idx = (number - self.next_number) & UINT32_MASK
        self._segments[self.next_number + idx] = payload

    def process_sending_next(self, sending_next: int) -> None:
        """The peer's una (wire u32): stop re-acking numbers below it."""
        behind = (self.next_number - sending_next) & UINT32_MASK
        if behind <= HALF_RANGE:
            una = self.next_number - behind
        else:
            una = self.next_number + ((sending_next - self.next_number) & UINT32_MASK)
        self.acks.clear(una)

    def data_available(self) -> bool:
        return self.next_number in self._segments

    @property
    def buffered_segments(self) -> int:
        return len(self._segments)

    def read(self) -> bytes:
        """Take every in-order payload, advancing ``next_number``."""
        segs = self._segments
        n = self.next_number
        if n not in segs:
            return b""
        parts = []
        while n in segs:
            parts.append(segs.pop(n))
            n += 1
        self.next_number = n
        return b"".join(parts)

    def discard(self) -> None:
        self._segments.clear()
