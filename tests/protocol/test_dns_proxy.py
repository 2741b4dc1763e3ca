"""The ``dns`` outbound's pure message handling (protocol/dns_proxy.py)."""

from __future__ import annotations

import struct

import dns.message
import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2py.protocol.dns_proxy import (
    MAX_TCP_MESSAGE_BYTES,
    TYPE_A,
    TYPE_AAAA,
    TcpMessages,
    answer,
    frame_tcp,
    parse_ip_query,
)

V4 = bytes([10, 0, 0, 1])
V6 = bytes.fromhex("20010db8000000000000000000000009")


def query(name: str, rdtype: str, qid: int = 0x4000) -> bytes:
    return dns.message.make_query(name, rdtype, id=qid).to_wire()


@pytest.mark.parametrize(("rdtype", "code"), [("A", TYPE_A), ("AAAA", TYPE_AAAA)])
def test_a_and_aaaa_questions_are_ip_queries(rdtype: str, code: int) -> None:
    found = parse_ip_query(query("Host.Test", rdtype, 77))
    assert found is not None
    assert (found.id, found.domain, found.qtype) == (77, "Host.Test.", code)


@pytest.mark.parametrize(
    "message",
    [
        query("host.test", "MX"),
        query("host.test", "TXT"),
        b"",
        b"\x00" * 11,
        b"\x12\x34\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00",  # no question
        query("host.test", "A")[:-4],  # question cut before its type
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01",  # loop
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x50abc\x00\x00\x01\x00\x01",
    ],
    ids=["mx", "txt", "empty", "short-header", "no-question", "cut", "pointer-loop", "label-type"],
)
def test_everything_else_is_forwarded(message: bytes) -> None:
    assert parse_ip_query(message) is None


def test_only_the_first_question_counts_and_class_and_qr_are_not_looked_at() -> None:
    message = dns.message.make_query("first.test", "A", rdclass="CH", id=5)
    message.question.append(dns.message.make_query("second.test", "MX").question[0])
    message.flags |= 0x8000  # QR: a response
    found = parse_ip_query(message.to_wire())
    assert found is not None and found.domain == "first.test."


def test_answer_bytes_as_4_34_writes_them() -> None:
    # Bytes the real 4.34 sent for these questions (tests/interop/test_dns_outbound_interop.py).
    hosted = parse_ip_query(query("hosted.test", "A", 0x4000))
    assert hosted is not None
    assert answer(hosted, 0, (V4,)).hex() == (
        "40008580000100010000000006686f7374656404746573740000010001c00c000100010000025800040a000001"
    )
    empty = parse_ip_query(query("hosted.test", "AAAA", 0x4001))
    assert empty is not None
    assert answer(empty, 0, ()).hex() == (
        "40018580000100000000000006686f73746564047465737400001c0001"
    )
    missing = parse_ip_query(query("missing.test", "A", 0x4005))
    assert missing is not None
    assert answer(missing, 3, ()).hex() == (
        "400585830001000000000000076d697373696e6704746573740000010001"
    )


def test_answer_keeps_the_asked_family_order_and_repeats() -> None:
    found = parse_ip_query(query("x.test", "AAAA"))
    assert found is not None
    wire = answer(found, 0, (V4, V6, V6))
    assert struct.unpack_from("!H", wire, 6) == (2,)  # two answer records, the same address
    assert wire.count(V6) == 2 and V4 not in wire
    reply = dns.message.from_wire(wire)  # (dnspython merges the repeat when parsing)
    assert [rdata.to_text() for rrset in reply.answer for rdata in rrset] == ["2001:db8::9"]
    assert all(rrset.ttl == 600 for rrset in reply.answer)


def test_answer_repeats_the_name_case_as_asked() -> None:
    found = parse_ip_query(query("MiXeD.Test", "A"))
    assert found is not None
    assert b"\x05MiXeD\x04Test\x00" in answer(found, 0, (V4,))


def test_tcp_frames_and_empty_messages() -> None:
    assert frame_tcp(b"abc") == b"\x00\x03abc"
    assert frame_tcp(b"") == b""


def test_tcp_messages_byte_at_a_time() -> None:
    stream = frame_tcp(b"one") + b"\x00\x00" + frame_tcp(b"three!")
    reader = TcpMessages()
    got: list[bytes] = []
    for i in range(len(stream)):
        got += reader.feed(stream[i : i + 1])
    assert got == [b"one", b"", b"three!"]


def test_tcp_message_above_2048_bytes_is_an_error() -> None:
    reader = TcpMessages()
    assert reader.feed(frame_tcp(b"x" * MAX_TCP_MESSAGE_BYTES)) == [b"x" * MAX_TCP_MESSAGE_BYTES]
    with pytest.raises(ValueError, match="too large"):
        reader.feed(struct.pack("!H", MAX_TCP_MESSAGE_BYTES + 1))


@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20),
)
def test_tcp_messages_survive_any_split(messages: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frame_tcp(m) for m in messages)
    reader = TcpMessages()
    got: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        got += reader.feed(stream[pos : pos + step])
        pos += step
        i += 1
    assert got == messages


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    found = parse_ip_query(data)
    if found is not None:
        answer(found, 0, (V4, V6))
