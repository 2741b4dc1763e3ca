"""State shared by the worker processes of ``v2py run --workers N``.

* :class:`SharedKeyTable`: the :class:`~v2py.protocol.vmess.validator.KeyStore`
  every worker's VMess validator uses for AEAD replay, session history and
  taint fuses, so a replay refused by one worker is refused by all.
* :class:`WorkerContext`: what the parent hands each forked worker (index,
  count, the table, a seed for dynamic ports, the shared start instant).

Theory of operation of the table
--------------------------------
The parent creates it before forking; the pages are a ``MAP_SHARED`` mapping of
an anonymous memory file (``memfd``; a deleted temporary file elsewhere), so
every child sees the same bytes.  Layout::

    header   32 bytes   magic, capacity, probe window, index secret (16 bytes)
    keys     (capacity + probe) x 16 bytes
    expiry   (capacity + probe) x 8 bytes (native double, 0.0 = never used)

A key lives in the ``probe`` slots starting at ``blake2b(key, secret) mod
capacity`` (open addressing; the extra ``probe`` slots at the end mean a window
never wraps).  An operation reads the whole window at once (one C-level
``find`` over its keys, one ``unpack`` of its expiries), so its cost does not
grow with the table.  A slot whose expiry is ``<= now`` is free.  When a window
holds ``probe`` live entries, ``add_if_absent`` refuses the new key (as 4.34's
full cuckoo filter refuses) and ``add`` overwrites the soonest-expiring one.
The index is keyed with a random secret so that nobody can aim keys at one
window.

Every operation holds an exclusive POSIX record lock (``lockf``) on the memory
file for a few microseconds.  Record locks belong to a process, so siblings
exclude each other, and the kernel drops the lock of a process that dies: a
killed worker can never leave the table locked.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile
from dataclasses import dataclass

__all__ = [
    "DEFAULT_CAPACITY",
    "PROBE_SLOTS",
    "SharedKeyTable",
    "SharedTableStatistics",
    "WorkerContext",
]

#: Slots of the default table: 2**19 x 24 bytes = 12 MiB shared by all workers.
#: Sized for at most half full: ~260,000 live entries (4 minutes of AuthIDs and 3
#: of sessions at ~600 new VMess connections per second).
DEFAULT_CAPACITY = 1 << 19
#: Slots one key may occupy (its probe window). Measured with random keys: at half
#: load no window was full in 32,000 inserts; at 70 % load ~0.1 % are refused.
PROBE_SLOTS = 32
KEY_BYTES = 16
_EXPIRY_BYTES = 8
_MAGIC = b"v2pyKT01"
_HEADER = struct.Struct("=8sII16s")
_HEADER_BYTES = 32
_SECRET_BYTES = 16
_INDEX_BYTES = 8


@dataclass(frozen=True, slots=True, kw_only=True)
class SharedTableStatistics:
    """What this process saw of the table (counters are per process)."""

    capacity: int
    live_entries: int
    refused_full: int
    evicted: int


class SharedKeyTable:
    """A fixed-size table of (16-byte key, expiry) shared across ``fork``.

    Implements :class:`~v2py.protocol.vmess.validator.KeyStore`.  Keys of another
    length are hashed to 16 bytes first.

    :param capacity: number of slots (>= 1); memory is ``24 x (capacity + probe)``.
    :param probe: probe window in slots (>= 1).
    :raises ValueError: on a bad size; ``OSError`` if the memory cannot be made.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, probe: int = PROBE_SLOTS) -> None:
        if capacity < 1 or probe < 1:
            raise ValueError("capacity and probe must be >= 1")
        slots = capacity + probe
        size = _HEADER_BYTES + slots * (KEY_BYTES + _EXPIRY_BYTES)
        self._fd = _memory_file(size)
        self._mm = mmap.mmap(self._fd, size)  # MAP_SHARED: children see the same pages
        self._secret = os.urandom(_SECRET_BYTES)
        _HEADER.pack_into(self._mm, 0, _MAGIC, capacity, probe, self._secret)
        self.capacity = capacity
        self.probe = probe
        self._keys_at = _HEADER_BYTES
        self._exp_at = _HEADER_BYTES + slots * KEY_BYTES
        self._window = struct.Struct(f"={probe}d")
        self._expiry = struct.Struct("=d")
        self._window_bytes = probe * KEY_BYTES
        self._refused = 0
        self._evicted = 0

    # -- KeyStore -------------------------------------------------------------
    def add_if_absent(self, key: bytes, expiry: float, now: float) -> bool:
        """Record ``key`` until ``expiry``; False if present and live, or if its
        probe window is full of live entries (refused, nothing evicted)."""
        key = _key16(key)
        first = self._index(key)
        mm = self._mm
        k0 = self._keys_at + first * KEY_BYTES
        fd = self._fd
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            slot = self._find(mm[k0 : k0 + self._window_bytes], key)
            expiries = self._window.unpack_from(mm, self._exp_at + first * _EXPIRY_BYTES)
            if slot >= 0:
                if expiries[slot] > now:
                    return False
            else:
                slot = _first_free(expiries, now)
                if slot < 0:
                    self._refused += 1
                    return False
                mm[k0 + slot * KEY_BYTES : k0 + (slot + 1) * KEY_BYTES] = key
            self._expiry.pack_into(mm, self._exp_at + (first + slot) * _EXPIRY_BYTES, expiry)
            return True
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)

    def contains(self, key: bytes, now: float) -> bool:
        """True if ``key`` is present with an expiry later than ``now``."""
        key = _key16(key)
        first = self._index(key)
        k0 = self._keys_at + first * KEY_BYTES
        fd = self._fd
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            slot = self._find(self._mm[k0 : k0 + self._window_bytes], key)
            if slot < 0:
                return False
            at = self._exp_at + (first + slot) * _EXPIRY_BYTES
            return bool(self._expiry.unpack_from(self._mm, at)[0] > now)
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)

    def add(self, key: bytes, expiry: float, now: float) -> None:
        """Record ``key`` until at least ``expiry``; a full window loses its
        soonest-expiring entry (counted in ``evicted``)."""
        key = _key16(key)
        first = self._index(key)
        mm = self._mm
        k0 = self._keys_at + first * KEY_BYTES
        fd = self._fd
        fcntl.lockf(fd, fcntl.LOCK_EX)
        try:
            slot = self._find(mm[k0 : k0 + self._window_bytes], key)
            expiries = self._window.unpack_from(mm, self._exp_at + first * _EXPIRY_BYTES)
            if slot >= 0:
                expiry = max(expiry, expiries[slot]) if expiries[slot] > now else expiry
            else:
                slot = _first_free(expiries, now)
                if slot < 0:
                    slot = expiries.index(min(expiries))
                    self._evicted += 1
                mm[k0 + slot * KEY_BYTES : k0 + (slot + 1) * KEY_BYTES] = key
            self._expiry.pack_into(mm, self._exp_at + (first + slot) * _EXPIRY_BYTES, expiry)
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)

    # -- introspection ----------------------------------------------------------
    def statistics(self, now: float) -> SharedTableStatistics:
        """Counts live entries (a full scan: for tests and diagnostics only)."""
        slots = self.capacity + self.probe
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            expiries = struct.unpack_from(f"={slots}d", self._mm, self._exp_at)
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        return SharedTableStatistics(
            capacity=self.capacity,
            live_entries=sum(1 for e in expiries if e > now),
            refused_full=self._refused,
            evicted=self._evicted,
        )

    def close(self) -> None:
        """Unmap and close (in this process only)."""
        self._mm.close()
        os.close(self._fd)

    # -- internals ---------------------------------------------------------------
    def _index(self, key: bytes) -> int:
        digest = hashlib.blake2b(key, digest_size=_INDEX_BYTES, key=self._secret).digest()
        return int.from_bytes(digest, "little") % self.capacity

    @staticmethod
    def _find(window: bytes, key: bytes) -> int:
        pos = window.find(key)
        while pos >= 0 and pos % KEY_BYTES:  # a match straddling two slots is no match
            pos = window.find(key, pos + 1)
        return pos // KEY_BYTES if pos >= 0 else -1


def _first_free(expiries: tuple[float, ...], now: float) -> int:
    if expiries[0] <= now:  # the common case while the table is far from full
        return 0
    for i, expiry in enumerate(expiries):
        if expiry <= now:
            return i
    return -1


def _key16(key: bytes | bytearray | memoryview) -> bytes:
    key = bytes(key)
    if len(key) == KEY_BYTES:
        return key
    return hashlib.blake2b(key, digest_size=KEY_BYTES).digest()


def _memory_file(size: int) -> int:
    """A descriptor of ``size`` zeroed bytes of anonymous shared memory."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is not None:
        fd: int = memfd_create("v2py-shared-state")
    else:  # pragma: no cover - not Linux
        with tempfile.TemporaryFile() as handle:
            fd = os.dup(handle.fileno())
    os.ftruncate(fd, size)
    return fd


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerContext:
    """One worker's share of a multi-process run (made by the parent before fork).

    :ivar index: 0-based worker number.
    :ivar count: number of workers.
    :ivar store: the VMess replay / session / taint table of all workers.
    :ivar seed: 32 random bytes; dynamic-port allocation and detour users derive
        from it, so every worker opens the same ports and announces the same users.
    :ivar start_monotonic: the parent's ``time.monotonic()`` at start; dynamic-port
        generations are scheduled on a grid from it (the clock is system-wide).
    :ivar peer_dir: with the gRPC API, the private directory of the workers' peer
        sockets (``app/commander/fanout.py``); "" without.
    """

    index: int
    count: int
    store: SharedKeyTable
    seed: bytes
    start_monotonic: float
    peer_dir: str = ""
