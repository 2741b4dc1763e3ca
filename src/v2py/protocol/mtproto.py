"""MTProto proxy framing (Telegram's "obfuscated2") as V2Ray 4.34 speaks it
(``proxy/mtproto``), pure.

A connection starts with 64 bytes. Bytes 8..40 and 40..56 are an AES-256-CTR key and
counter for one direction; the same 48 bytes reversed give the other direction's. A
client keeps bytes 0..56 in the clear and sends bytes 56..64 encrypted (the connection
type, 0xef x4 "abridged" or 0xee x4 "intermediate", then the datacenter), every later
byte of its stream continuing the same keystream. Between a Telegram app and the proxy
both keys are hashed with the user's 16-byte secret (SHA-256 of key + secret); the
proxy's own connection to the datacenter uses none.

Server side (the ``mtproto`` inbound): the datacenter number is the header's signed
little-endian 16-bit value at 60, taken absolute, less one: 0-4 pick one of 4.34's five
datacenter addresses (port 443). Client side (the ``mtproto`` outbound): a random header
whose first bytes cannot be mistaken for another protocol, with the connection type of
the session (0xef x4 when it did not come from an MTProto inbound).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

__all__ = [
    "ABRIDGED",
    "DATACENTERS",
    "HEADER_BYTES",
    "ClientHandshake",
    "ServerHandshake",
    "client_handshake",
    "server_handshake",
]

HEADER_BYTES = 64
#: 4.34's datacenter list (``proxy/mtproto/server.go`` ``dcList``), all on port 443.
DATACENTERS = (
    "149.154.175.50",
    "149.154.167.51",
    "149.154.175.100",
    "149.154.167.91",
    "149.154.171.5",
)
DATACENTER_PORT = 443
ABRIDGED = b"\xef\xef\xef\xef"
INTERMEDIATE = b"\xee\xee\xee\xee"
#: First words a client header must not start with (little-endian): "HEAD", "POST",
#: "GET ", "OPTI" and 0xeeeeeeee; nor may its first byte be 0xef or bytes 4..8 be zero.
_FORBIDDEN_STARTS = frozenset({0x44414548, 0x54534F50, 0x20544547, 0x4954504F, 0xEEEEEEEE})

Rng = Callable[[int], bytes]


def _ctr(key: bytes, nonce: bytes) -> CipherContext:
    # CTR is symmetric: one context both encrypts and decrypts its direction.
    return Cipher(algorithms.AES(key), modes.CTR(nonce)).encryptor()


def _keys(header: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(key, nonce) of the sending direction, then of the other, from a header."""
    forward = header[8:56]
    backward = forward[::-1]
    return forward[:32], forward[32:48], backward[:32], backward[32:48]


@dataclass(slots=True)
class ServerHandshake:
    """A client's header, opened: the keystreams (``decrypt`` already past the header),
    the connection type and the datacenter number."""

    decrypt: CipherContext
    encrypt: CipherContext
    connection_type: bytes
    datacenter: int


def server_handshake(header: bytes, secret: bytes) -> ServerHandshake:
    """Open the 64-byte ``header`` of a client holding ``secret``; raises ValueError
    with 4.34's reason for a connection type or datacenter it does not serve."""
    if len(header) != HEADER_BYTES:
        raise ValueError("failed to read authentication header > unexpected EOF")
    in_key, in_nonce, out_key, out_nonce = _keys(header)
    decrypt = _ctr(hashlib.sha256(in_key + secret).digest(), in_nonce)
    encrypt = _ctr(hashlib.sha256(out_key + secret).digest(), out_nonce)
    plain = decrypt.update(header)
    connection_type = plain[56:60]
    if connection_type not in (ABRIDGED, INTERMEDIATE):
        shown = " ".join(str(b) for b in connection_type)  # Go prints [4]byte so
        raise ValueError(f"invalid connection type: [{shown}]")
    raw = int.from_bytes(plain[60:62], "little", signed=True)
    datacenter = (abs(raw) - 1) & 0xFFFF
    if raw == -32768:  # Go: -x overflows back to itself, then uint16(x) - 1
        datacenter = 32767
    if datacenter >= len(DATACENTERS):
        raise ValueError(f"invalid datacenter id: {datacenter}")
    return ServerHandshake(decrypt, encrypt, connection_type, datacenter)


@dataclass(slots=True)
class ClientHandshake:
    """What a client sends first, and its keystreams (``encrypt`` already past it)."""

    header: bytes
    encrypt: CipherContext
    decrypt: CipherContext


def client_handshake(connection_type: bytes, rng: Rng) -> ClientHandshake:
    """A header towards a datacenter (no secret), as 4.34's ``NewAuthentication``."""
    while True:
        random = bytearray(rng(HEADER_BYTES))
        if random[0] == 0xEF:
            continue
        if int.from_bytes(random[0:4], "little") in _FORBIDDEN_STARTS:
            continue
        if not any(random[4:8]):
            continue
        break
    random[56:60] = connection_type
    header = bytes(random)
    out_key, out_nonce, in_key, in_nonce = _keys(header)
    encrypt = _ctr(out_key, out_nonce)
    sealed = encrypt.update(header)
    return ClientHandshake(header[:56] + sealed[56:], encrypt, _ctr(in_key, in_nonce))
