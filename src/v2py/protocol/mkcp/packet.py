"""mKCP packet layer: obfuscation headers and the security wrap.

Spec: mkcp.md sections 1-3 (v2ray-core ``transport/internet/headers/*``,
``transport/internet/kcp/{crypt,xor,cryptreal,io}.go``). A datagram is
``header (H bytes) || seal(segments)``. Headers carry their own counters, so one
header object belongs to one dialed connection or one listener. Random values
come from the injected ``rng``. Pure module.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from v2py.common.fnv import fnv1a32
from v2py.protocol.mkcp.settings import GCM_TAG_BYTES, KcpSettings

__all__ = [
    "AeadAuthenticator",
    "DtlsHeader",
    "NoneHeader",
    "PacketCodec",
    "PacketHeader",
    "SimpleAuthenticator",
    "SrtpHeader",
    "UtpHeader",
    "WechatVideoHeader",
    "WireguardHeader",
    "make_header",
    "seed_key",
    "xor_backward",
    "xor_forward",
]

Rng = Callable[[int], bytes]

GCM_NONCE_BYTES = 12
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U16_MASK = 0xFFFF
_U32_MASK = 0xFFFFFFFF
_WORD_BITS = 32
_DTLS_LEN_START = 17
_DTLS_LEN_STEP = 17
_DTLS_LEN_MAX = 100
_DTLS_LEN_BACK = 50


class PacketHeader(Protocol):
    """An obfuscation header: ``size`` bytes written before every datagram."""

    size: int

    def next_header(self) -> bytes:
        """Bytes for the next datagram (advances counters)."""
        ...


class NoneHeader:
    """``none``: no header."""

    size = 0

    def next_header(self) -> bytes:
        return b""


class SrtpHeader:
    """``srtp``: ``B5 E8`` + u16 counter, incremented before each write
    (docs/spec/mkcp.md section 2)."""

    size = 4

    def __init__(self, rng: Rng) -> None:
        self._counter = _U16.unpack(rng(2))[0]

    def next_header(self) -> bytes:
        self._counter = (self._counter + 1) & _U16_MASK
        return b"\xb5\xe8" + _U16.pack(self._counter)


class UtpHeader:
    """``utp``: random u16 connection id fixed per object, then ``01 00``."""

    size = 4

    def __init__(self, rng: Rng) -> None:
        self._prefix = rng(2) + b"\x01\x00"

    def next_header(self) -> bytes:
        return self._prefix


class WechatVideoHeader:
    """``wechat-video``: ``A1 08`` + u32 counter (random u16 start, pre-increment) + 7 bytes."""

    size = 13
    _TAIL = bytes.fromhex("00101118302230")

    def __init__(self, rng: Rng) -> None:
        self._counter = _U16.unpack(rng(2))[0]

    def next_header(self) -> bytes:
        self._counter = (self._counter + 1) & _U32_MASK
        return b"\xa1\x08" + _U32.pack(self._counter) + self._TAIL


class DtlsHeader:
    """``dtls``: ``17 FE FD`` + epoch + ``00 00`` + u32 sequence + u16 fake length."""

    size = 13

    def __init__(self, rng: Rng) -> None:
        self._epoch = rng(2)
        self._sequence = 0
        self._length = _DTLS_LEN_START

    def next_header(self) -> bytes:
        out = (
            b"\x17\xfe\xfd"
            + self._epoch
            + b"\x00\x00"
            + _U32.pack(self._sequence)
            + _U16.pack(self._length)
        )
        self._sequence = (self._sequence + 1) & _U32_MASK
        self._length += _DTLS_LEN_STEP
        if self._length > _DTLS_LEN_MAX:
            self._length -= _DTLS_LEN_BACK
        return out


class WireguardHeader:
    """``wireguard``: constant ``04 00 00 00``."""

    size = 4

    def next_header(self) -> bytes:
        return b"\x04\x00\x00\x00"


def make_header(name: str, rng: Rng) -> PacketHeader:
    """Build the header object for type ``name`` (case-insensitive).

    Raises ``ValueError`` for an unknown type.
    """
    key = name.lower()
    if key == "none":
        return NoneHeader()
    if key == "srtp":
        return SrtpHeader(rng)
    if key == "utp":
        return UtpHeader(rng)
    if key == "wechat-video":
        return WechatVideoHeader(rng)
    if key == "dtls":
        return DtlsHeader(rng)
    if key == "wireguard":
        return WireguardHeader()
    raise ValueError(f"header.type: unknown {name!r}")


def xor_forward(data: bytes | bytearray) -> bytes:
    """``b[i] ^= b[i-4]`` for ascending ``i >= 4`` (docs/spec/mkcp.md section 3.1).

    The byte chain with distance 4 is a prefix-XOR over 4-byte words, computed
    here with log2(words) shifts on one big integer instead of a byte loop.
    """
    n = len(data)
    pad = -n % 4
    total_bits = (n + pad) * 8
    x = int.from_bytes(bytes(data) + bytes(pad), "big")
    shift = _WORD_BITS
    while shift < total_bits:
        x ^= x >> shift
        shift <<= 1
    return x.to_bytes(n + pad, "big")[:n]


def xor_backward(data: bytes | bytearray | memoryview) -> bytes:
    """Inverse of :func:`xor_forward`: each 4-byte word XOR the previous input word."""
    n = len(data)
    pad = -n % 4
    x = int.from_bytes(bytes(data) + bytes(pad), "big")
    return (x ^ (x >> _WORD_BITS)).to_bytes(n + pad, "big")[:n]


class SimpleAuthenticator:
    """The default security layer: FNV-1a checksum + XOR chain (docs/spec/mkcp.md section 3.1)."""

    overhead = 6

    def seal(self, payload: bytes) -> bytes:
        body = _U16.pack(len(payload)) + payload
        return xor_forward(_U32.pack(fnv1a32(body)) + body)

    def open(self, data: bytes | memoryview) -> bytes | None:
        """Return the payload, or ``None`` if the checksum or length is wrong."""
        if len(data) < self.overhead:
            return None
        plain = xor_backward(data)
        body = plain[4:]
        if _U32.unpack_from(plain)[0] != fnv1a32(body):
            return None
        if _U16.unpack_from(plain, 4)[0] != len(plain) - self.overhead:
            return None
        return plain[self.overhead :]


def seed_key(seed: str) -> bytes:
    """AES-128-GCM key for ``seed``: ``SHA256(seed)[:16]`` (docs/spec/mkcp.md section 3.2)."""
    return hashlib.sha256(seed.encode("utf-8")).digest()[:16]


class AeadAuthenticator:
    """The ``seed`` security layer: random 12-byte nonce || AES-128-GCM(S)
    (docs/spec/mkcp.md section 3.2)."""

    overhead = GCM_TAG_BYTES

    def __init__(self, seed: str, rng: Rng) -> None:
        self._aead = AESGCM(seed_key(seed))
        self._rng = rng

    def seal(self, payload: bytes) -> bytes:
        nonce = self._rng(GCM_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, payload, None)

    def open(self, data: bytes | memoryview) -> bytes | None:
        """Return the payload, or ``None`` if too short or not authentic."""
        if len(data) <= GCM_NONCE_BYTES + GCM_TAG_BYTES:
            return None
        raw = bytes(data)
        try:
            return self._aead.decrypt(raw[:GCM_NONCE_BYTES], raw[GCM_NONCE_BYTES:], None)
        except InvalidTag:
            return None


class PacketCodec:
    """Header + security layer for one dialed connection or one listener
    (docs/spec/mkcp.md sections 1-3)."""

    def __init__(self, settings: KcpSettings, rng: Rng) -> None:
        self.header = make_header(settings.header_type, rng)
        self.auth: SimpleAuthenticator | AeadAuthenticator = (
            AeadAuthenticator(settings.seed, rng)
            if settings.seed is not None
            else SimpleAuthenticator()
        )

    def seal(self, segments: bytes) -> bytes:
        """Wrap serialized segment(s) into one datagram (advances header counters)."""
        return self.header.next_header() + self.auth.seal(segments)

    def open(self, datagram: bytes | bytearray | memoryview) -> bytes | None:
        """Return the segment bytes of ``datagram``, or ``None`` to drop it."""
        skip = self.header.size
        if len(datagram) <= skip:
            return None
        return self.auth.open(memoryview(datagram)[skip:])
