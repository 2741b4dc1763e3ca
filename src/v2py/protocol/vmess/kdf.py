"""VMess AEAD key derivation: nested HMAC-SHA256 (docs/spec/vmess.md section 5.1).

Matches v2ray-core ``proxy/vmess/aead/kdf.go`` at v4.34.0.  The root hash is
HMAC-SHA256 keyed with ``"VMess AEAD KDF"``; each path element wraps the
previous level as an HMAC whose underlying hash is that level, so the first
path element is innermost and the last is outermost.

Every level is built as a *prefix maker*: ``maker(prefix)`` returns a function
computing ``H(prefix + m)``.  At the root that is an HMAC-SHA256 object with the
prefix already absorbed, copied per call, so the constant 64-byte HMAC pads of
every level are hashed once, not on every call; the makers for the constant
first path element (the label) are cached.  This is the per-connection hot spot
of the AEAD header (four or eight derivations per connection side).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
from collections.abc import Callable

__all__ = ["kdf", "kdf16", "kdf12", "kdf_python", "KDF_ROOT_KEY"]

KDF_ROOT_KEY = b"VMess AEAD KDF"
_BLOCK_SIZE = 64
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
#: Distinct labels are few (spec 5.2); the cache only bounds misuse.
_LABEL_CACHE_SIZE = 64

_Hash = Callable[[bytes], bytes]
_Maker = Callable[[bytes], _Hash]

_ROOT = hmac.new(KDF_ROOT_KEY, digestmod=hashlib.sha256)


def _root_maker(prefix: bytes) -> _Hash:
    base = _ROOT.copy()
    base.update(prefix)

    def h(message: bytes) -> bytes:
        state = base.copy()
        state.update(message)
        return state.digest()

    return h


def _wrap(inner: _Maker, key: bytes) -> _Maker:
    """RFC 2104 HMAC keyed ``key`` over the hash that ``inner`` makes (64-byte blocks)."""
    if len(key) > _BLOCK_SIZE:
        key = inner(b"")(key)
    padded = key.ljust(_BLOCK_SIZE, b"\x00")
    ipad = padded.translate(_IPAD)
    outer = inner(padded.translate(_OPAD))

    def maker(prefix: bytes) -> _Hash:
        inner_hash = inner(ipad + prefix)
        return lambda message: outer(inner_hash(message))

    return maker


@functools.lru_cache(maxsize=_LABEL_CACHE_SIZE)
def _label_maker(label: bytes) -> _Maker:
    return _wrap(_root_maker, label)


@functools.lru_cache(maxsize=_LABEL_CACHE_SIZE)
def _label_hash(label: bytes) -> _Hash:
    return _label_maker(label)(b"")


_ROOT_HASH = _root_maker(b"")


def kdf_python(key: bytes, *path: bytes) -> bytes:
    """Return the 32-byte ``KDF(key, path...)`` of spec section 5.1 (pure Python)."""
    if not path:
        return _ROOT_HASH(bytes(key))
    if len(path) == 1:
        return _label_hash(bytes(path[0]))(bytes(key))
    maker = _label_maker(bytes(path[0]))
    for p in path[1:]:
        maker = _wrap(maker, bytes(p))
    return maker(b"")(bytes(key))


try:  # the optional C accelerator computes the same nested HMACs ~10x faster
    from v2py._chunkcrypt import kdf as _kdf_c
except ImportError:
    _kdf_c = None  # type: ignore[assignment]


class KdfImpl(enum.Enum):
    """Which code computes the KDF (a constructor choice; both give the same bytes)."""

    C = "c"  # v2py._chunkcrypt.kdf over the system libcrypto
    PYTHON = "python"  # kdf_python, the reference


def best_kdf_impl(*, accelerated: bool = True) -> KdfImpl:
    """The C KDF when it is built and ``accelerated``, else the Python one."""
    return KdfImpl.C if accelerated and _kdf_c is not None else KdfImpl.PYTHON


#: What :func:`kdf` uses unless told otherwise.
DEFAULT_KDF_IMPL = best_kdf_impl()


def kdf(key: bytes, *path: bytes, impl: KdfImpl = DEFAULT_KDF_IMPL) -> bytes:
    """Return the 32-byte ``KDF(key, path...)`` of spec section 5.1.

    ``impl`` C uses ``v2py._chunkcrypt.kdf`` when it is built (at most 8 path
    elements of at most 1,024 bytes, which every VMess use fits), else
    :func:`kdf_python`.
    """
    if impl is KdfImpl.C and _kdf_c is not None and len(path) <= _C_MAX_PATH:
        try:
            return _kdf_c(key, *path)
        except ValueError:  # an element over the C limit
            pass
    return kdf_python(key, *path)


_C_MAX_PATH = 8


def kdf16(key: bytes, *path: bytes, impl: KdfImpl = DEFAULT_KDF_IMPL) -> bytes:
    """First 16 bytes of :func:`kdf` (AES-128 keys, spec 5.2)."""
    return kdf(key, *path, impl=impl)[:16]


def kdf12(key: bytes, *path: bytes, impl: KdfImpl = DEFAULT_KDF_IMPL) -> bytes:
    """First 12 bytes of :func:`kdf` (GCM nonces, spec 5.2)."""
    return kdf(key, *path, impl=impl)[:12]
