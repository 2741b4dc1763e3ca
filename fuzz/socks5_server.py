"""Fuzz target: the SOCKS4/4a/5 server core and the UDP datagram decoder
(``v2py.protocol.socks5``; v2ray-core ``proxy/socks/protocol.go``).

Invariant: arbitrary client bytes, cut into arbitrary reads, yield only events or
:class:`~v2py.errors.Socks5Error` from ``next_event``; nothing else escapes. The core
never buffers more than a handshake can need (it decides within
``HANDSHAKE_BOUND`` bytes), replies stay small, and relayed data is exactly what came
after the request. ``decode_udp_datagram`` never raises.

Run by hand: ``python -m fuzz.socks5_server -max_total_time=300``.
"""

from __future__ import annotations

from fuzz._harness import FuzzInput, bounded, check, instrumented, main

with instrumented("v2py"):
    from v2py.errors import Socks5Error
    from v2py.protocol.socks5 import (
        SOCKS4_FIELD_MAX_BYTES,
        AuthMethod,
        DataReceived,
        RequestReceived,
        Socks5ServerConnection,
        Socks5State,
        StreamEnded,
        decode_udp_datagram,
    )

#: The longest handshake a client can send before the core must have decided: a
#: SOCKS4a request with two maximal NUL-terminated fields, or a SOCKS5 greeting (257),
#: RFC 1929 auth (513) and a request with a 255-byte domain (262).
HANDSHAKE_BOUND = 8 + 2 * (SOCKS4_FIELD_MAX_BYTES + 1) + 1
#: Largest reply bytes one connection can produce (method, auth, request reply).
REPLY_BOUND = 2 + 2 + 22

_HANDSHAKE_STATES = (Socks5State.GREETING, Socks5State.AUTH, Socks5State.REQUEST)


def test_one_input(data: bytes) -> None:
    inp = FuzzInput(data)
    flags = inp.u8()
    password = bool(flags & 1)
    core = Socks5ServerConnection(
        auth_method=AuthMethod.PASSWORD if password else AuthMethod.NO_AUTH,
        accounts={"u": "p", "": ""} if password else None,
        udp_enabled=bool(flags & 2),
    )
    fed = 0
    after_request = 0  # bytes fed once the request was complete
    relayed = 0
    replies = 0
    failed = False
    pieces = inp.pieces()
    if flags & 4:
        pieces.append(b"")  # the client's EOF
    for piece in pieces:
        if core.state is Socks5State.CLOSED:
            break
        if core.state in (Socks5State.AWAIT_REPLY, Socks5State.ESTABLISHED):
            after_request += len(piece)
        core.receive_data(piece)
        fed += len(piece)
        try:
            while (event := core.next_event()) is not None:
                if isinstance(event, RequestReceived):
                    check(0 <= event.port <= 0xFFFF, f"port {event.port}")
                    check(event.version in (4, 5), f"version {event.version}")
                    if flags & 8:
                        core.reject()
                    else:
                        core.accept("127.0.0.1", 1080)
                elif isinstance(event, DataReceived):
                    relayed += len(event.data)
                else:
                    check(isinstance(event, StreamEnded), f"unexpected event {event!r}")
        except Socks5Error:
            failed = True
        replies += len(core.data_to_send())
        if core.state in _HANDSHAKE_STATES:
            check(fed <= HANDSHAKE_BOUND, f"{fed} bytes buffered in {core.state}")
        if failed:
            check(core.state is Socks5State.ERROR, f"error raised in state {core.state}")
            break
    bounded(replies, 0, factor=0, slack=REPLY_BOUND, what="replies")
    # Data after the request is relayed exactly (pipelined bytes in the request's read
    # count too, so the bound is the input, and nothing is invented).
    bounded(relayed, fed, factor=1, slack=0, what="relayed")
    check(relayed >= after_request or failed, "relayed data lost")

    datagram = decode_udp_datagram(data)
    if datagram is not None:
        check(0 <= datagram.port <= 0xFFFF, f"udp port {datagram.port}")
        check(len(datagram.payload) <= len(data), "udp payload larger than the datagram")


def seeds() -> list[bytes]:
    def framed(flags: int, *reads: bytes) -> bytes:
        return bytes([flags]) + b"".join(bytes([len(r)]) + r for r in reads)

    return [
        framed(0, b"\x05\x01\x00", b"\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50", b"hello"),
        framed(1, b"\x05\x01\x02", b"\x01\x01u\x01p", b"\x05\x01\x00\x03\x04host\x01\xbb"),
        framed(2, b"\x05\x01\x00\x05\x03\x00\x04" + bytes(16) + b"\x00\x35"),
        framed(4, b"\x04\x01\x00\x50\x7f\x00\x00\x01user\x00", b"data"),
        framed(8, b"\x04\x01\x01\xbb\x00\x00\x00\x01\x00example.test\x00"),
        framed(0, b"\x05\x01\x00\x05\xf0\x00\x03\x07a.b-c_d\x00\x01"),
        framed(0, b"\x04\x01\x00\x50\x7f\x00\x00\x01", *[b"u" * 255] * 9),  # overlong id
        b"\x00\x00\x00\x01\x7f\x00\x00\x01\x00\x35payload",
    ]


if __name__ == "__main__":
    main(test_one_input, seeds)
