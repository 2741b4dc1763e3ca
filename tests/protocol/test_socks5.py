"""Socks5ServerConnection and the SOCKS codecs (docs/spec/socks-sniffing-freedom.md section 1)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2py.errors import LocalProtocolError, RemoteProtocolError, Socks5Error
from v2py.protocol.socks5 import (
    AuthMethod,
    DataReceived,
    RequestReceived,
    Socks5Command,
    Socks5Event,
    Socks5ServerConnection,
    Socks5State,
    StreamEnded,
    UdpDatagram,
    decode_address,
    decode_udp_datagram,
    encode_address,
    encode_udp_datagram,
    udp_associate_reply_host,
)

H = bytes.fromhex
CONNECT_V4 = H("050100") + H("01 0a0000 01 7530".replace(" ", ""))  # 10.0.0.1:30000
CONNECT_DOMAIN = H("050100 03 0b") + b"example.com" + H("01bb")


def drive(
    conn: Socks5ServerConnection, chunks: list[bytes]
) -> tuple[list[Socks5Event], bytes, Socks5Error | None]:
    """Feed ``chunks``; collect events, output and the error (if any)."""
    events: list[Socks5Event] = []
    out = b""
    error: Socks5Error | None = None
    for chunk in chunks:
        conn.receive_data(chunk)
        try:
            while (event := conn.next_event()) is not None:
                events.append(event)
        except Socks5Error as exc:
            error = exc
        out += conn.data_to_send()
        if error is not None:
            break
    return events, out, error


def splits(data: bytes) -> list[list[bytes]]:
    """Whole and byte-at-a-time feedings of ``data``."""
    return [[data], [data[i : i + 1] for i in range(len(data))]]


def merge_data(events: list[Socks5Event]) -> list[Socks5Event]:
    """Coalesce consecutive DataReceived events (feeding granularity may split them)."""
    merged: list[Socks5Event] = []
    for event in events:
        if isinstance(event, DataReceived) and merged and isinstance(merged[-1], DataReceived):
            merged[-1] = DataReceived(data=merged[-1].data + event.data)
        else:
            merged.append(event)
    return merged


# -- SOCKS5 ---------------------------------------------------------------------------


@pytest.mark.parametrize("feed", splits(H("050100") + CONNECT_V4))
def test_noauth_connect(feed: list[bytes]) -> None:
    conn = Socks5ServerConnection()
    events, out, error = drive(conn, feed)
    assert error is None
    assert out == H("0500")
    assert events == [
        RequestReceived(version=5, command=Socks5Command.CONNECT, address="10.0.0.1", port=30000)
    ]
    conn.accept("127.0.0.1", 10800)
    # spec 1.2 step 4 [verified]: the reply carries the listen address and port
    assert conn.data_to_send() == H("05000001 7f000001 2a30".replace(" ", ""))
    assert conn.state is Socks5State.ESTABLISHED


def test_reply_for_any_address_and_ipv6() -> None:
    conn = Socks5ServerConnection()
    drive(conn, [H("050100") + CONNECT_DOMAIN])
    conn.accept("0.0.0.0", 1080)
    assert conn.data_to_send() == H("0500000100000000") + (1080).to_bytes(2, "big")
    conn6 = Socks5ServerConnection()
    drive(conn6, [H("050100") + CONNECT_DOMAIN])
    conn6.accept("::1", 1)
    assert conn6.data_to_send() == H("05000004") + ipaddress.IPv6Address("::1").packed + H("0001")


def test_domain_and_ipv6_requests() -> None:
    conn = Socks5ServerConnection()
    events, _, _ = drive(conn, [H("050100") + CONNECT_DOMAIN])
    assert events == [
        RequestReceived(version=5, command=Socks5Command.CONNECT, address="example.com", port=443)
    ]
    v6 = H("05010004") + ipaddress.IPv6Address("2001:db8::1").packed + H("0050")
    events, _, _ = drive(Socks5ServerConnection(), [H("050100") + v6])
    assert isinstance(events[0], RequestReceived)
    assert (events[0].address, events[0].port) == ("2001:db8::1", 80)


def test_domain_spelling_an_ip_becomes_the_ip() -> None:
    req = H("050100 03 09".replace(" ", "")) + b"127.0.0.1" + H("0050")
    events, _, _ = drive(Socks5ServerConnection(), [H("050100") + req])
    assert isinstance(events[0], RequestReceived)
    assert events[0].address == "127.0.0.1"


@pytest.mark.parametrize("domain", [b"", b"bad domain", b"a\x00b", b"\xff"])
def test_invalid_domain_is_refused_without_reply(domain: bytes) -> None:
    req = H("050100 03".replace(" ", "")) + bytes([len(domain)]) + domain + H("0050")
    _, out, error = drive(Socks5ServerConnection(), [H("050100") + req])
    assert error is not None and out == H("0500")


def test_unknown_address_type() -> None:
    _, out, error = drive(Socks5ServerConnection(), [H("050100") + H("05010002 00000000 0050")])
    assert isinstance(error, Socks5Error) and error.reply_code is None
    assert out == H("0500")


def test_tor_resolve_commands_are_connect() -> None:
    for cmd in (0xF0, 0xF1):
        req = bytes((5, cmd, 0)) + CONNECT_V4[3:]
        events, _, error = drive(Socks5ServerConnection(), [H("050100") + req])
        assert error is None
        assert isinstance(events[0], RequestReceived)
        assert events[0].command is Socks5Command.CONNECT


@pytest.mark.parametrize("cmd", [2, 3, 4, 0x7F])
def test_unsupported_commands_reply_07(cmd: int) -> None:
    # 4.34 refuses right after VER CMD RSV, before the address is even read.
    _, out, error = drive(Socks5ServerConnection(), [H("050100") + bytes((5, cmd, 0))])
    assert out == H("0500") + H("05070001000000000000")
    assert isinstance(error, Socks5Error) and error.reply_code == 7


def test_udp_associate_when_enabled() -> None:
    conn = Socks5ServerConnection(udp_enabled=True)
    req = H("050300 01 00000000 0000".replace(" ", ""))
    events, _, error = drive(conn, [H("050100") + req])
    assert error is None
    assert events == [
        RequestReceived(version=5, command=Socks5Command.UDP_ASSOCIATE, address="0.0.0.0", port=0)
    ]
    conn.accept("127.0.0.1", 30000)
    assert conn.data_to_send() == H("050000017f0000017530")


def test_no_acceptable_method() -> None:
    # spec 1.2 [verified]: password server, client offering only 00 -> 05 FF
    conn = Socks5ServerConnection(auth_method=AuthMethod.PASSWORD, accounts={"u": "p"})
    _, out, error = drive(conn, [H("050100")])
    assert out == H("05ff") and error is not None
    assert conn.state is Socks5State.ERROR
    _, out, error = drive(Socks5ServerConnection(), [H("050102")])
    assert out == H("05ff") and error is not None
    _, out, error = drive(Socks5ServerConnection(), [H("0500")])
    assert out == H("05ff") and error is not None


def rfc1929(user: bytes, password: bytes, version: int = 1) -> bytes:
    return bytes((version, len(user))) + user + bytes((len(password),)) + password


@pytest.mark.parametrize(
    "feed", splits(H("05020002") + rfc1929(b"alice", b"s3cret") + CONNECT_DOMAIN + b"hello")
)
def test_password_auth(feed: list[bytes]) -> None:
    conn = Socks5ServerConnection(auth_method=AuthMethod.PASSWORD, accounts={"alice": "s3cret"})
    events, out, error = drive(conn, feed)
    assert error is None
    assert out == H("0502") + H("0100")
    assert merge_data(events) == [
        RequestReceived(
            version=5,
            command=Socks5Command.CONNECT,
            address="example.com",
            port=443,
            username="alice",
        ),
        DataReceived(data=b"hello"),
    ]


def test_password_version_byte_not_checked() -> None:
    conn = Socks5ServerConnection(auth_method=AuthMethod.PASSWORD, accounts={"a": "b"})
    _, out, error = drive(conn, [H("050102") + rfc1929(b"a", b"b", version=9)])
    assert error is None and out == H("05020100")


@pytest.mark.parametrize("user,password", [(b"alice", b"wrong"), (b"bob", b"s3cret"), (b"", b"")])
def test_password_rejected(user: bytes, password: bytes) -> None:
    conn = Socks5ServerConnection(auth_method=AuthMethod.PASSWORD, accounts={"alice": "s3cret"})
    _, out, error = drive(conn, [H("050102") + rfc1929(user, password)])
    assert out == H("0502") + H("01ff")
    assert isinstance(error, RemoteProtocolError)


# -- SOCKS4 ---------------------------------------------------------------------------


@pytest.mark.parametrize("feed", splits(H("0401 0050 7f000001".replace(" ", "")) + b"user\x00"))
def test_socks4_connect(feed: list[bytes]) -> None:
    conn = Socks5ServerConnection()
    events, out, error = drive(conn, feed)
    assert error is None and out == b""
    assert events == [
        RequestReceived(version=4, command=Socks5Command.CONNECT, address="127.0.0.1", port=80)
    ]
    conn.accept("127.0.0.1", 1080)  # SOCKS4 ignores the bind address, as 4.34 does
    assert conn.data_to_send() == H("005a000000000000")


@pytest.mark.parametrize(
    "feed", splits(H("0401 01bb 00000001".replace(" ", "")) + b"\x00example.test\x00GET")
)
def test_socks4a_domain(feed: list[bytes]) -> None:
    events, _, error = drive(Socks5ServerConnection(), feed)
    assert error is None
    assert merge_data(events) == [
        RequestReceived(version=4, command=Socks5Command.CONNECT, address="example.test", port=443),
        DataReceived(data=b"GET"),
    ]


def test_socks4_refused_under_password_auth() -> None:
    conn = Socks5ServerConnection(auth_method=AuthMethod.PASSWORD, accounts={"a": "b"})
    _, out, error = drive(conn, [H("0401")])
    assert out == H("005b000000000000") and error is not None


def test_socks4_bind_refused() -> None:
    _, out, error = drive(Socks5ServerConnection(), [H("0402 0050 7f000001 00".replace(" ", ""))])
    assert out == H("005b000000000000") and error is not None


def test_socks4_overlong_user_id() -> None:
    _, _, error = drive(
        Socks5ServerConnection(), [H("04010050 7f000001".replace(" ", "")) + b"x" * 3000]
    )
    assert error is not None


# -- lifecycle ------------------------------------------------------------------------


def test_unknown_version_closes_silently() -> None:
    _, out, error = drive(Socks5ServerConnection(), [b"GET / HTTP/1.1\r\n"])
    assert out == b"" and isinstance(error, Socks5Error)


def test_eof_during_handshake() -> None:
    _, _, error = drive(Socks5ServerConnection(), [H("0501"), b""])
    assert isinstance(error, Socks5Error)


def test_data_and_eof_after_request() -> None:
    conn = Socks5ServerConnection()
    drive(conn, [H("050100") + CONNECT_V4])
    conn.accept()
    events, _, _ = drive(conn, [b"abc", b""])
    assert events == [DataReceived(data=b"abc"), StreamEnded()]
    assert conn.state is Socks5State.CLOSED
    with pytest.raises(LocalProtocolError):
        conn.receive_data(b"more")


def test_accept_in_wrong_state() -> None:
    conn = Socks5ServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.accept()
    with pytest.raises(LocalProtocolError):
        conn.reject()


def test_reject() -> None:
    conn = Socks5ServerConnection()
    drive(conn, [H("050100") + CONNECT_V4])
    conn.reject(5)
    assert conn.data_to_send() == H("05050001000000000000")
    assert conn.state is Socks5State.REJECTED
    conn4 = Socks5ServerConnection()
    drive(conn4, [H("04010050 7f000001 00".replace(" ", ""))])
    conn4.reject()
    assert conn4.data_to_send() == H("005b000000000000")


def test_error_is_sticky() -> None:
    conn = Socks5ServerConnection()
    drive(conn, [b"\x09\x09"])
    conn.receive_data(b"more")
    for _ in range(2):
        with pytest.raises(Socks5Error):
            conn.next_event()


def test_bad_auth_method_argument() -> None:
    with pytest.raises(ValueError):
        Socks5ServerConnection(auth_method=AuthMethod.NO_ACCEPTABLE)


# -- Hypothesis -----------------------------------------------------------------------

HANDSHAKES = [
    (AuthMethod.NO_AUTH, H("050100") + CONNECT_V4 + b"payload"),
    (AuthMethod.NO_AUTH, H("0503000102") + CONNECT_DOMAIN),
    (AuthMethod.PASSWORD, H("05020002") + rfc1929(b"alice", b"s3cret") + CONNECT_DOMAIN + b"xyz"),
    (AuthMethod.NO_AUTH, H("0401 01bb 00000001".replace(" ", "")) + b"id\x00host.test\x00body"),
]


def _run(auth: AuthMethod, chunks: list[bytes]) -> tuple[list[Socks5Event], bytes, bool]:
    conn = Socks5ServerConnection(auth_method=auth, accounts={"alice": "s3cret"}, udp_enabled=True)
    events, out, error = drive(conn, chunks)
    return merge_data(events), out, error is not None


@settings(max_examples=200, deadline=None)
@given(
    index=st.integers(0, len(HANDSHAKES) - 1),
    cuts=st.lists(st.integers(0, 400), max_size=8),
)
def test_split_points_do_not_matter(index: int, cuts: list[int]) -> None:
    auth, data = HANDSHAKES[index]
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    chunks = [c for c in chunks if c]
    assert _run(auth, chunks) == _run(auth, [data])


@settings(max_examples=500, deadline=None)
@given(
    auth=st.sampled_from([AuthMethod.NO_AUTH, AuthMethod.PASSWORD]),
    chunks=st.lists(st.binary(max_size=64), max_size=6),
    eof=st.booleans(),
)
def test_arbitrary_bytes_yield_only_events_or_remote_errors(
    auth: AuthMethod, chunks: list[bytes], eof: bool
) -> None:
    conn = Socks5ServerConnection(auth_method=auth, accounts={"u": "p"}, udp_enabled=True)
    for chunk in [*(c for c in chunks if c), *([b""] if eof else [])]:
        conn.receive_data(chunk)
        try:
            while (event := conn.next_event()) is not None:
                assert isinstance(event, Socks5Event)
        except RemoteProtocolError:
            assert conn.state is Socks5State.ERROR
            return
        conn.data_to_send()
        if conn.state is Socks5State.CLOSED:
            return


@settings(max_examples=500, deadline=None)
@given(
    prefix=st.sampled_from([H("050100"), H("04"), H("050102") + rfc1929(b"u", b"p"), b""]),
    tail=st.binary(max_size=80),
)
def test_mutated_handshakes(prefix: bytes, tail: bytes) -> None:
    for auth in (AuthMethod.NO_AUTH, AuthMethod.PASSWORD):
        conn = Socks5ServerConnection(auth_method=auth, accounts={"u": "p"})
        for feed in splits(prefix + tail):
            try:
                drive(conn, feed)
            except RemoteProtocolError:  # pragma: no cover - drive catches them
                raise AssertionError("leaked out of next_event") from None
            conn = Socks5ServerConnection(auth_method=auth, accounts={"u": "p"})


# -- addresses and UDP ----------------------------------------------------------------

addresses = st.one_of(
    st.ip_addresses().map(str),
    st.from_regex(r"[a-z0-9][a-z0-9.\-_]{0,60}", fullmatch=True).filter(lambda s: not _is_ip(s)),
)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


@given(address=addresses, port=st.integers(0, 65535), payload=st.binary(max_size=100))
def test_udp_datagram_roundtrip(address: str, port: int, payload: bytes) -> None:
    data = encode_udp_datagram(address, port, payload)
    assert decode_udp_datagram(data) == UdpDatagram(address=address, port=port, payload=payload)
    host, got_port, end = decode_address(data, 3) or ("", 0, 0)
    assert (host, got_port, end) == (address, port, len(data) - len(payload))


def test_udp_reply_header_is_the_requested_destination() -> None:
    # spec 1.4 [verified]: request to 127.0.0.1:30000 -> reply header 000000 01 7f000001 7530
    assert encode_udp_datagram("127.0.0.1", 30000, b"x") == H("000000017f0000017530") + b"x"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        H("00000001"),
        H("000001017f0000017530") + b"frag",  # FRAG != 0
        H("0000000a7f0000017530"),  # unknown ATYP
        H("000000017f00"),  # truncated
        H("00000003 00 0050".replace(" ", "")),  # empty domain
    ],
)
def test_udp_datagrams_dropped(data: bytes) -> None:
    assert decode_udp_datagram(data) is None


def test_udp_rsv_not_checked() -> None:
    got = decode_udp_datagram(H("ffff00017f0000017530") + b"hi")
    assert got == UdpDatagram(address="127.0.0.1", port=30000, payload=b"hi")


@given(st.binary(max_size=64))
def test_udp_decode_never_raises(data: bytes) -> None:
    decode_udp_datagram(data)


def test_udp_associate_reply_host() -> None:
    rule = udp_associate_reply_host
    assert (
        rule(configured_ip="10.1.1.1", client_host="127.0.0.1", listen_host="0.0.0.0") == "10.1.1.1"
    )
    assert rule(configured_ip=None, client_host="127.0.0.1", listen_host="0.0.0.0") == "127.0.0.1"
    assert rule(configured_ip=None, client_host="::1", listen_host="::") == "::1"
    assert rule(configured_ip=None, client_host="10.0.0.7", listen_host="10.0.0.1") == "10.0.0.1"


def test_encode_address_limits() -> None:
    with pytest.raises(ValueError):
        encode_address("a" * 256, 1)
    with pytest.raises(ValueError):
        encode_address("example.com", 70000)
    assert encode_address("[::1]", 1)[0] == 4
    assert decode_address(b"") is None
    assert decode_address(H("03")) is None
