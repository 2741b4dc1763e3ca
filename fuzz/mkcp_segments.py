"""Fuzz target: mKCP segments and one connection's state machine
(``v2py.protocol.mkcp.segment`` and ``connection``; v2ray-core
``transport/internet/kcp/{segment,connection,sending,receiving}.go``).

Two parts per input:

* the fuzzer's raw bytes go to ``decode_segments`` (what is left of a datagram after
  the packet layer): it never raises, and re-encoding what it parsed gives back
  exactly the bytes it consumed;
* a sequence of fuzzer-chosen actions drives one ``KcpConnection`` (a listener's
  session): datagrams of DATA/ACK/PING/TERMINATE segments with fuzzer-chosen numbers
  around the live window (or raw segment bytes), clock steps, application writes,
  reads and closes.

Invariants: no call raises (datagram cores never raise on network input); every
datagram fits the MTU; the receive buffer never holds more than the receive window
and the send buffer never more than its limit; delivered bytes never exceed the DATA
payload bytes received; the timer is never in the past once Terminated is not
reached; after Terminated, nothing more is sent.

Run by hand: ``python -m fuzz.mkcp_segments -max_total_time=300``.
"""

from __future__ import annotations

import random

from fuzz._harness import FuzzInput, check, instrumented, main

with instrumented("v2py"):
    from v2py.protocol.mkcp.connection import KcpConnection, KcpState
    from v2py.protocol.mkcp.events import ConnectionTerminated, DataReceived, StreamEnded
    from v2py.protocol.mkcp.packet import SimpleAuthenticator
    from v2py.protocol.mkcp.segment import (
        AckSegment,
        CommandSegment,
        DataSegment,
        KcpCommand,
        decode_segments,
        encode_segment,
    )
    from v2py.protocol.mkcp.settings import KcpSettings

CONV = 0x1234
SETTINGS = KcpSettings(mtu=600, tti=20, uplink_capacity=1, downlink_capacity=1)
MAX_ACTIONS = 64
_AUTH = SimpleAuthenticator()


def _check_decoder(raw: bytes) -> None:
    segments, clean = decode_segments(raw)
    encoded = b"".join(encode_segment(s) for s in segments)
    check(raw.startswith(encoded), "re-encoded segments differ from the input")
    check(clean == (len(encoded) == len(raw)), "clean flag disagrees with what was consumed")


def _segment(inp: FuzzInput, base_recv: int, base_send: int) -> bytes:
    kind = inp.u8()
    conv = CONV if kind & 0x80 == 0 else inp.u16()
    option = inp.u8() & 0x01 if kind & 0x40 == 0 else inp.u8()
    ts = inp.u16()
    if kind % 5 == 0:
        number = (
            base_recv + (inp.u8() - 16) if kind & 0x20 == 0 else int.from_bytes(inp.take(4), "big")
        )
        return encode_segment(
            DataSegment(
                conv=conv,
                option=option,
                timestamp=ts,
                number=number & 0xFFFFFFFF,
                sending_next=(base_recv + inp.u8() - 8) & 0xFFFFFFFF,
                payload=inp.take(inp.u8() % 200),
            )
        )
    if kind % 5 == 1:
        numbers = tuple((base_send + inp.u8() - 8) & 0xFFFFFFFF for _ in range(inp.u8() % 8))
        return encode_segment(
            AckSegment(
                conv=conv,
                option=option,
                receiving_window=(base_send + inp.u16()) & 0xFFFFFFFF,
                receiving_next=(base_send + inp.u8() - 8) & 0xFFFFFFFF,
                timestamp=ts,
                numbers=numbers,
            )
        )
    if kind % 5 == 4:
        return inp.take(inp.u8() % 40)
    command = (KcpCommand.PING, KcpCommand.TERMINATE, inp.u8())[kind % 5 - 2]
    return encode_segment(
        CommandSegment(
            conv=conv,
            command=command,
            option=option,
            sending_next=(base_recv + inp.u8() - 8) & 0xFFFFFFFF,
            receiving_next=(base_send + inp.u8() - 8) & 0xFFFFFFFF,
            peer_rto=inp.u16(),
        )
    )


def test_one_input(data: bytes) -> None:
    _check_decoder(data)
    inp = FuzzInput(data)
    rng = random.Random(0)
    conn = KcpConnection(CONV, SETTINGS, now=0.0, rng=rng.randbytes, is_client=False)
    now = 0.0
    received_payload = 0
    delivered = 0
    closed = False
    for _ in range(MAX_ACTIONS):
        if not inp.remaining:
            break
        action = inp.u8() % 8
        stats = conn.statistics()
        if action <= 2:
            payload = b"".join(
                _segment(inp, stats.receive_next, stats.send_una) for _ in range(1 + inp.u8() % 4)
            )
            received_payload += len(payload)
            datagram = _AUTH.seal(payload) if action else inp.take(inp.u8())
            conn.receive_datagram(datagram, now)
        elif action == 3:
            now += inp.u16() / 1000.0
            conn.handle_timer(now)
        elif action == 4:
            timer = conn.get_timer()
            if timer is not None:
                now = max(now, timer)
                conn.handle_timer(now)
        elif action == 5:
            if conn.writable:
                size = min(inp.u16() % 4000, conn.send_buffer_available())
                conn.send_data(bytes(size))
        elif action == 6:
            while (event := conn.next_event()) is not None:
                if isinstance(event, DataReceived):
                    delivered += len(event.data)
                else:
                    check(isinstance(event, (StreamEnded, ConnectionTerminated)), repr(event))
        else:
            if not closed:
                closed = True
                conn.abort() if inp.flag() else conn.close()
        for datagram in conn.datagrams_to_send(now):
            check(len(datagram) <= SETTINGS.mtu, f"{len(datagram)}-byte datagram")
        stats = conn.statistics()
        check(
            stats.receive_buffered_segments <= SETTINGS.receiving_window,
            f"{stats.receive_buffered_segments} segments buffered",
        )
        check(
            stats.send_buffered_bytes <= conn.send_buffer_limit(),
            f"{stats.send_buffered_bytes} bytes in the send buffer",
        )
        timer = conn.get_timer()
        if conn.state is KcpState.TERMINATED:
            check(timer is None, "timer armed after Terminated")
            check(not conn.datagrams_to_send(now + 60.0), "datagrams after Terminated")
        else:
            check(timer is not None, "no timer while alive")
    check(delivered <= received_payload, "delivered more than received")


def seeds() -> list[bytes]:
    def datagram(*segments: bytes) -> bytes:
        return b"\x01" + bytes([len(segments) - 1]) + b"".join(segments)

    ping = bytes([2, 0, 0, 0, 8, 8, 0, 0])
    data0 = bytes([0, 0, 0, 0, 16, 8, 5]) + b"hello"
    data1 = bytes([0, 0, 0, 0, 17, 8, 3]) + b"abc"
    ack = bytes([1, 0, 0, 0, 8, 0, 16, 8, 1, 8])
    terminate = bytes([3, 0, 0, 0, 8, 8, 0, 0])
    return [
        datagram(ping) + b"\x06" + datagram(data0, data1) + b"\x06" + b"\x04\x04",
        b"\x05\x10\x00" + b"\x04" + datagram(ack) + b"\x03\x01\x00" + b"\x07\x00",
        datagram(data1) + datagram(data0) + b"\x06" + datagram(terminate) + b"\x04\x04\x04",
        b"\x07\x01\x04\x04" + datagram(ping),
    ]


if __name__ == "__main__":
    main(test_one_input, seeds)
