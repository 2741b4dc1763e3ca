"""FNV-1a 32-bit hash (VMess legacy chunk checksums, SwitchAccount, mKCP's simple authenticator).

Spec: vmess.md section 8.4 / 6.4 (FNV-1a, offset basis 0x811C9DC5, prime 0x01000193).
It runs over every legacy VMess chunk and every mKCP datagram, so the C
implementation from ``fnv-hash-fast`` is used when installed (about 60x faster);
the pure-Python loop below is the fallback and the reference.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["FNV32_OFFSET", "FNV32_PRIME", "fnv1a32", "fnv1a32_py"]

FNV32_OFFSET = 0x811C9DC5
FNV32_PRIME = 0x01000193


def fnv1a32_py(data: bytes | bytearray | memoryview) -> int:
    """Return the 32-bit FNV-1a hash of ``data`` (pure Python reference)."""
    h = FNV32_OFFSET
    prime = FNV32_PRIME
    for b in bytes(data):
        h = ((h ^ b) * prime) & 0xFFFFFFFF
    return h


def _load_fast() -> Callable[[bytes], int] | None:
    try:
        from fnv_hash_fast import fnv1a_32
    except ImportError:  # pragma: no cover - exercised where the wheel is missing
        return None
    return fnv1a_32


_fast = _load_fast()

if _fast is not None:
    _fast_fn = _fast

    def fnv1a32(data: bytes | bytearray | memoryview) -> int:
        """Return the 32-bit FNV-1a hash of ``data`` as an unsigned int."""
        return _fast_fn(data if type(data) is bytes else bytes(data))

else:  # pragma: no cover
    fnv1a32 = fnv1a32_py
