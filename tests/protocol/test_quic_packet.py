"""The QUIC datagram wrap of 4.34 (``transport/internet/quic/conn.go``): layout, key
derivation, round trips, and the drop rules for short or tampered datagrams."""

from __future__ import annotations

import hashlib
import random

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from hypothesis import given
from hypothesis import strategies as st

from v2py.protocol.quic_packet import NONCE_BYTES, QuicPacketCodec, quic_key

SECURITIES = ["none", "aes-128-gcm", "chacha20-poly1305"]
HEADERS = ["none", "srtp", "utp", "wechat-video", "dtls", "wireguard"]


def seeded(seed: int = 1):  # type: ignore[no-untyped-def]
    rnd = random.Random(seed)
    return lambda n: rnd.randbytes(n)


def codec(security: str, header: str = "none", key: str = "k3y") -> QuicPacketCodec:
    return QuicPacketCodec(security=security, key=key, header=header, rng=seeded())


def test_key_is_sha256_of_key_and_salt() -> None:
    assert quic_key("abc") == hashlib.sha256(b"abcv2ray-quic-salt").digest()
    assert quic_key("") == hashlib.sha256(b"v2ray-quic-salt").digest()


def test_aes_layout_header_nonce_sealed() -> None:
    sealed = codec("aes-128-gcm", "wireguard").seal(b"quic packet")
    assert sealed[:4] == b"\x04\x00\x00\x00"
    nonce, body = sealed[4 : 4 + NONCE_BYTES], sealed[4 + NONCE_BYTES :]
    assert AESGCM(quic_key("k3y")[:16]).decrypt(nonce, body, None) == b"quic packet"


def test_chacha_uses_the_whole_key() -> None:
    sealed = codec("chacha20-poly1305").seal(b"x" * 50)
    plain = ChaCha20Poly1305(quic_key("k3y")).decrypt(sealed[:12], sealed[12:], None)
    assert plain == b"x" * 50


def test_none_without_header_is_transparent() -> None:
    plain = codec("none")
    assert plain.transparent
    assert plain.seal(b"abc") == b"abc"
    assert plain.open(b"abc") == b"abc"
    assert not codec("none", "srtp").transparent
    assert not codec("aes-128-gcm").transparent


@pytest.mark.parametrize("security", SECURITIES)
@pytest.mark.parametrize("header", HEADERS)
@given(packet=st.binary(min_size=1, max_size=1500))
def test_round_trip(security: str, header: str, packet: bytes) -> None:
    sender, receiver = codec(security, header), codec(security, header)
    assert receiver.open(sender.seal(packet)) == packet


@pytest.mark.parametrize("header", HEADERS)
def test_drops_short_tampered_and_foreign(header: str) -> None:
    sender, receiver = codec("aes-128-gcm", header), codec("aes-128-gcm", header)
    size = sender.header.size
    sealed = sender.seal(b"packet")
    assert receiver.open(sealed[: size + NONCE_BYTES]) is None
    if size:
        assert receiver.open(sealed[:size]) is None
    tampered = bytearray(sealed)
    tampered[-1] ^= 1
    assert receiver.open(bytes(tampered)) is None
    other = codec("aes-128-gcm", header, key="other")
    assert other.open(sealed) is None
    assert codec("chacha20-poly1305", header).open(sealed) is None


@given(junk=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(junk: bytes) -> None:
    for security in SECURITIES:
        result = codec(security, "dtls").open(junk)
        assert result is None or isinstance(result, bytes)


def test_unknown_names_are_value_errors() -> None:
    with pytest.raises(ValueError):
        codec("aes-256-gcm")
    with pytest.raises(ValueError):
        codec("none", "noise")
