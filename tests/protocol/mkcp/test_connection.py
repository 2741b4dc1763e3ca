"""Two KcpConnections over a seeded LossyLink with explicit time
(docs/spec/mkcp.md sections 7-11)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.lossy import LossyLink
from v2py.protocol.mkcp.connection import KcpConnection, KcpState
from v2py.protocol.mkcp.events import ConnectionTerminated, DataReceived, StreamEnded
from v2py.protocol.mkcp.packet import PacketCodec
from v2py.protocol.mkcp.segment import (
    AckSegment,
    CommandSegment,
    DataSegment,
    KcpCommand,
    decode_segments,
    encode_segment,
)
from v2py.protocol.mkcp.settings import KcpSettings
from v2py.protocol.mkcp.window import SendingWindow

#: Simulation step; a divisor of every timer in play (tti 50 ms, RTO 100 ms, pings 5 s).
TICK = 0.005
CONV = 0x1234


def _rng(seed: int):
    return random.Random(seed).randbytes


@dataclass
class Endpoint:
    conn: KcpConnection
    received: bytearray = field(default_factory=bytearray)
    ended: bool = False
    terminated: str | None = None
    reading: bool = True

    def drain_events(self) -> None:
        if not self.reading:
            return
        while (ev := self.conn.next_event()) is not None:
            if isinstance(ev, DataReceived):
                self.received += ev.data
            elif isinstance(ev, StreamEnded):
                self.ended = True
            elif isinstance(ev, ConnectionTerminated):
                self.terminated = ev.reason


class Pair:
    """Client and server connections joined by two LossyLinks; ``now`` advances by TICK."""

    def __init__(
        self,
        *,
        client_settings: KcpSettings | None = None,
        server_settings: KcpSettings | None = None,
        ab: LossyLink | None = None,
        ba: LossyLink | None = None,
    ) -> None:
        self.now = 0.0
        self.a = Endpoint(
            KcpConnection(
                CONV, client_settings or KcpSettings(), now=0.0, rng=_rng(1), is_client=True
            )
        )
        self.b = Endpoint(
            KcpConnection(
                CONV, server_settings or KcpSettings(), now=0.0, rng=_rng(2), is_client=False
            )
        )
        self.ab = ab if ab is not None else LossyLink()
        self.ba = ba if ba is not None else LossyLink()
        self.log: list[tuple[float, str, bytes]] = []

    def step(self) -> None:
        for name, ep, link in (("a", self.a, self.ab), ("b", self.b, self.ba)):
            for d in ep.conn.datagrams_to_send(self.now):
                self.log.append((self.now, name, d))
                link.send(d, self.now)
        for d in self.ab.deliver(self.now):
            self.b.conn.receive_datagram(d, self.now)
        for d in self.ba.deliver(self.now):
            self.a.conn.receive_datagram(d, self.now)
        self.a.drain_events()
        self.b.drain_events()
        self.now = round(self.now + TICK, 6)

    def run_until(self, cond, limit: float) -> None:
        while not cond():
            assert self.now < limit, f"condition not met by t={self.now}"
            self.step()

    def run_for(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.step()


def _segments_of(datagram: bytes) -> list:
    payload = PacketCodec(KcpSettings(), _rng(0)).open(datagram)
    assert payload is not None
    segs, clean = decode_segments(payload)
    assert clean
    return segs


def _payload(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def test_lossless_transfer_both_ways() -> None:
    p = Pair()
    up, down = _payload(500_000, 1), _payload(300_000, 2)
    p.a.conn.send_data(up)
    p.b.conn.send_data(down)
    p.run_until(lambda: len(p.b.received) == len(up) and len(p.a.received) == len(down), 10)
    assert bytes(p.b.received) == up
    assert bytes(p.a.received) == down
    assert p.a.conn.statistics().retransmits == 0


def test_in_order_delivery_at_ten_percent_loss() -> None:
    p = Pair(
        ab=LossyLink(seed=11, loss=0.10, duplicate=0.02, reorder=0.05, delay=0.01),
        ba=LossyLink(seed=12, loss=0.10, duplicate=0.02, reorder=0.05, delay=0.01),
    )
    up, down = _payload(400_000, 3), _payload(150_000, 4)
    # Write in odd pieces so segment boundaries do not align with writes.
    for i in range(0, len(up), 7777):
        p.a.conn.send_data(up[i : i + 7777])
    p.b.conn.send_data(down)
    p.run_until(lambda: len(p.b.received) >= len(up) and len(p.a.received) >= len(down), 60)
    assert hashlib.sha256(p.b.received).digest() == hashlib.sha256(up).digest()
    assert bytes(p.a.received) == down
    stats = p.a.conn.statistics()
    assert stats.retransmits > 0
    assert p.ab.dropped > 0 and p.ab.duplicated > 0


def test_retransmission_at_exact_rto_without_backoff() -> None:
    p = Pair(ab=LossyLink(loss=1.0))  # everything from a is lost
    p.a.conn.send_data(b"hello")
    p.run_for(0.5)
    times = [t for t, who, d in p.log if who == "a" and isinstance(_segments_of(d)[0], DataSegment)]
    # First send at 0, then every initial RTO (100 ms), no exponential backoff.
    assert times == [0.0, 0.1, 0.2, 0.3, 0.4]
    stamps = [
        _segments_of(d)[0].timestamp
        for _, who, d in p.log
        if who == "a" and isinstance(_segments_of(d)[0], DataSegment)
    ]
    assert stamps == [0, 100, 200, 300, 400]
    assert p.a.conn.statistics().retransmits == 4
    assert p.a.conn.get_timer() == 0.5


def test_fast_ack_pulls_earlier_segments_forward() -> None:
    win = SendingWindow(mss=1000, in_flight=194, buffer_segments=100, congestion=False)
    win.write(b"x" * 3000)
    sent = win.flush(0, 100)
    assert [s.number for s in sent] == [0, 1, 2]
    removed = win.process_ack(receiving_window=800, receiving_next=0, numbers=(2,), rto=100)
    assert removed
    # Every transmitted segment below the largest acked number loses RTO/3 of its timeout.
    assert win.flush(66, 100) == []
    assert [s.number for s in win.flush(67, 100)] == [0, 1]
    assert win.first_unacked == 0 and win.remote_next == 800


def _data_log(p: Pair, who: str) -> list[tuple[float, int]]:
    return [
        (t, seg.number)
        for t, w, d in p.log
        if w == who
        for seg in _segments_of(d)
        if isinstance(seg, DataSegment)
    ]


def test_write_while_updater_runs_goes_out_at_once() -> None:
    p = Pair()
    p.a.conn.send_data(b"first")
    p.run_for(0.02)  # DATA 0 at 0, its ACK back: the data updater is running (tick at 50 ms)
    write_at = p.now
    p.a.conn.send_data(b"second")
    p.step()
    assert _data_log(p, "a") == [(0.0, 0), (write_at, 1)]
    assert bytes(p.b.received) == b"firstsecond"
    # The tick still runs on its own schedule; nothing is due, so nothing is resent.
    p.run_for(0.1)
    assert _data_log(p, "a") == [(0.0, 0), (write_at, 1)]


def test_window_opening_ack_sends_new_segments_within_tick_budget() -> None:
    win = SendingWindow(mss=100, in_flight=2, buffer_segments=100, congestion=False)
    win.write(b"x" * 6000)  # 60 segments
    # Per-tick budget min(in_flight 2, window 32) x 20 = 40; the window (32) binds first.
    assert [s.number for s in win.flush(0, 100)] == list(range(32))
    assert win.flush_new(1, 100) == []
    win.process_ack(receiving_window=50, receiving_next=0, numbers=(0,), rto=100)
    # The window opened to 50, but only 40 - 32 = 8 transmissions are left this tick.
    assert [s.number for s in win.flush_new(2, 100)] == list(range(32, 40))
    assert win.flush_new(3, 100) == []
    # The next tick has a fresh budget and the rest of the window.
    assert [s.number for s in win.flush(50, 100)] == list(range(40, 50))
    assert win.retransmits == 0


def _receiver_fed(count: int) -> KcpConnection:
    conn = KcpConnection(CONV, KcpSettings(), now=0.0, rng=_rng(3), is_client=False)
    codec = PacketCodec(KcpSettings(), _rng(4))
    for n in range(count):
        seg = DataSegment(conv=CONV, timestamp=0, number=n, sending_next=0, payload=b"d")
        conn.receive_datagram(codec.seal(encode_segment(seg)), 0.0)
    assert conn.datagrams_to_send(0.0)  # the first ACKs; the data updater then ticks at 50 ms
    return conn


def test_reading_a_quarter_window_sends_a_window_update_at_once() -> None:
    conn = _receiver_fed(200)  # window 776: a quarter is 194 segments
    assert isinstance(conn.next_event(), DataReceived)
    acks = [seg for d in conn.datagrams_to_send(0.01) for seg in _segments_of(d)]
    assert acks and all(isinstance(a, AckSegment) for a in acks)
    assert {(a.receiving_next, a.receiving_window) for a in acks} == {(200, 976)}


def test_reading_less_than_a_quarter_window_waits_for_the_tick() -> None:
    conn = _receiver_fed(100)
    assert isinstance(conn.next_event(), DataReceived)
    assert conn.datagrams_to_send(0.01) == []
    acks = [seg for d in conn.datagrams_to_send(0.05) for seg in _segments_of(d)]
    assert {(a.receiving_next, a.receiving_window) for a in acks} == {(100, 876)}


def test_receive_window_limits_sender() -> None:
    small = KcpSettings(downlink_capacity=1)  # receive window max(8, 1 MiB/1350/20) = 38
    assert small.receiving_window == 38
    p = Pair(server_settings=small)
    p.b.reading = False
    data = _payload(200_000, 5)
    p.a.conn.send_data(data)
    p.step()
    # Before any ACK the sender assumes a window end of 32.
    assert p.a.conn.statistics().send_next == 32
    p.run_for(2.0)
    sa, sb = p.a.conn.statistics(), p.b.conn.statistics()
    assert sa.remote_window_end == 38
    # Nothing beyond the advertised window except the one-segment probe (number 38).
    assert sa.send_next <= 39
    assert sb.receive_buffered_segments == 38
    assert sb.out_of_window_received <= 2 * 20  # only window probes at RTO pace
    p.b.reading = True
    p.run_until(lambda: len(p.b.received) == len(data), 30)
    assert bytes(p.b.received) == data


def test_ping_stops_re_acks() -> None:
    """Spec README item 24: after the window empties the sender PINGs its new una."""
    p = Pair()
    p.a.conn.send_data(b"ping-pong")
    p.run_until(lambda: p.b.received == b"ping-pong", 1)
    p.run_for(0.5)
    pings = [
        s
        for _, who, d in p.log
        if who == "a"
        and isinstance(s := _segments_of(d)[0], CommandSegment)
        and s.command == KcpCommand.PING
    ]
    assert pings and pings[0].sending_next == 1
    mark = p.now
    p.run_for(2.0)
    late_acks = [
        t
        for t, who, d in p.log
        if who == "b" and t >= mark and isinstance(_segments_of(d)[0], AckSegment)
    ]
    assert late_acks == []
    assert p.b.conn.statistics().ack_pending == 0


def test_close_handshake_between_two_peers() -> None:
    p = Pair()
    p.a.conn.send_data(b"bye")
    p.run_until(lambda: p.b.received == b"bye", 1)
    p.run_for(0.2)
    t_close = p.now
    p.a.conn.close()
    assert p.a.conn.state is KcpState.READY_TO_CLOSE
    p.step()
    # The send window was empty, so the close flush goes straight to Terminating.
    assert p.a.conn.state is KcpState.TERMINATING
    p.step()
    assert p.b.conn.state is KcpState.PEER_TERMINATING
    assert p.b.ended
    p.b.conn.close()
    assert p.b.conn.state is KcpState.TERMINATED
    p.run_for(TICK * 2)
    assert p.a.conn.state is KcpState.TERMINATED
    assert p.a.terminated == "closed" and p.b.terminated == "closed"
    assert p.now - t_close < 0.05
    assert p.a.conn.get_timer() is None


def _terminates(p: Pair, who: str) -> list[float]:
    return [
        t
        for t, w, d in p.log
        if w == who
        and isinstance(s := _segments_of(d)[0], CommandSegment)
        and s.command == KcpCommand.TERMINATE
    ]


def test_terminate_in_ready_to_close_is_answered_and_ends_both() -> None:
    p = Pair()
    p.a.conn.send_data(b"ask")
    p.run_until(lambda: p.b.received == b"ask", 1)
    # The server replies and closes first; the client sees CLOSE, then closes too.
    p.b.conn.send_data(b"answer")
    p.b.conn.close()
    p.run_until(lambda: p.a.received == b"answer", 1)
    p.run_until(lambda: p.a.conn.state is KcpState.PEER_CLOSED, 1)
    assert p.b.conn.state is KcpState.READY_TO_CLOSE
    p.a.conn.close()  # PEER_CLOSED -> TERMINATING, TERMINATE out
    p.run_for(TICK * 3)
    assert p.b.conn.terminated and p.a.conn.terminated
    assert p.a.terminated == "closed" and p.b.terminated == "closed"
    # b answered with exactly one TERMINATE instead of lingering 8 s in TERMINATING.
    assert len(_terminates(p, "b")) == 1
    assert p.b.conn.get_timer() is None


def test_close_with_data_in_flight_sets_close_option() -> None:
    p = Pair(ab=LossyLink(delay=0.02), ba=LossyLink(delay=0.02))
    data = _payload(50_000, 9)
    p.a.conn.send_data(data)
    p.a.conn.close()
    p.run_until(lambda: p.b.ended, 5)
    assert bytes(p.b.received) == data
    opts = {_segments_of(d)[0].option for _, who, d in p.log if who == "a"}
    assert 1 in opts
    assert p.b.conn.state is KcpState.PEER_TERMINATING


def test_terminating_times_out_on_silent_peer() -> None:
    p = Pair(ab=LossyLink(loss=1.0))
    p.run_until(lambda: p.now >= 1.0, 2)
    p.a.conn.close()
    p.run_until(lambda: p.a.conn.terminated, 20)
    terms = [
        t
        for t, who, d in p.log
        if who == "a"
        and isinstance(s := _segments_of(d)[0], CommandSegment)
        and s.command == KcpCommand.TERMINATE
    ]
    # Sent on close, then on each 5 s ping tick; > 8 s in Terminating ends it at 10 s.
    assert terms == [1.0, 5.0, 10.0]
    assert p.a.terminated == "closed"


def test_idle_timeout() -> None:
    p = Pair(ab=LossyLink(loss=1.0), ba=LossyLink(loss=1.0))
    p.run_until(lambda: p.a.conn.state is not KcpState.ACTIVE, 31)
    assert p.now - TICK == 30.0
    p.run_until(lambda: p.a.conn.terminated, 45)
    assert p.now - TICK == 40.0
    assert p.a.terminated == "idle timeout"


def test_idle_timeout_ends_the_stream_for_the_application() -> None:
    """4.34's Read returns EOF once the idle timeout closed the connection, so a relay on
    top ends (and closes its other side) at 30 s, not when Terminated comes 10-25 s later.
    Data taken before is delivered; nothing after the end."""
    p = Pair(ab=LossyLink(loss=1.0))
    p.b.conn.send_data(b"last words")
    p.run_until(lambda: bytes(p.a.received) == b"last words", 1)
    p.ba = LossyLink(loss=1.0)  # from now on a hears nothing
    p.run_until(lambda: p.a.ended, 40)
    assert p.now - TICK == 30.0
    assert p.a.conn.state is not KcpState.ACTIVE
    assert not p.a.conn.writable
    assert p.a.terminated is None
    p.run_until(lambda: p.a.conn.terminated, 50)
    assert p.a.terminated == "idle timeout"
    assert bytes(p.a.received) == b"last words"


def test_idle_timeout_after_data_delivers_no_data_after_the_end() -> None:
    p = Pair()
    p.a.reading = False
    p.b.conn.send_data(b"x" * 5000)
    p.run_for(0.5)
    p.ab = LossyLink(loss=1.0)
    p.ba = LossyLink(loss=1.0)
    p.run_for(35)  # a's idle timeout (noticed at the 35 s ping tick) while not reading
    events = []
    while (ev := p.a.conn.next_event()) is not None:
        events.append(ev)
    assert [type(e) for e in events] == [DataReceived, StreamEnded]
    assert len(events[0].data) == 5000


def test_idle_timeout_in_peer_closed_ends_a_vanished_peer() -> None:
    """The peer closed (CLOSE option seen) and vanished before its TERMINATE got through:
    30 s of silence end PEER_CLOSED too, where 4.34 would wait for its application."""
    p = Pair(ba=LossyLink(loss=1.0))  # b's ACKs are lost: a stays in ReadyToClose
    p.a.conn.send_data(b"bye")
    p.a.conn.close()
    p.run_until(lambda: p.b.conn.state is KcpState.PEER_CLOSED, 1)
    p.ab = LossyLink(loss=1.0)  # a vanishes
    vanished = p.now
    p.run_until(lambda: p.b.ended, vanished + 40)
    assert p.now - vanished <= 35.0
    assert bytes(p.b.received) == b"bye"
    p.run_until(lambda: p.b.conn.terminated, p.now + 15)
    assert p.b.terminated == "idle timeout"


def test_congested_but_alive_connection_is_not_terminated() -> None:
    """98% loss both ways for two minutes: every side still hears something well within
    30 s (retransmissions, ACKs, PINGs), so nothing times out and data keeps arriving."""
    p = Pair(ab=LossyLink(seed=21, loss=0.98), ba=LossyLink(seed=22, loss=0.98))
    up, down = _payload(20_000, 5), _payload(20_000, 6)
    p.a.conn.send_data(up)
    p.b.conn.send_data(down)
    p.run_for(120)
    for ep in (p.a, p.b):
        assert ep.conn.state is KcpState.ACTIVE
        assert not ep.ended and ep.terminated is None
    assert len(p.b.received) > 0 and len(p.a.received) > 0
    assert bytes(p.b.received) == up[: len(p.b.received)]
    assert bytes(p.a.received) == down[: len(p.a.received)]


def test_peer_terminating_times_out_into_terminating() -> None:
    class FirstOnly(LossyLink):
        def send(self, data: bytes, now: float) -> None:
            if self.sent == 0:
                super().send(data, now)
            else:
                self.sent += 1

    p = Pair(ab=FirstOnly(), ba=LossyLink(loss=1.0))
    p.a.conn.close()
    p.run_until(lambda: p.b.conn.state is KcpState.PEER_TERMINATING, 1)
    assert p.b.ended
    p.run_until(lambda: p.b.conn.terminated, 20)
    terms = [
        t
        for t, who, d in p.log
        if who == "b"
        and isinstance(s := _segments_of(d)[0], CommandSegment)
        and s.command == KcpCommand.TERMINATE
    ]
    # PeerTerminating > 4 s is noticed at the 5 s ping tick; Terminating then lasts > 8 s.
    assert terms == [5.0, 10.0, 15.0]
    assert p.now - TICK == 15.0


def test_conv_mismatch_and_garbage_are_counted() -> None:
    p = Pair()
    conn = p.b.conn
    conn.receive_datagram(b"\x00" * 40, 0.0)
    other = encode_segment(
        CommandSegment(
            conv=CONV + 1,
            command=KcpCommand.TERMINATE,
            sending_next=0,
            receiving_next=0,
            peer_rto=100,
        )
    )
    conn.receive_payload(other, 0.0)
    assert conn.state is KcpState.ACTIVE
    assert conn.statistics().datagrams_dropped == 1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=120), max_size=10))
def test_arbitrary_datagrams_never_raise(datagrams: list[bytes]) -> None:
    conn = KcpConnection(CONV, KcpSettings(), now=0.0, rng=_rng(3), is_client=False)
    codec = PacketCodec(KcpSettings(), _rng(4))
    now = 0.0
    for raw in datagrams:
        conn.receive_datagram(raw, now)
        # Also as authenticated payloads with our conv, so the segment logic is reached.
        conn.receive_payload(CONV.to_bytes(2, "big") + raw, now)
        conn.receive_datagram(codec.seal(CONV.to_bytes(2, "big") + raw), now)
        conn.datagrams_to_send(now)
        while conn.next_event() is not None:
            pass
        now += 0.05
    conn.handle_timer(now + 60)
    conn.datagrams_to_send(now + 60)
