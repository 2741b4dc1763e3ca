"""Shadowsocks as V2Ray 4.34 speaks it (``proxy/shadowsocks``), pure.

4.34 knows the AEAD ciphers and ``none`` only (no stream ciphers, no OTA):

* Key: ``EVP_BytesToKey`` with MD5 over the password (``passwordToCipherKey``).
* A stream starts with a random salt (16 bytes for aes-128-gcm, 32 otherwise); the
  AEAD key is HKDF-SHA1(key, salt, "ss-subkey"). Then chunks: the payload length
  (2 bytes, big-endian) sealed, then the payload sealed; the nonce is a 12-byte
  little-endian counter from 0, one step per seal. 4.34 writes at most 2014 payload
  bytes per chunk (``buf.Size`` less the two tags and the length) and reads any
  length; a chunk of length 0 ends the stream (4.34 never writes one).
* The request (client to server) begins with the destination as a SOCKS5 address
  (type 1 IPv4, 3 domain, 4 IPv6; the type's high nibble is ignored); the client
  sends salt and address at once, before any payload. The response is a salt and
  chunks, with no header.
* A UDP datagram is salt + AEAD(address + payload) with a zero nonce, in both
  directions; the answer names the address the request was sent to.
* ``none``: no salt, no sealing; the stream is the address then the payload.

Failures carry 4.34's reasons (ValueError text) for the access log.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from v2py.errors import Socks5Error
from v2py.protocol.socks5 import decode_address, encode_address

try:  # optional C accelerator (setup.py): all chunks of a read or write in one call
    from v2py import _chunkcrypt
except ImportError:  # not built, or no system libcrypto: the loops below do the work
    _chunkcrypt = None  # type: ignore[assignment]

__all__ = [
    "CIPHERS",
    "MAX_CHUNK_PAYLOAD",
    "MAX_DATAGRAM_BYTES",
    "Cipher",
    "ChunkOpener",
    "ChunkSealer",
    "RequestDecoder",
    "ShadowsocksRequest",
    "cipher_named",
    "drain_parameters",
    "encode_request_header",
    "open_datagram",
    "password_key",
    "seal_datagram",
]

TAG_BYTES = 16
_LENGTH_BYTES = 2
#: 4.34's ``buf.Size``: one buffer per chunk and per datagram.
_BUFFER_BYTES = 2048
#: Payload bytes per chunk the 4.34 writer puts in one chunk.
MAX_CHUNK_PAYLOAD = _BUFFER_BYTES - TAG_BYTES - (_LENGTH_BYTES + TAG_BYTES)
#: A datagram 4.34 can build or read (larger ones: its writer panics, its reader cuts).
MAX_DATAGRAM_BYTES = _BUFFER_BYTES
_SUBKEY_INFO = b"ss-subkey"
_NONCE_BYTES = 12
_ZERO_NONCE = bytes(_NONCE_BYTES)
_U16 = struct.Struct(">H")
#: Go's text for a tag that does not verify.
_AUTH_FAILED = "cipher: message authentication failed"
#: How 4.34 names its address parser's errors.
_ADDRESS_ERROR = "v2ray.com/core/common/protocol: "

Rng = Callable[[int], bytes]


class _Aead(Protocol):
    def encrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...

    def decrypt(self, nonce: bytes, data: bytes, associated_data: bytes | None) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Cipher:
    """One of 4.34's Shadowsocks ciphers: ``key_size`` / ``salt_size`` are 0 for none."""

    name: str
    key_size: int
    salt_size: int

    @property
    def is_aead(self) -> bool:
        return self.key_size > 0

    def subkey(self, key: bytes, salt: bytes) -> bytes:
        """The AEAD key of one stream or datagram: HKDF-SHA1(key, salt, "ss-subkey")."""
        return HKDF(
            algorithm=hashes.SHA1(),  # noqa: S303 - the protocol's KDF (ss-subkey)
            length=self.key_size,
            salt=salt,
            info=_SUBKEY_INFO,
        ).derive(key)

    def aead(self, key: bytes, salt: bytes) -> _Aead:
        """The AEAD of one stream or datagram: its key from ``key`` and ``salt``."""
        subkey = self.subkey(key, salt)
        if self.name == "chacha20-poly1305":
            return ChaCha20Poly1305(subkey)
        return AESGCM(subkey)

    def sealer(self, key: bytes, salt: bytes) -> ChunkSealer:
        """The chunk sealer of a stream that starts with ``salt``."""
        accel = _accelerated(self.name, self.subkey(key, salt), encrypt=True)
        if accel is not None:
            return _BatchSealer(accel)
        return ChunkSealer(self.aead(key, salt))

    def opener(self, key: bytes, salt: bytes) -> ChunkOpener:
        """The chunk opener of a stream that starts with ``salt``."""
        accel = _accelerated(self.name, self.subkey(key, salt), encrypt=False)
        if accel is not None:
            return _BatchOpener(accel)
        return ChunkOpener(self.aead(key, salt))


#: 4.34's ciphers by canonical name.
CIPHERS = _CIPHERS = {
    "aes-128-gcm": Cipher("aes-128-gcm", 16, 16),
    "aes-256-gcm": Cipher("aes-256-gcm", 32, 32),
    "chacha20-poly1305": Cipher("chacha20-poly1305", 32, 32),
    "none": Cipher("none", 0, 0),
}


def cipher_named(name: str) -> Cipher:
    """The cipher of a canonical name (the config maps 4.34's spellings onto these)."""
    return _CIPHERS[name]


def password_key(password: str, key_size: int) -> bytes:
    """4.34's ``passwordToCipherKey`` (``EVP_BytesToKey`` with MD5, no salt)."""
    secret = password.encode("utf-8", "surrogateescape")
    digest = hashlib.md5(secret).digest()  # noqa: S324 - the protocol's key derivation
    key = bytearray(digest)
    while len(key) < key_size:
        digest = hashlib.md5(digest + secret).digest()  # noqa: S324
        key += digest
    return bytes(key)


def drain_parameters(key: bytes) -> tuple[int, int]:
    """(base, random range) of the bytes a failed server connection reads before it
    closes: 4.34 seeds them from HMAC-SHA256("SSBSKDF", key) (``ReadTCPSession``); the
    base is below 3266 and the range 1..64 as there, derived from the same HMAC but
    not with Go's math/rand (so not the same numbers for the same key)."""
    mac = hmac.new(b"SSBSKDF", key, hashlib.sha256).digest()
    mix = hashlib.sha256(mac).digest()
    base = int.from_bytes(mix[:8], "big") % 3266
    spread = int.from_bytes(mix[8:16], "big") % 64 + 1
    return base, spread


def _nonce(counter: int) -> bytes:
    return counter.to_bytes(_NONCE_BYTES, "little")


class ChunkSealer:
    """Seals a stream's bytes into chunks (one call per write, any length)."""

    __slots__ = ("_aead", "_counter")

    def __init__(self, aead: _Aead) -> None:
        self._aead = aead
        self._counter = 0

    def seal(self, data: bytes | bytearray | memoryview) -> bytes:
        view = memoryview(data)
        encrypt = self._aead.encrypt
        counter = self._counter
        parts: list[bytes] = []
        for start in range(0, len(view), MAX_CHUNK_PAYLOAD):
            piece = bytes(view[start : start + MAX_CHUNK_PAYLOAD])
            parts.append(encrypt(_nonce(counter), _U16.pack(len(piece)), None))
            parts.append(encrypt(_nonce(counter + 1), piece, None))
            counter += 2
        self._counter = counter
        return b"".join(parts)


class ChunkOpener:
    """Opens a stream's chunks: :meth:`feed` returns the plaintext of every chunk it
    completes (bytes may come in any pieces). A chunk of length 0 sets ``ended``;
    bytes after it are ignored. Raises ValueError when a tag does not verify (4.34
    drops a short payload chunk with a bad tag and reads on; v2py ends the stream)."""

    __slots__ = ("_aead", "_buffer", "_counter", "_size", "ended")

    def __init__(self, aead: _Aead) -> None:
        self._aead = aead
        self._counter = 0
        self._buffer = bytearray()
        self._size: int | None = None
        self.ended = False

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        if self.ended:
            return b""
        buffer = self._buffer
        buffer += data
        decrypt = self._aead.decrypt
        out: list[bytes] = []
        pos = 0
        end = len(buffer)
        size = self._size
        counter = self._counter
        try:
            while True:
                if size is None:
                    if end - pos < _LENGTH_BYTES + TAG_BYTES:
                        break
                    head = bytes(buffer[pos : pos + _LENGTH_BYTES + TAG_BYTES])
                    try:
                        (size,) = _U16.unpack(decrypt(_nonce(counter), head, None))
                    except InvalidTag:
                        raise ValueError(_AUTH_FAILED) from None
                    counter += 1
                    pos += _LENGTH_BYTES + TAG_BYTES
                    if size == 0:
                        self.ended = True
                        break
                if end - pos < size + TAG_BYTES:
                    break
                body = bytes(buffer[pos : pos + size + TAG_BYTES])
                try:
                    out.append(decrypt(_nonce(counter), body, None))
                except InvalidTag:
                    raise ValueError(_AUTH_FAILED) from None
                counter += 1
                pos += size + TAG_BYTES
                size = None
        finally:
            self._size = size
            self._counter = counter
            del buffer[:pos]
        if self.ended:
            buffer.clear()
        return b"".join(out)


def _accelerated(name: str, subkey: bytes, *, encrypt: bool) -> Any:
    if _chunkcrypt is None:
        return None
    try:
        return _chunkcrypt.Aead(name, subkey, encrypt)
    except (ValueError, RuntimeError):  # cipher missing from this libcrypto
        return None


class _BatchSealer(ChunkSealer):
    """:class:`ChunkSealer` with every chunk of a write sealed in one C call."""

    __slots__ = ("_accel",)

    def __init__(self, accel: Any) -> None:
        self._accel = accel
        self._counter = 0

    def seal(self, data: bytes | bytearray | memoryview) -> bytes:
        sealed, self._counter = self._accel.ss_seal(data, MAX_CHUNK_PAYLOAD, self._counter)
        return bytes(sealed)


class _BatchOpener(ChunkOpener):
    """:class:`ChunkOpener` with every complete chunk of a read opened in one C call."""

    __slots__ = ("_accel",)

    def __init__(self, accel: Any) -> None:
        self._accel = accel
        self._counter = 0
        self._buffer = bytearray()
        self._size = None
        self.ended = False

    def feed(self, data: bytes | bytearray | memoryview) -> bytes:
        if self.ended:
            return b""
        buffer = self._buffer
        if buffer:
            buffer += data
            source: bytes | bytearray | memoryview = buffer
        else:
            source = data
        out = bytearray(len(source))
        status, pos, opos, self._counter = self._accel.ss_open(source, 0, out, 0, self._counter)
        if status < 0:
            raise ValueError(_AUTH_FAILED)
        if status == 1:
            self.ended = True
            buffer.clear()
        elif buffer:
            del buffer[:pos]
        else:
            buffer += source[pos:]
        del out[opos:]
        return bytes(out)


def _address(plain: bytes | bytearray, what: str) -> tuple[str, int, int] | None:
    """The SOCKS5-style address at the start of ``plain`` as 4.34's parser reads it (the
    type's high nibble ignored): (host, port, end), or None while incomplete; raises
    ValueError with 4.34's reason after ``what``."""
    kind = plain[0] & 0x0F
    if kind not in (1, 3, 4):
        raise ValueError(f"{what} > {_ADDRESS_ERROR}unknown address type: {kind}")
    try:
        return decode_address(bytes((kind,)) + bytes(plain[1:]))
    except Socks5Error as exc:
        raise ValueError(f"{what} > {_ADDRESS_ERROR}{exc}") from None


def encode_request_header(
    cipher: Cipher, key: bytes, address: str, port: int, rng: Rng
) -> tuple[bytes, ChunkSealer | None]:
    """What a client sends first (salt and the sealed address) and the sealer for the
    rest of its stream (None for ``none``). Raises ValueError for a bad address."""
    header = encode_address(address, port)
    if not cipher.is_aead:
        return header, None
    salt = rng(cipher.salt_size)
    sealer = cipher.sealer(key, salt)
    return salt + sealer.seal(header), sealer


@dataclass(frozen=True, slots=True)
class ShadowsocksRequest:
    """A decoded request: destination, the plaintext after the address, and the
    opener for the rest of the stream (None for ``none``)."""

    address: str
    port: int
    rest: bytes
    opener: ChunkOpener | None


class RequestDecoder:
    """The server side of a stream's start (4.34 ``ReadTCPSession``): :meth:`feed`
    returns the request once the address is complete, None while more is needed;
    raises ValueError with 4.34's reason."""

    __slots__ = ("_cipher", "_key", "_opener", "_plain", "_salt")

    def __init__(self, cipher: Cipher, key: bytes) -> None:
        self._cipher = cipher
        self._key = key
        self._salt = bytearray()
        self._opener: ChunkOpener | None = None
        self._plain = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> ShadowsocksRequest | None:
        cipher = self._cipher
        if cipher.is_aead:
            opener = self._opener
            if opener is None:
                need = cipher.salt_size - len(self._salt)
                self._salt += data[:need]
                data = data[need:]
                if len(self._salt) < cipher.salt_size:
                    return None
                opener = self._opener = cipher.opener(self._key, bytes(self._salt))
            try:
                self._plain += opener.feed(data)
            except ValueError as exc:
                raise ValueError(f"failed to read address > {exc}") from None
            if opener.ended and not self._plain:
                raise ValueError("failed to read address > EOF")  # 4.34 never sends this
        else:
            self._plain += data
        plain = self._plain
        if not plain:
            return None
        parsed = _address(plain, "failed to read address")
        if parsed is None:
            return None
        host, port, end = parsed
        rest = bytes(plain[end:])
        plain.clear()
        return ShadowsocksRequest(host, port, rest, self._opener)


def seal_datagram(
    cipher: Cipher, key: bytes, address: str, port: int, payload: bytes, rng: Rng
) -> bytes | None:
    """One UDP datagram carrying ``payload`` for ``address:port``; None when 4.34
    could not build it (above 2048 bytes sealed; ``none`` is cut to 2048, as there).
    Raises ValueError for a bad address."""
    plain = encode_address(address, port) + payload
    if not cipher.is_aead:
        return plain[:MAX_DATAGRAM_BYTES]
    if cipher.salt_size + len(plain) + TAG_BYTES > MAX_DATAGRAM_BYTES:
        return None
    salt = rng(cipher.salt_size)
    return salt + cipher.aead(key, salt).encrypt(_ZERO_NONCE, plain, None)


def open_datagram(cipher: Cipher, key: bytes, datagram: bytes) -> tuple[str, int, bytes]:
    """(address, port, payload) of one UDP datagram (cut at 2048 bytes first, as 4.34
    reads it); raises ValueError with 4.34's reason when it does not decode."""
    data = datagram[:MAX_DATAGRAM_BYTES]
    if cipher.is_aead:
        if len(data) <= cipher.salt_size:
            raise ValueError(
                "failed to decrypt UDP payload > v2ray.com/core/proxy/shadowsocks: "
                f"insufficient data: {len(data)}"
            )
        salt = data[: cipher.salt_size]
        try:
            data = cipher.aead(key, salt).decrypt(_ZERO_NONCE, data[cipher.salt_size :], None)
        except InvalidTag:
            raise ValueError(f"failed to decrypt UDP payload > {_AUTH_FAILED}") from None
    if not data:
        raise ValueError("failed to parse address > EOF")
    parsed = _address(data, "failed to parse address")
    if parsed is None:
        raise ValueError("failed to parse address > EOF")
    host, port, end = parsed
    return host, port, bytes(data[end:])
