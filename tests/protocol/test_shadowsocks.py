"""Shadowsocks framing (protocol/shadowsocks.py): keys, chunks, the request, datagrams."""

from __future__ import annotations

import hashlib
import random

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from v2py.protocol.shadowsocks import (
    CIPHERS,
    MAX_CHUNK_PAYLOAD,
    MAX_DATAGRAM_BYTES,
    ChunkOpener,
    ChunkSealer,
    RequestDecoder,
    cipher_named,
    drain_parameters,
    encode_request_header,
    open_datagram,
    password_key,
    seal_datagram,
)

AEADS = [name for name, cipher in CIPHERS.items() if cipher.is_aead]


def rng_from(seed: int):  # type: ignore[no-untyped-def]
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


def test_password_key_is_evp_bytes_to_key() -> None:
    md5 = hashlib.md5(b"password").digest()
    assert password_key("password", 16) == md5
    assert password_key("password", 32) == md5 + hashlib.md5(md5 + b"password").digest()


def test_ciphers_as_4_34() -> None:
    sizes = {name: (c.key_size, c.salt_size) for name, c in CIPHERS.items()}
    assert sizes == {
        "aes-128-gcm": (16, 16),
        "aes-256-gcm": (32, 32),
        "chacha20-poly1305": (32, 32),
        "none": (0, 0),
    }


def test_chunk_layout_and_nonces() -> None:
    """A chunk is the sealed 2-byte length then the sealed payload, nonces 0, 1, 2, ...
    (12-byte little-endian); 4.34 writes at most 2014 payload bytes per chunk."""
    cipher = cipher_named("aes-128-gcm")
    key, salt = password_key("k", 16), bytes(16)
    sealed = ChunkSealer(cipher.aead(key, salt)).seal(b"a" * (MAX_CHUNK_PAYLOAD + 1))
    assert len(sealed) == 2 * (2 + 16) + MAX_CHUNK_PAYLOAD + 1 + 2 * 16
    aead = cipher.aead(key, salt)
    assert isinstance(aead, AESGCM)
    first_len = aead.decrypt((0).to_bytes(12, "little"), sealed[:18], None)
    assert first_len == MAX_CHUNK_PAYLOAD.to_bytes(2, "big")
    second_len_at = 18 + MAX_CHUNK_PAYLOAD + 16
    assert aead.decrypt(
        (2).to_bytes(12, "little"), sealed[second_len_at : second_len_at + 18], None
    ) == (1).to_bytes(2, "big")


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(AEADS),
    writes=st.lists(st.binary(max_size=5000), max_size=5),
    cut=st.integers(min_value=1, max_value=700),
    batch=st.tuples(st.booleans(), st.booleans()),
)
def test_chunks_round_trip_in_any_pieces(
    name: str, writes: list[bytes], cut: int, batch: tuple[bool, bool]
) -> None:
    """Both implementations (the C batch one when built, and the per-chunk one) put the
    same bytes on the wire and open each other's."""
    cipher = cipher_named(name)
    key, salt = password_key("pw", cipher.key_size), b"s" * cipher.salt_size
    sealer = cipher.sealer(key, salt) if batch[0] else ChunkSealer(cipher.aead(key, salt))
    reference = ChunkSealer(cipher.aead(key, salt))
    wire = b"".join(sealer.seal(w) for w in writes)
    assert wire == b"".join(reference.seal(w) for w in writes)
    opener = cipher.opener(key, salt) if batch[1] else ChunkOpener(cipher.aead(key, salt))
    got = b"".join(opener.feed(wire[i : i + cut]) for i in range(0, len(wire), cut))
    assert got == b"".join(writes)


def test_a_bad_tag_ends_the_stream_and_a_zero_length_chunk_is_the_end() -> None:
    cipher = cipher_named("chacha20-poly1305")
    key, salt = password_key("pw", 32), bytes(32)
    wire = bytearray(ChunkSealer(cipher.aead(key, salt)).seal(b"hello"))
    wire[-1] ^= 1
    for opener in (ChunkOpener(cipher.aead(key, salt)), cipher.opener(key, salt)):
        with pytest.raises(ValueError, match="message authentication failed"):
            opener.feed(bytes(wire))
    sealer = ChunkSealer(cipher.aead(key, salt))
    aead = cipher.aead(key, salt)
    end = aead.encrypt((2).to_bytes(12, "little"), b"\x00\x00", None)
    stream = sealer.seal(b"data") + end + b"ignored"
    for opener in (ChunkOpener(cipher.aead(key, salt)), cipher.opener(key, salt)):
        assert opener.feed(stream) == b"data"
        assert opener.ended and opener.feed(b"more") == b""


@pytest.mark.parametrize("name", list(CIPHERS))
@pytest.mark.parametrize(
    ("address", "port"), [("1.2.3.4", 80), ("example.com", 443), ("2001:db8::1", 53)]
)
def test_request_decodes_byte_at_a_time(name: str, address: str, port: int) -> None:
    cipher = cipher_named(name)
    key = password_key("pw", cipher.key_size)
    head, sealer = encode_request_header(cipher, key, address, port, rng_from(1))
    body = sealer.seal(b"payload") if sealer is not None else b"payload"
    decoder = RequestDecoder(cipher, key)
    wire = head + body
    request = None
    for i in range(len(head)):
        request = decoder.feed(wire[i : i + 1])
        if request is not None:
            break
    assert request is not None and i == len(head) - 1
    assert (request.address, request.port, request.rest) == (address, port, b"")
    rest = request.opener.feed(body) if request.opener is not None else body
    assert rest == b"payload"


def test_request_address_type_high_bits_are_ignored_and_errors_name_4_34s_reasons() -> None:
    cipher = cipher_named("none")
    request = RequestDecoder(cipher, b"").feed(b"\x11\x01\x02\x03\x04\x00\x50rest")
    assert request is not None and (request.address, request.port, request.rest) == (
        "1.2.3.4",
        80,
        b"rest",
    )
    with pytest.raises(ValueError, match="unknown address type: 5"):
        RequestDecoder(cipher, b"").feed(b"\x05")
    aead = cipher_named("aes-256-gcm")
    with pytest.raises(ValueError, match="^failed to read address > cipher: message auth"):
        RequestDecoder(aead, password_key("pw", 32)).feed(bytes(32 + 18))


@pytest.mark.parametrize("name", list(CIPHERS))
def test_datagrams_round_trip(name: str) -> None:
    cipher = cipher_named(name)
    key = password_key("pw", cipher.key_size)
    packet = seal_datagram(cipher, key, "example.com", 53, b"query", rng_from(2))
    assert packet is not None
    assert open_datagram(cipher, key, packet) == ("example.com", 53, b"query")


def test_datagram_limits_as_4_34() -> None:
    """4.34 builds a datagram in one 2048-byte buffer: a sealed one that does not fit
    is not sent (4.34's writer would panic), a plain one is cut; reading cuts at 2048."""
    aead = cipher_named("aes-128-gcm")
    key = password_key("pw", 16)
    room = MAX_DATAGRAM_BYTES - 16 - 7 - 16
    assert seal_datagram(aead, key, "1.2.3.4", 1, bytes(room), rng_from(3)) is not None
    assert seal_datagram(aead, key, "1.2.3.4", 1, bytes(room + 1), rng_from(3)) is None
    plain = cipher_named("none")
    cut = seal_datagram(plain, b"", "1.2.3.4", 1, bytes(3000), rng_from(3))
    assert cut is not None and len(cut) == MAX_DATAGRAM_BYTES
    with pytest.raises(ValueError, match="message authentication failed"):
        open_datagram(aead, key, bytes(100))
    with pytest.raises(ValueError, match="insufficient data"):
        open_datagram(aead, key, bytes(16))


def test_drain_parameters_follow_the_key_in_4_34s_ranges() -> None:
    seen = {drain_parameters(password_key(str(i), 16)) for i in range(200)}
    assert all(0 <= base < 3266 and 1 <= spread <= 64 for base, spread in seen)
    assert len(seen) > 150
    assert drain_parameters(b"k" * 16) == drain_parameters(b"k" * 16)
