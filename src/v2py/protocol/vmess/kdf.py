"""VMess AEAD key derivation: nested HMAC-SHA256 (spec vmess.md section 5.1).

Matches v2ray-core ``proxy/vmess/aead/kdf.go`` at v4.34.0.  The root hash is
HMAC-SHA256 keyed with ``"VMess AEAD KDF"``; each path element wraps the
previous level as an HMAC whose underlying hash is that level, so the first
path element is innermost and the last is outermost.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

__all__ = ["kdf", "kdf16", "kdf12", "KDF_ROOT_KEY"]

KDF_ROOT_KEY = b"VMess AEAD KDF"
_BLOCK_SIZE = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))

_Hash = Callable[[bytes], bytes]


def _root(message: bytes) -> bytes:
    return hmac.digest(KDF_ROOT_KEY, message, hashlib.sha256)


def _wrap(inner: _Hash, key: bytes) -> _Hash:
    """RFC 2104 HMAC over an arbitrary 32-byte-output hash with 64-byte blocks."""
    if len(key) > _BLOCK_SIZE:
        key = inner(key)
    padded = key.ljust(_BLOCK_SIZE, b"\x00")
    ipad = padded.translate(_IPAD)
    opad = padded.translate(_OPAD)

    def h(message: bytes) -> bytes:
        return inner(opad + inner(ipad + message))

    return h


def kdf(key: bytes, *path: bytes) -> bytes:
    """Return the 32-byte ``KDF(key, path...)`` of spec section 5.1."""
    h: _Hash = _root
    for p in path:
        h = _wrap(h, bytes(p))
    return h(bytes(key))


def kdf16(key: bytes, *path: bytes) -> bytes:
    """First 16 bytes of :func:`kdf` (AES-128 keys, spec 5.2)."""
    return kdf(key, *path)[:16]


def kdf12(key: bytes, *path: bytes) -> bytes:
    """First 12 bytes of :func:`kdf` (GCM nonces, spec 5.2)."""
    return kdf(key, *path)[:12]
