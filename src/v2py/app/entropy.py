"""Pooled operating-system randomness for the per-connection hot path.

A VMess client connection draws randomness about nine times (AuthID, nonce, body
key and IV, response check, padding per sealed batch...) and an mKCP peer once per
datagram; one ``getrandom`` system call for each costs more than the use.
:func:`urandom` hands out slices of a pool filled from ``os.urandom`` in batches.
Every byte is handed out once. The pool is dropped in a child after ``fork``
(``v2py run --workers N``), so sibling processes never share random bytes.
"""

from __future__ import annotations

import os

__all__ = ["urandom", "POOL_BYTES"]

#: Bytes fetched per refill.
POOL_BYTES = 4096
#: Requests larger than this bypass the pool.
_DIRECT_BYTES = POOL_BYTES // 4


class _Pool:
    __slots__ = ("_buf", "_pos")

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0

    def __call__(self, n: int) -> bytes:
        if n > _DIRECT_BYTES:
            return os.urandom(n)
        pos = self._pos
        end = pos + n
        if end > len(self._buf):
            self._buf = os.urandom(POOL_BYTES)
            pos, end = 0, n
        self._pos = end
        return self._buf[pos:end]

    def drop(self) -> None:
        """Forget the pool (its bytes must never be used twice)."""
        self._buf = b""
        self._pos = 0


_pool = _Pool()
os.register_at_fork(after_in_child=_pool.drop)


def urandom(n: int) -> bytes:
    """``n`` random bytes from the OS CSPRNG, via a per-process pool."""
    return _pool(n)
