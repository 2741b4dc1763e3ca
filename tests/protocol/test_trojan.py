"""Trojan framing (protocol/trojan.py): both sides, byte at a time, 4.34's reasons."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2py.protocol.trojan import (
    COMMAND_TCP,
    COMMAND_UDP,
    MAX_PACKET_BYTES,
    PacketReader,
    RequestDecoder,
    TrojanPacket,
    TrojanRequest,
    encode_packet,
    encode_request,
    password_key,
)

#: Captured from 4.34's trojan client (password "secret", destination localhost:80,
#: first payload b"hi"; then a UDP request to 1.2.3.4:53).
SECRET_KEY = b"95c7fbca92ac5083afda62a564a3d014fc3b72c9140e3cb99ea6bf12"
CAPTURED_TCP = SECRET_KEY + b"\r\n\x01\x03\tlocalhost\x00P\r\nhi"
CAPTURED_UDP_HEAD = SECRET_KEY + b"\r\n\x03\x01\x01\x02\x03\x04\x005\r\n"
USER = object()


def lookup(key: bytes) -> object | None:
    return USER if key == SECRET_KEY else None


def test_keys_as_4_34_computes_them() -> None:
    assert password_key("secret") == SECRET_KEY
    # proxy/trojan/protocol_test.go's password.
    assert password_key("password") == b"d63dc919e201d7bc4c825630d2cf25fdc93d4b2f0d46706d29038d01"


def test_request_header_as_4_34_writes_it() -> None:
    assert encode_request(SECRET_KEY, COMMAND_TCP, "localhost", 80) + b"hi" == CAPTURED_TCP
    assert encode_request(SECRET_KEY, COMMAND_UDP, "1.2.3.4", 53) == CAPTURED_UDP_HEAD
    assert encode_request(SECRET_KEY, COMMAND_TCP, "::1", 1)[59:-2] == (
        b"\x04" + bytes(15) + b"\x01\x00\x01"
    )


@pytest.mark.parametrize("bad", [("", 1), ("x" * 256, 1), ("a.b", 70000)])
def test_bad_addresses_are_refused(bad: tuple[str, int]) -> None:
    with pytest.raises(ValueError):
        encode_request(SECRET_KEY, COMMAND_TCP, *bad)
    with pytest.raises(ValueError):
        encode_packet(*bad, b"x")


def test_bad_key_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_request(b"short", COMMAND_TCP, "a.b", 1)


def test_packets_are_cut_at_8192_and_empty_ones_vanish() -> None:
    assert encode_packet("1.2.3.4", 53, b"") == b""
    one = encode_packet("1.2.3.4", 53, b"abc")
    assert one == b"\x01\x01\x02\x03\x04\x00\x35\x00\x03\r\nabc"
    big = encode_packet("a.b", 1, bytes(MAX_PACKET_BYTES + 5))
    packets = PacketReader().feed(big)
    assert [len(p.payload) for p in packets] == [MAX_PACKET_BYTES, 5]
    assert {(p.address, p.port) for p in packets} == {("a.b", 1)}


def test_request_decoded_whole() -> None:
    request = RequestDecoder(lookup).feed(CAPTURED_TCP)
    assert request == TrojanRequest(USER, COMMAND_TCP, "localhost", 80, b"hi")


def test_request_decoded_byte_at_a_time_after_the_first_read() -> None:
    decoder = RequestDecoder(lookup)
    wire = CAPTURED_UDP_HEAD
    out = [decoder.feed(wire[:58])]
    out += [decoder.feed(wire[i : i + 1]) for i in range(58, len(wire))]
    assert out[:-1] == [None] * (len(out) - 1)  # done with the header's last byte
    assert out[-1] == TrojanRequest(USER, COMMAND_UDP, "1.2.3.4", 53, b"")


def test_bytes_after_a_header_split_over_reads_are_kept() -> None:
    decoder = RequestDecoder(lookup)
    assert decoder.feed(CAPTURED_TCP[:60]) is None
    request = decoder.feed(CAPTURED_TCP[60:])
    assert request is not None and request.rest == b"hi"


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (SECRET_KEY[:10], "not trojan protocol"),  # 4.34 decides on its first read
        (SECRET_KEY + b"\r", "not trojan protocol"),  # 57 bytes
        (SECRET_KEY + b"XX\x01", "not trojan protocol"),  # no CR at byte 56
        (password_key("nope") + b"\r\n\x01", "not a valid user"),
        (
            SECRET_KEY + b"\r\n\x01\x09abc",
            "failed to read address and port > "
            "v2ray.com/core/common/protocol: unknown address type: 9",
        ),
        (
            SECRET_KEY + b"\r\n\x01\x03\x03a b\x00\x01\r\n",
            "failed to read address and port > "
            "v2ray.com/core/common/protocol: invalid domain name: a b",
        ),
        (
            SECRET_KEY + b"\r\n\x01\x03\x00\x00\x01\r\n",
            "failed to read address and port > "
            "v2ray.com/core/common/protocol: invalid domain name: ",
        ),
    ],
)
def test_rejections_carry_4_34_reasons(first: bytes, reason: str) -> None:
    with pytest.raises(ValueError) as info:
        RequestDecoder(lookup).feed(first)
    assert str(info.value) == reason


def test_crlfs_are_not_checked_and_any_command_but_3_is_tcp() -> None:
    # 4.34 reads both CRLFs without looking at them (only byte 56 must be CR).
    wire = SECRET_KEY + b"\rX\x07\x01\x7f\x00\x00\x01\x00\x07XYdata"
    request = RequestDecoder(lookup).feed(wire)
    assert request == TrojanRequest(USER, COMMAND_TCP, "127.0.0.1", 7, b"data")


@pytest.mark.parametrize(
    ("domain", "address"),
    [(b"1.2.3.4", "1.2.3.4"), (b"[::1]", "::1"), (b"1ab.example", "1ab.example")],
)
def test_a_domain_that_spells_an_ip_is_that_ip(domain: bytes, address: str) -> None:
    wire = SECRET_KEY + b"\r\n\x01\x03" + bytes((len(domain),)) + domain + b"\x00\x01\r\n"
    request = RequestDecoder(lookup).feed(wire)
    assert request is not None and request.address == address


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (SECRET_KEY + b"\r\n", "failed to read command > EOF"),
        (SECRET_KEY + b"\r\n\x01", "failed to read address and port > EOF"),
        (SECRET_KEY + b"\r\n\x01\x01\x7f", "failed to read address and port > unexpected EOF"),
        (SECRET_KEY + b"\r\n\x01\x01\x7f\x00\x00\x01", "failed to read address and port > EOF"),
        (SECRET_KEY + b"\r\n\x01\x01\x7f\x00\x00\x01\x00\x07", "failed to read crlf > EOF"),
        (
            SECRET_KEY + b"\r\n\x01\x01\x7f\x00\x00\x01\x00\x07\r",
            "failed to read crlf > unexpected EOF",
        ),
    ],
)
def test_the_end_inside_a_header_gives_4_34_reasons(wire: bytes, reason: str) -> None:
    decoder = RequestDecoder(lookup)
    assert decoder.feed(wire) is None
    assert decoder.end_reason() == reason
    step = reason.rsplit(" > ", 1)[0]
    assert decoder.timeout_reason("i/o timeout") == f"{step} > i/o timeout"


def test_no_reason_before_the_first_read() -> None:
    decoder = RequestDecoder(lookup)
    assert decoder.feed(b"") is None
    assert decoder.end_reason() is None
    assert decoder.timeout_reason("i/o timeout") is None


def test_packet_reader_byte_at_a_time() -> None:
    wire = (
        encode_packet("example.com", 53, b"query")
        + (b"\x04" + bytes(15) + b"\x01\x00\x09\x00\x00\r\n")
        + (encode_packet("1.2.3.4", 1, b"x"))
    )
    reader = PacketReader()
    got: list[TrojanPacket] = []
    for i in range(len(wire)):
        got += reader.feed(wire[i : i + 1])
        if i == 0:
            assert reader.pending
    assert got == [
        TrojanPacket("example.com", 53, b"query"),
        TrojanPacket("::1", 9, b""),
        TrojanPacket("1.2.3.4", 1, b"x"),
    ]
    assert not reader.pending


def test_packet_reader_refuses_oversize_and_bad_types() -> None:
    with pytest.raises(ValueError, match="^oversize payload$"):
        PacketReader().feed(b"\x01\x01\x02\x03\x04\x00\x35\x20\x01\r\n")
    with pytest.raises(ValueError, match="unknown address type: 2"):
        PacketReader().feed(b"\x02")


_hosts = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z0-9-]{1,10}){0,3}", fullmatch=True),
    st.ip_addresses().map(str),
)


@given(
    host=_hosts,
    port=st.integers(0, 0xFFFF),
    command=st.sampled_from([COMMAND_TCP, COMMAND_UDP]),
    rest=st.binary(max_size=64),
    cuts=st.lists(st.integers(0, 200), max_size=6),
)
def test_request_round_trip_at_any_split_after_the_first_read(
    host: str, port: int, command: int, rest: bytes, cuts: list[int]
) -> None:
    wire = encode_request(SECRET_KEY, command, host, port) + rest
    decoder = RequestDecoder(lookup)
    points = sorted({58, *(c for c in cuts if 58 < c < len(wire)), len(wire)})
    request = None
    start = 0
    for point in points:
        request = decoder.feed(wire[start:point])
        start = point
        if request is not None:
            break
    assert request is not None
    assert (request.command, request.address, request.port) == (command, host, port)
    assert request.rest + wire[start:] == rest


@given(
    packets=st.lists(
        st.tuples(_hosts, st.integers(0, 0xFFFF), st.binary(min_size=1, max_size=300)),
        max_size=5,
    ),
    cuts=st.lists(st.integers(0, 2000), max_size=8),
)
def test_packets_round_trip_at_any_split(
    packets: list[tuple[str, int, bytes]], cuts: list[int]
) -> None:
    wire = b"".join(encode_packet(*p) for p in packets)
    reader = PacketReader()
    got: list[TrojanPacket] = []
    start = 0
    for point in sorted({*(c for c in cuts if c < len(wire)), len(wire)}):
        got += reader.feed(wire[start:point])
        start = point
    assert got == [TrojanPacket(*p) for p in packets]


@given(data=st.binary(max_size=200), more=st.binary(max_size=50))
def test_arbitrary_bytes_give_a_request_none_or_value_error(data: bytes, more: bytes) -> None:
    decoder = RequestDecoder(lookup)
    try:
        decoder.feed(SECRET_KEY + b"\r" + data)
        decoder.feed(more)
    except ValueError:
        pass
    with contextlib.suppress(ValueError):
        PacketReader().feed(data + more)
