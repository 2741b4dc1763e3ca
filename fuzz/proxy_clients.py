"""Fuzz target: the outbound handshake decoders, SOCKS5 client and HTTP CONNECT client
(``v2py.protocol.socks5.Socks5ClientConnection``, ``v2py.protocol.http_proxy.
HttpConnectClient``; v2ray-core ``proxy/socks/protocol.go`` ClientHandshake and
``proxy/http/client.go``).

Both read what an upstream proxy answers, so the bytes are the server's: arbitrary,
in fuzzer-chosen reads, optionally ended by EOF, after a fuzzer-chosen request
(CONNECT or UDP ASSOCIATE, with or without a user).

Invariants: ``receive_data`` raises nothing; ``next_event`` raises nothing but
:class:`~v2py.errors.Socks5Error` / :class:`~v2py.errors.RemoteProtocolError`, gives
the success event at most once, and an error keeps being raised; bytes after the
answer are kept exactly (``trailing_data``) and never exceed what came in; what the
client sends stays the request it was built with.

Run by hand: ``python -m fuzz.proxy_clients -max_total_time=300``.
"""

from __future__ import annotations

from fuzz._harness import FuzzInput, bounded, check, instrumented, main

with instrumented("v2py", "h11"):
    from v2py.errors import RemoteProtocolError, Socks5Error
    from v2py.protocol.http_proxy import HttpConnectClient
    from v2py.protocol.socks5 import (
        ReplyReceived,
        Socks5ClientConnection,
        Socks5ClientState,
        Socks5Command,
    )

#: Longest request either client sends here (greeting + auth + request; CONNECT head).
REQUEST_BOUND = 1024


def _socks(inp: FuzzInput, reads: list[bytes]) -> None:
    flags = inp.u8()
    client = Socks5ClientConnection(
        command=Socks5Command.UDP_ASSOCIATE if flags & 1 else Socks5Command.CONNECT,
        address=("example.test", "127.0.0.1", "::1")[flags % 3],
        port=443,
        username="user" if flags & 2 else None,
        password="pass",
    )
    sent = len(client.data_to_send())
    fed = 0
    replies = 0
    error: Socks5Error | None = None
    for data in reads:
        client.receive_data(data)
        fed += len(data)
        try:
            while (event := client.next_event()) is not None:
                check(isinstance(event, ReplyReceived), f"unexpected event {event!r}")
                assert isinstance(event, ReplyReceived)
                check(0 <= event.port <= 0xFFFF, f"port {event.port}")
                replies += 1
        except Socks5Error as exc:
            error = exc
            check(client.state is Socks5ClientState.ERROR, f"error in state {client.state}")
            break
        finally:
            sent += len(client.data_to_send())
    check(replies <= 1, f"{replies} replies")
    bounded(sent, 0, factor=0, slack=REQUEST_BOUND, what="socks request")
    bounded(len(client.trailing_data), fed, factor=1, slack=0, what="socks trailing data")
    if error is not None:
        try:
            client.next_event()
        except Socks5Error:
            pass
        else:
            raise AssertionError("socks error not raised again")


def _http(inp: FuzzInput, reads: list[bytes]) -> None:
    flags = inp.u8()
    client = HttpConnectClient(
        ("example.test:443", "127.0.0.1:80", "[::1]:8080")[flags % 3],
        ("user", "pass") if flags & 4 else None,
    )
    sent = len(client.data_to_send())
    fed = 0
    tunnels = 0
    fed_after = 0
    for data in reads:
        if tunnels:
            fed_after += len(data)
        client.receive_data(data)
        fed += len(data)
        try:
            while (event := client.next_event()) is not None:
                tunnels += 1
                check(event.status_line.startswith("200"), event.status_line)
        except RemoteProtocolError:
            break
    check(tunnels <= 1, f"{tunnels} tunnels")
    bounded(sent, 0, factor=0, slack=REQUEST_BOUND, what="connect request")
    bounded(len(client.trailing_data), fed, factor=1, slack=0, what="http trailing data")
    check(len(client.trailing_data) >= fed_after, "tunnel bytes lost")


def test_one_input(data: bytes) -> None:
    inp = FuzzInput(data)
    which = inp.u8()
    eof = bool(which & 2)
    target = _http if which & 1 else _socks
    head = inp.u8()
    reads = inp.pieces()
    if eof:
        reads.append(b"")
    sub = FuzzInput(bytes([head]))
    target(sub, reads)


def seeds() -> list[bytes]:
    def framed(which: int, flags: int, *reads: bytes) -> bytes:
        return bytes([which, flags]) + b"".join(bytes([len(r)]) + r for r in reads)

    return [
        framed(0, 0, b"\x05\x00", b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38tunnel"),
        framed(0, 3, b"\x05\x02\x01\x00", b"\x05\x00\x00\x03\x04host\x00\x35"),
        framed(2, 1, b"\x05\x00\x05\x00\x00\x04" + bytes(16) + b"\x00\x35"),
        framed(0, 0, b"\x05\x00\x05\x05\x00"),
        framed(1, 0, b"HTTP/1.1 200 Connection established\r\n\r\ntunnel"),
        framed(3, 4, b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"),
        framed(1, 1, b"HTTP/1.0 200\r\nX: y\r\n", b"\r\n\x16\x03\x01"),
        framed(1, 2, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"),
    ]


if __name__ == "__main__":
    main(test_one_input, seeds)
