"""VLESS client framing (protocol/vless.py)."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2py.protocol.vless import (
    COMMAND_MUX,
    COMMAND_TCP,
    COMMAND_UDP,
    PacketReader,
    RequestDecoder,
    ResponseHeader,
    encode_request,
    frame_packet,
)

ID = uuid.UUID("b831381d-6324-4d53-ad4f-8cda48b30811").bytes


def test_request_headers_as_4_34_encodes_them() -> None:
    assert encode_request(ID, COMMAND_TCP, "1.2.3.4", 443) == (
        b"\x00" + ID + b"\x00\x01" + b"\x01\xbb" + b"\x01\x01\x02\x03\x04"
    )
    assert encode_request(ID, COMMAND_UDP, "example.com", 53) == (
        b"\x00" + ID + b"\x00\x02" + b"\x00\x35" + b"\x02\x0bexample.com"
    )
    assert encode_request(ID, COMMAND_TCP, "::1", 80)[-17:] == b"\x03" + bytes(15) + b"\x01"
    assert encode_request(ID, COMMAND_MUX, "v1.mux.cool", 0) == b"\x00" + ID + b"\x00\x03"


@pytest.mark.parametrize("bad", [("", 1), ("x" * 256, 1)])
def test_bad_addresses_are_refused(bad: tuple[str, int]) -> None:
    with pytest.raises(ValueError):
        encode_request(ID, COMMAND_TCP, *bad)


def test_response_header_byte_at_a_time_with_addons() -> None:
    wire = b"\x00\x03abc"
    header = ResponseHeader()
    out = [header.feed(wire[i : i + 1]) for i in range(len(wire))]
    assert out == [None, None, None, None, b""]  # done with the header's last byte
    assert header.done


def test_response_header_then_data_in_one_read() -> None:
    assert ResponseHeader().feed(b"\x00\x00hello") == b"hello"


def test_wrong_response_version_is_an_error() -> None:
    with pytest.raises(ValueError, match="Expecting 0 but actually 1"):
        ResponseHeader().feed(b"\x01\x00")


def test_packets_drop_what_4_34_drops() -> None:
    assert frame_packet(b"") is None
    assert frame_packet(b"x" * 2047) is None
    assert frame_packet(b"x" * 2046) == b"\x07\xfe" + b"x" * 2046


@given(st.lists(st.binary(min_size=1, max_size=2046), max_size=6), st.integers(1, 50))
def test_packets_survive_any_split(packets: list[bytes], step: int) -> None:
    wire = b"".join(frame_packet(p) or b"" for p in packets)
    reader = PacketReader()
    got: list[bytes] = []
    for i in range(0, len(wire), step):
        got += reader.feed(wire[i : i + step])
    assert got == packets


USERS = {ID: "alice"}


@pytest.mark.parametrize(
    ("command", "address", "port"),
    [(COMMAND_TCP, "1.2.3.4", 443), (COMMAND_UDP, "example.com", 53), (COMMAND_TCP, "::1", 80)],
)
def test_request_decoder_byte_at_a_time(command: int, address: str, port: int) -> None:
    wire = encode_request(ID, command, address, port) + b"payload"
    decoder = RequestDecoder(USERS.get)
    found = None
    for i in range(len(wire)):
        found = decoder.feed(wire[i : i + 1])
        if found is not None:
            found.rest += wire[i + 1 :]
            break
    assert found is not None
    assert (found.user, found.command, found.address, found.port, found.rest) == (
        "alice",
        command,
        address,
        port,
        b"payload",
    )


def test_request_decoder_mux_and_addons_skipped() -> None:
    wire = b"\x00" + ID + b"\x02\x0a\x00" + b"\x03" + b"rest"  # 2 bytes of addons
    found = RequestDecoder(USERS.get).feed(wire)
    assert found is not None
    assert (found.command, found.address, found.port, found.rest) == (
        COMMAND_MUX,
        "v1.mux.cool",
        0,
        b"rest",
    )


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"\x01" + ID, "invalid request version"),
        (b"\x00" + bytes(16), "invalid request user id"),
        (b"\x00" + ID + b"\x00\x04", "invalid request address"),
        (b"\x00" + ID + b"\x00\x01\x00\x50\x07", "invalid request address"),
    ],
)
def test_request_decoder_errors_as_4_34(wire: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        RequestDecoder(USERS.get).feed(wire)


@given(st.binary(max_size=80))
def test_request_decoder_never_raises_other_errors(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        RequestDecoder(USERS.get).feed(data)
