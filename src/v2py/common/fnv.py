"""FNV-1a 32-bit hash (used by VMess legacy chunk checksums, SwitchAccount commands and mKCP).

Spec: vmess.md section 8.4 / 6.4 (FNV-1a, offset basis 0x811C9DC5, prime 0x01000193).
Pure module: no I/O.
"""

from __future__ import annotations

__all__ = ["fnv1a32", "FNV32_OFFSET", "FNV32_PRIME"]

FNV32_OFFSET = 0x811C9DC5
FNV32_PRIME = 0x01000193


def fnv1a32(data: bytes | bytearray | memoryview) -> int:
    """Return the 32-bit FNV-1a hash of ``data`` as an unsigned int."""
    h = FNV32_OFFSET
    prime = FNV32_PRIME
    for b in bytes(data):
        h = ((h ^ b) * prime) & 0xFFFFFFFF
    return h
