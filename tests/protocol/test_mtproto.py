"""MTProto "obfuscated2" headers (protocol/mtproto.py) as 4.34 reads and writes them."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from v2py.protocol.mtproto import ABRIDGED, INTERMEDIATE, client_handshake, server_handshake

SECRET = bytes(range(16))


def _ctr(key: bytes, nonce: bytes):  # type: ignore[no-untyped-def]
    return Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()


def app_header(kind: bytes, raw_dc: int, secret: bytes = SECRET) -> bytes:
    """A Telegram app's header towards a proxy holding ``secret``."""
    header = bytearray(os.urandom(64))
    header[56:60] = kind
    header[60:62] = raw_dc.to_bytes(2, "little", signed=True)
    key = hashlib.sha256(bytes(header[8:40]) + secret).digest()
    sealed = _ctr(key, bytes(header[40:56])).update(bytes(header))
    return bytes(header[:56]) + sealed[56:]


@pytest.mark.parametrize(("raw", "dc"), [(1, 0), (2, 1), (-3, 2), (5, 4)])
def test_server_reads_the_datacenter_as_4_34(raw: int, dc: int) -> None:
    for kind in (ABRIDGED, INTERMEDIATE):
        opened = server_handshake(app_header(kind, raw), SECRET)
        assert (opened.connection_type, opened.datacenter) == (kind, dc)


@pytest.mark.parametrize(("raw", "reason"), [
    (0, "invalid datacenter id: 65535"),
    (6, "invalid datacenter id: 5"),
    (-32768, "invalid datacenter id: 32767"),
])  # fmt: skip
def test_server_refuses_other_datacenters(raw: int, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        server_handshake(app_header(ABRIDGED, raw), SECRET)


def test_server_refuses_other_connection_types_and_secrets() -> None:
    with pytest.raises(ValueError, match=r"invalid connection type: \[221 221 221 221\]"):
        server_handshake(app_header(b"\xdd" * 4, 1), SECRET)
    with pytest.raises(ValueError, match="invalid connection type"):
        server_handshake(app_header(ABRIDGED, 1, secret=b"other secret 16b"), SECRET)


def test_both_directions_continue_the_keystreams() -> None:
    """The server's keystreams mirror the app's: data after the header decrypts."""
    header = bytearray(os.urandom(64))
    header[56:60] = ABRIDGED
    header[60:62] = (1).to_bytes(2, "little")
    forward, backward = bytes(header[8:56]), bytes(header[8:56])[::-1]
    up = _ctr(hashlib.sha256(forward[:32] + SECRET).digest(), forward[32:48])
    down = _ctr(hashlib.sha256(backward[:32] + SECRET).digest(), backward[32:48])
    sealed = up.update(bytes(header) + b"hello")
    opened = server_handshake(bytes(header[:56]) + sealed[56:64], SECRET)
    assert opened.decrypt.update(sealed[64:]) == b"hello"
    assert down.update(opened.encrypt.update(b"world")) == b"world"


def test_client_headers_avoid_what_4_34_avoids() -> None:
    """Random headers that start like HTTP, like 0xef, or with zeros at 4..8 are drawn
    again; the connection type goes in at 56."""
    bad = [b"\xef" + bytes(63), b"GET " + b"\x01" * 60, b"\x01\x02\x03\x04" + bytes(60)]
    good = b"\x01" * 64
    draws = iter([*bad, good])
    hello = client_handshake(INTERMEDIATE, lambda n: next(draws))
    assert hello.header[:56] == good[:56]
    # the last 8 bytes go encrypted; a datacenter (no secret) opens them
    forward = good[8:56]
    plain = _ctr(forward[:32], forward[32:48]).update(hello.header)
    assert plain[56:60] == INTERMEDIATE
