"""mKCP codecs: segments, packet layer, settings, RTT (docs/spec/mkcp.md sections 2-4, 6, 9)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2py.protocol.mkcp.packet import (
    AeadAuthenticator,
    PacketCodec,
    SimpleAuthenticator,
    make_header,
    seed_key,
    xor_backward,
    xor_forward,
)
from v2py.protocol.mkcp.rtt import RoundTripInfo
from v2py.protocol.mkcp.segment import (
    AckSegment,
    CommandSegment,
    DataSegment,
    KcpCommand,
    decode_segment,
    decode_segments,
    encode_segment,
)
from v2py.protocol.mkcp.settings import KcpSettings

u16 = st.integers(0, 0xFFFF)
u8 = st.integers(0, 0xFF)
u32 = st.integers(0, 0xFFFFFFFF)

data_segments = st.builds(
    DataSegment,
    conv=u16,
    option=u8,
    timestamp=u32,
    number=u32,
    sending_next=u32,
    payload=st.binary(min_size=1, max_size=1500),
)
ack_segments = st.builds(
    AckSegment,
    conv=u16,
    option=u8,
    receiving_window=u32,
    receiving_next=u32,
    timestamp=u32,
    numbers=st.lists(u32, max_size=128).map(tuple),
)
cmd_segments = st.builds(
    CommandSegment,
    conv=u16,
    command=st.integers(2, 0xFF),
    option=u8,
    sending_next=u32,
    receiving_next=u32,
    peer_rto=u32,
)
segments = st.one_of(data_segments, ack_segments, cmd_segments)


def _seeded(seed: int = 7):
    return random.Random(seed).randbytes


@given(segments)
def test_segment_round_trip(seg) -> None:
    wire = encode_segment(seg)
    parsed = decode_segment(wire)
    assert parsed is not None
    assert parsed == (seg, len(wire))


@given(st.lists(segments, max_size=6))
def test_concatenated_segments(segs) -> None:
    wire = b"".join(encode_segment(s) for s in segs)
    assert decode_segments(wire) == (segs, True)


@given(st.binary(max_size=200))
def test_decode_arbitrary_bytes_never_raises(buf: bytes) -> None:
    decode_segments(buf)


def test_ping_vector_layout() -> None:
    seg = CommandSegment(
        conv=0x1234, command=KcpCommand.PING, sending_next=0, receiving_next=0, peer_rto=100
    )
    assert encode_segment(seg).hex() == "12340300000000000000000000000064"


def test_data_layout_and_short_tail_rules() -> None:
    seg = DataSegment(conv=1, timestamp=2, number=3, sending_next=4, payload=b"xy")
    wire = encode_segment(seg)
    assert wire.hex() == "000101000000000200000003000000040002" + b"xy".hex()
    assert decode_segment(wire[:-1]) is None
    # V2Ray requires 15 bytes after the prefix, so an empty DATA at the end is unreadable.
    empty = encode_segment(DataSegment(conv=1, timestamp=0, number=0, sending_next=0, payload=b""))
    assert decode_segment(empty) is None
    assert decode_segments(wire + b"\x00")[1] is False


def test_ack_layout() -> None:
    seg = AckSegment(conv=5, receiving_window=776, receiving_next=0, timestamp=9, numbers=(0,))
    assert encode_segment(seg).hex() == "000500000000030800000000000000090100000000"
    with pytest.raises(ValueError):
        encode_segment(
            AckSegment(
                conv=0, receiving_window=0, receiving_next=0, timestamp=0, numbers=(0,) * 129
            )
        )


# -- security layer ------------------------------------------------------------


def test_simple_authenticator_vector() -> None:
    auth = SimpleAuthenticator()
    plain = bytes.fromhex("12340300000000000000000000000064")
    sealed = auth.seal(plain)
    assert sealed.hex() == "7e33d3b47e23c1807d23c1807d23c1807d23c1807d47"
    assert auth.open(sealed) == plain


def _xor_forward_naive(data: bytes) -> bytes:
    b = bytearray(data)
    for i in range(4, len(b)):
        b[i] ^= b[i - 4]
    return bytes(b)


@given(st.binary(max_size=300))
def test_xor_chain_matches_byte_definition(data: bytes) -> None:
    assert xor_forward(data) == _xor_forward_naive(data)
    assert xor_backward(xor_forward(data)) == data


@given(st.binary(max_size=1400))
def test_simple_authenticator_round_trip_and_tamper(data: bytes) -> None:
    auth = SimpleAuthenticator()
    sealed = bytearray(auth.seal(data))
    assert auth.open(bytes(sealed)) == data
    sealed[-1] ^= 0x01
    assert auth.open(bytes(sealed)) is None


def test_seed_key_vector() -> None:
    assert seed_key("mysecret").hex() == "652c7dc687d98c9889304ed2e408c74b"


def test_aead_round_trip_and_short() -> None:
    auth = AeadAuthenticator("mysecret", _seeded())
    sealed = auth.seal(b"hello")
    assert len(sealed) == 12 + 5 + 16
    assert AeadAuthenticator("mysecret", _seeded(1)).open(sealed) == b"hello"
    assert AeadAuthenticator("other", _seeded(1)).open(sealed) is None
    assert auth.open(sealed[:28]) is None


# -- obfuscation headers -----------------------------------------------------------


def _fixed_rng(value: bytes):
    def rng(n: int) -> bytes:
        return value[:n]

    return rng


def test_srtp_header_counter() -> None:
    h = make_header("srtp", _fixed_rng(b"\x97\xcb"))
    assert [h.next_header().hex() for _ in range(2)] == ["b5e897cc", "b5e897cd"]
    h = make_header("SRTP", _fixed_rng(b"\xff\xff"))
    assert h.next_header().hex() == "b5e80000"


def test_utp_header() -> None:
    h = make_header("utp", _fixed_rng(b"\x94\x6a"))
    assert h.next_header().hex() == h.next_header().hex() == "946a0100"


def test_wechat_video_header() -> None:
    h = make_header("wechat-video", _fixed_rng(b"\x8f\xc5"))
    assert h.next_header().hex() == "a10800008fc600101118302230"
    assert h.next_header().hex() == "a10800008fc700101118302230"


def test_dtls_header_sequence_and_length() -> None:
    h = make_header("dtls", _fixed_rng(b"\x72\x91"))
    first = [h.next_header().hex() for _ in range(3)]
    assert first == [
        "17fefd7291000000000000" + "0011",
        "17fefd7291000000000001" + "0022",
        "17fefd7291000000000002" + "0033",
    ]
    lengths = [0x11, 0x22, 0x33] + [int(h.next_header()[-2:].hex(), 16) for _ in range(6)]
    assert lengths == [17, 34, 51, 68, 85, 52, 69, 86, 53]


def test_wireguard_and_none_headers() -> None:
    assert make_header("wireguard", _seeded()).next_header().hex() == "04000000"
    assert make_header("none", _seeded()).next_header() == b""
    with pytest.raises(ValueError):
        make_header("bogus", _seeded())


@pytest.mark.parametrize("header", ["none", "srtp", "utp", "wechat-video", "dtls", "wireguard"])
@pytest.mark.parametrize("seed", [None, "mysecret"])
def test_packet_codec_round_trip(header: str, seed: str | None) -> None:
    settings = KcpSettings(header_type=header, seed=seed)
    tx = PacketCodec(settings, _seeded(1))
    rx = PacketCodec(settings, _seeded(2))
    wire = tx.seal(b"segment bytes")
    assert len(wire) == settings.header_size + len(b"segment bytes") + (28 if seed else 6)
    assert rx.open(wire) == b"segment bytes"
    assert rx.open(wire[: settings.header_size]) is None


# -- settings ---------------------------------------------------------------------


def test_settings_defaults_and_derived() -> None:
    s = KcpSettings()
    s.validate()
    assert (s.mtu, s.tti, s.uplink_capacity, s.downlink_capacity) == (1350, 50, 5, 20)
    assert s.sending_in_flight == 194
    assert s.receiving_window == 776
    assert s.sending_buffer_segments == 1553
    assert s.mss == 1326
    assert KcpSettings(seed="x").mss == 1316
    assert KcpSettings(header_type="dtls").mss == 1313
    assert KcpSettings(uplink_capacity=0).sending_in_flight == 8
    assert KcpSettings(write_buffer_size=0).write_buffer_bytes == 512 * 1024


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"mtu": 575}, "mtu"),
        ({"mtu": 1461}, "mtu"),
        ({"tti": 9}, "tti"),
        ({"tti": 101}, "tti"),
        ({"header_type": "http"}, "header.type"),
        ({"uplink_capacity": -1}, "uplinkCapacity"),
    ],
)
def test_settings_validate(kwargs, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        KcpSettings(**kwargs).validate()
    KcpSettings(mtu=576, tti=10, header_type="WeChat-Video").validate()


# -- RTT --------------------------------------------------------------------------


def test_rtt_estimator() -> None:
    rtt = RoundTripInfo(50)
    assert rtt.rto == 100
    rtt.update(40, 1000)
    assert (rtt.srtt, rtt.variation, rtt.rto) == (40, 20, 150)
    rtt.update(40, 1100)
    # var = (60 + 0) / 4 = 15; srtt = 40 -> clamped to minRtt 50; 4*15 > 50 -> rto (50+60)*5/4
    assert (rtt.srtt, rtt.variation, rtt.rto) == (50, 15, 137)
    rtt.update_peer_rto(500, 2000)  # a local sample within 3 s wins
    assert rtt.rto == 137
    rtt.update_peer_rto(500, 4100)
    assert rtt.rto == 500
    rtt.update(0x7FFFFFFF, 5000)
    assert rtt.rto == 500
    big = RoundTripInfo(10)
    big.update(20000, 0)
    assert big.rto == 12500
