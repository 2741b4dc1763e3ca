"""Body framing round trips and edge cases (docs/spec/vmess.md section 8)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.protocol.vmess.conftest import BodyPaths
from v2py.errors import VmessError
from v2py.protocol.vmess.body import BodyReader, BodyWriter, ShakeMask, max_chunk_payload
from v2py.protocol.vmess.constants import SecurityType

KEY = bytes(range(16))
IV = bytes(range(16, 32))
SECURITIES = [
    SecurityType.AES_128_GCM,
    SecurityType.CHACHA20_POLY1305,
    SecurityType.NONE,
    SecurityType.LEGACY,
]
OPTIONS = [0x00, 0x01, 0x05, 0x0D]


def rng_for(seed: int):  # type: ignore[no-untyped-def]
    return random.Random(seed).randbytes


def pair(
    body: BodyPaths, sec: int, opt: int, packet: bool = False
) -> tuple[BodyWriter, BodyReader]:
    return (
        body.writer(sec, opt, KEY, IV, packet=packet, rng=rng_for(1)),
        body.reader(sec, opt, KEY, IV, packet=packet),
    )


@pytest.mark.parametrize("sec", SECURITIES)
@pytest.mark.parametrize("opt", OPTIONS)
def test_stream_roundtrip_whole_and_bytewise(body: BodyPaths, sec: int, opt: int) -> None:
    data = random.Random(2).randbytes(20000)
    w, r = pair(body, sec, opt)
    wire = w.seal(data) + w.seal(b"") + w.seal(b"tail") + w.seal_end()
    assert r.feed(wire) == data + b"tail"
    assert r.ended == bool(opt & 1)
    w, r = pair(body, sec, opt)
    wire = w.seal(data[:3000]) + w.seal_end()
    got = b"".join(r.feed(wire[i : i + 1]) for i in range(len(wire)))
    assert got == data[:3000]


@pytest.mark.parametrize("sec", SECURITIES)
@pytest.mark.parametrize("opt", [0x01, 0x05, 0x0D])
def test_packet_roundtrip(body: BodyPaths, sec: int, opt: int) -> None:
    w, r = pair(body, sec, opt, packet=True)
    grams = [b"a", b"hello" * 100, bytes(1900), b"x" * 3000]
    wire = b"".join(w.seal_packet(g) for g in grams) + w.seal_end()
    got: list[bytes] = []
    for i in range(0, len(wire), 5):
        got += r.feed_packets(wire[i : i + 5])
    assert got == grams
    assert r.ended


@pytest.mark.parametrize(
    ("sec", "opt", "size"),
    [
        (SecurityType.AES_128_GCM, 0x0D, 1966),
        (SecurityType.AES_128_GCM, 0x05, 2030),
        (SecurityType.CHACHA20_POLY1305, 0x0D, 1966),
        (SecurityType.LEGACY, 0x01, 2042),
        (SecurityType.NONE, 0x05, 8192),
    ],
)
def test_chunk_sizes(body: BodyPaths, sec: int, opt: int, size: int) -> None:
    assert max_chunk_payload(sec, opt) == size
    w, r = pair(body, sec, opt)
    wire = w.seal(bytes(size * 3 + 1))
    events = []
    for i in range(0, len(wire), 1):
        out = r.feed(wire[i : i + 1])
        if out:
            events.append(len(out))
    assert events == [size, size, size, 1]


def test_end_marker_gcm_and_trailing_bytes_ignored(body: BodyPaths) -> None:
    w, r = pair(body, SecurityType.AES_128_GCM, 0x0D)
    wire = w.seal(b"abc") + w.seal_end() + b"garbage after end"
    assert r.feed(wire) == b"abc"
    assert r.ended
    assert r.feed(b"more") == b""


def test_end_marker_none_stream_is_size_zero(body: BodyPaths) -> None:
    w = body.writer(SecurityType.NONE, 0x01, KEY, IV, rng=rng_for(0))
    assert w.seal_end() == b"\x00\x00"
    w = body.writer(SecurityType.NONE, 0x05, KEY, IV, rng=rng_for(0))
    m = ShakeMask(IV)
    assert w.seal_end() == m.next().to_bytes(2, "big")


def test_no_chunk_stream_has_no_end_marker(body: BodyPaths) -> None:
    w = body.writer(SecurityType.AES_128_GCM, 0x04, KEY, IV, rng=rng_for(0))
    assert w.seal(b"x")
    assert w.seal_end() == b""
    w = body.writer(SecurityType.NONE, 0x00, KEY, IV, rng=rng_for(0))
    assert w.seal(b"raw") == b"raw"
    assert w.seal_end() == b""


def test_tampered_chunk_raises(body: BodyPaths) -> None:
    for sec in (SecurityType.AES_128_GCM, SecurityType.CHACHA20_POLY1305, SecurityType.LEGACY):
        w, r = pair(body, sec, 0x01)
        wire = bytearray(w.seal(b"hello world"))
        wire[8] ^= 0x40
        with pytest.raises(VmessError):
            r.feed(bytes(wire))


def test_reader_accepts_large_chunks(body: BodyPaths) -> None:
    # A chunk larger than 2048 (4.34 readers have a slow path for these).
    w = body.writer(SecurityType.AES_128_GCM, 0x01, KEY, IV, packet=True, rng=rng_for(0))
    big = bytes(65535 - 16)
    wire = w.seal_packet(big)
    r = body.reader(SecurityType.AES_128_GCM, 0x01, KEY, IV)
    assert r.feed(wire[:30000]) == b""
    assert r.feed(wire[30000:]) == big


def test_size_smaller_than_overhead_raises(body: BodyPaths) -> None:
    r = body.reader(SecurityType.AES_128_GCM, 0x01, KEY, IV)
    with pytest.raises(VmessError):
        r.feed(b"\x00\x05" + bytes(5))


def test_padding_without_masking_rejected(body: BodyPaths) -> None:
    with pytest.raises(ValueError):
        body.writer(SecurityType.AES_128_GCM, 0x09, KEY, IV, rng=rng_for(0))
    with pytest.raises(ValueError):
        body.reader(SecurityType.AUTO, 0x01, KEY, IV)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sec=st.sampled_from(SECURITIES),
    opt=st.sampled_from(OPTIONS),
    pieces=st.lists(st.binary(max_size=3000), max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=20000), max_size=8),
)
def test_stream_roundtrip_hypothesis_splits(
    body: BodyPaths, sec: int, opt: int, pieces: list[bytes], cuts: list[int]
) -> None:
    w, r = pair(body, sec, opt)
    wire = b"".join(w.seal(p) for p in pieces) + w.seal_end()
    points = sorted({c % (len(wire) + 1) for c in cuts} | {0, len(wire)})
    got = b"".join(r.feed(wire[a:b]) for a, b in zip(points, points[1:], strict=False))
    assert got == b"".join(pieces)
