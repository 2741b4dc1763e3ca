"""VMess server user table: AEAD AuthID matching, legacy auth table, replay
filter, taint fuses, session history and drain budget (spec vmess.md sections
4.2, 4.3, 5.3, 7).

Matches v2ray-core ``proxy/vmess/validator.go``, ``proxy/vmess/aead/authid.go``,
``common/antireplay/replayfilter.go`` and the session history / drain parts
of ``proxy/vmess/encoding/server.go`` at v4.34.0.

Theory of operation
-------------------
* AEAD: every user has a precomputed AES-128-ECB decryptor for its AuthID
  key.  A 16-byte AuthID is decrypted with each user's decryptor until the
  CRC matches; then the time window (|t - now| <= 120 s, t >= 0) and the
  replay filter are checked.  Cost: one ECB block + one CRC32 per user tried.
* Legacy: 4.34 keeps a hash table of HMAC-MD5(id, t) for every ID and every
  second in [now-120, now+120].  At 5,000 users x (1+alterId) that is
  millions of HMACs, too slow to precompute in Python at startup.  We keep
  one *bucket* per second instead: the concatenated 16-byte HMACs of every
  ID slot for that second.  Buckets are generated lazily, nearest second
  first, when a lookup needs them, and ``update`` generates the seconds
  entering the window and drops the ones leaving it (so the steady-state
  cost is the same as 4.34's 10-s refresh).  ``prefill`` lets the shell warm
  the whole window in bounded steps.  A lookup is a C-speed ``find`` in each
  bucket, nearest seconds first.
* Taint fuses are a dict auth -> t, purged when t leaves the window.
* Replay filter: two generations of sets with the 120 s swap, refusing an
  AuthID present in either (refused for 120..240 s), bounded in size.
* Session history: (user id, key, iv) -> expiry (3 min), purged every 30 s.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes

from v2py.errors import VmessError
from v2py.protocol.vmess.account import VmessUser
from v2py.protocol.vmess.header import AEAD_TIME_WINDOW_S, auth_id_key

try:  # the built-in HACL* MD5 is ~2x faster than OpenSSL's for tiny inputs
    from _md5 import md5 as _fast_md5  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    _fast_md5 = hashlib.md5

__all__ = ["UserValidator", "LegacyMatch", "ReplayFilter", "SessionHistory"]

LEGACY_CACHE_DURATION_S = 120  # cacheDurationSec, spec 4.2
LEGACY_UPDATE_INTERVAL_S = 10  # updateInterval, spec 4.2
REPLAY_INTERVAL_S = 120  # antireplay interval, spec 5.3
REPLAY_CAPACITY = 100_000  # per generation, as the cuckoo filters
SESSION_LIFETIME_S = 180  # spec 4.3
SESSION_CLEANUP_INTERVAL_S = 30
DRAIN_BASE_RANGE = 3266  # spec 7
DRAIN_RAND_RANGE = 64
DRAIN_FIXED = 16 + 38
_BS_KDF_KEY = b"VMESSBSKDF"
_CRC64_ECMA_REFLECTED = 0xC96C5795D7870F42
_AUTH_LEN = 16

Rng = Callable[[int], bytes]


def _crc64_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC64_ECMA_REFLECTED if crc & 1 else crc >> 1
        table.append(crc)
    return table


def _crc64_update(crc: int, data: bytes, table: list[int]) -> int:
    crc ^= 0xFFFFFFFFFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True, slots=True)
class LegacyMatch:
    """Result of a legacy lookup: the user, the header timestamp, and whether
    the entry's taint fuse is burnt (spec 4.3)."""

    user: VmessUser
    ts: int
    tainted: bool


class ReplayFilter:
    """Two-generation AuthID replay filter with the 4.34 semantics (spec 5.3).

    ``check(key, now)`` returns True if ``key`` is new (and records it).
    When a generation is full, new keys are refused, as a full cuckoo
    filter would.
    """

    def __init__(
        self, now: float, interval: float = REPLAY_INTERVAL_S, capacity: int = REPLAY_CAPACITY
    ) -> None:
        self._gens: list[set[bytes]] = [set(), set()]
        self._last_swap = now
        self._next_clear = 0
        self._interval = interval
        self._capacity = capacity

    def check(self, key: bytes, now: float) -> bool:
        """Record ``key``; False if it was seen within the last 120..240 s."""
        if now - self._last_swap >= self._interval:
            self._gens[self._next_clear].clear()
            self._next_clear ^= 1
            self._last_swap = now
        a, b = self._gens
        if key in a or key in b:
            return False
        if len(a) >= self._capacity or len(b) >= self._capacity:
            return False
        a.add(key)
        b.add(key)
        return True


class SessionHistory:
    """(user id, body key, body IV) seen within 3 minutes (spec 4.3)."""

    def __init__(self, now: float) -> None:
        self._entries: dict[bytes, float] = {}
        self._next_cleanup = now + SESSION_CLEANUP_INTERVAL_S

    def add_if_not_exists(self, user_id: bytes, key: bytes, iv: bytes, now: float) -> bool:
        """Record the triple; False if it is already present and unexpired."""
        if now >= self._next_cleanup:
            self._entries = {k: t for k, t in self._entries.items() if t > now}
            self._next_cleanup = now + SESSION_CLEANUP_INTERVAL_S
        sid = bytes(user_id) + bytes(key) + bytes(iv)
        expiry = self._entries.get(sid)
        if expiry is not None and expiry > now:
            return False
        self._entries[sid] = now + SESSION_LIFETIME_S
        return True

    def __len__(self) -> int:
        return len(self._entries)


class _Slot:
    """One legacy ID (primary or alter) with precomputed HMAC-MD5 pad states."""

    __slots__ = ("user", "inner", "outer")

    def __init__(self, user: VmessUser, id16: bytes) -> None:
        key = id16.ljust(64, b"\x00")
        self.user: VmessUser | None = user
        self.inner = _fast_md5(key.translate(_IPAD))
        self.outer = _fast_md5(key.translate(_OPAD))

    def auth(self, msg: bytes) -> bytes:
        i = self.inner.copy()
        i.update(msg)
        o = self.outer.copy()
        o.update(i.digest())
        return o.digest()  # type: ignore[no-any-return]


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
_DEAD = bytes(_AUTH_LEN)


class UserValidator:
    """The server's user table (spec 4.2, 4.3, 5.3, 7).

    ``now`` is wall-clock Unix time in seconds (VMess timestamps are absolute).
    ``rng`` seeds nothing secret; it is used for the fallback drain seed.
    """

    def __init__(
        self, now: float, rng: Rng, *, legacy_window_s: int = LEGACY_CACHE_DURATION_S
    ) -> None:
        self._now = int(now)
        self._rng = rng
        self._window = legacy_window_s
        self._users: dict[str, VmessUser] = {}  # lower-cased email -> user (non-empty)
        self._anon: list[VmessUser] = []  # users without email
        self._aead: list[tuple[VmessUser, CipherContext]] = []
        self._slots: list[_Slot] = []
        self._user_slots: dict[int, list[int]] = {}  # id(user) -> slot indexes
        self._buckets: dict[int, bytearray] = {}
        self._tainted: dict[bytes, int] = {}
        self._replay = ReplayFilter(now)
        self._sessions = SessionHistory(now)
        self._crc_table: list[int] | None = None
        self._bs_seed = 0
        self._seed_frozen = False
        self._drain_base: int | None = None
        self._drain_rand_max = 1

    # ------------------------------------------------------------ users

    def add_user(self, user: VmessUser) -> None:
        """Register ``user`` for AEAD and legacy lookup.

        Raises ValueError if a user with the same non-empty email exists
        (emails compare case-insensitively, spec 10).
        """
        email = user.email.lower()
        if email and email in self._users:
            raise ValueError(f"duplicate user email {user.email!r}")
        if email:
            self._users[email] = user
        else:
            self._anon.append(user)
        dec = Cipher(algorithms.AES(auth_id_key(user.cmd_key)), modes.ECB()).decryptor()
        self._aead.append((user, dec))
        first = len(self._slots)
        new_slots = [_Slot(user, i) for i in user.all_ids]
        self._slots.extend(new_slots)
        self._user_slots[id(user)] = list(range(first, first + len(new_slots)))
        for t, bucket in self._buckets.items():
            msg = t.to_bytes(8, "big")
            bucket += b"".join(s.auth(msg) for s in new_slots)
        if not self._seed_frozen:
            if self._crc_table is None:
                self._crc_table = _crc64_table()
            digest = hmac.digest(_BS_KDF_KEY, user.id, hashlib.sha256)
            self._bs_seed = _crc64_update(self._bs_seed, digest, self._crc_table)

    def remove_user(self, email: str) -> VmessUser | None:
        """Unregister the user with ``email``; returns it, or None if absent."""
        user = self._users.pop(email.lower(), None) if email else None
        if user is None:
            return None
        self._aead = [(u, d) for (u, d) in self._aead if u is not user]
        for idx in self._user_slots.pop(id(user), []):
            self._slots[idx].user = None
        return user

    def get_user(self, email: str) -> VmessUser | None:
        """The user with this email (case-insensitive), or None."""
        return self._users.get(email.lower()) if email else None

    def users(self) -> Iterator[VmessUser]:
        """All registered users."""
        yield from self._users.values()
        yield from self._anon

    def __len__(self) -> int:
        return len(self._aead)

    # ------------------------------------------------------------ legacy

    def _bucket(self, t: int) -> bytearray:
        bucket = self._buckets.get(t)
        if bucket is None:
            msg = t.to_bytes(8, "big")
            bucket = bytearray(b"".join(s.auth(msg) for s in self._slots))
            self._buckets[t] = bucket
        return bucket

    def _window_order(self) -> Iterator[int]:
        base = self._now
        yield base
        for d in range(1, self._window + 1):
            yield base - d
            yield base + d

    def update(self, now: float) -> None:
        """The periodic refresh (call every 10 s, spec 4.2).

        Generates buckets for seconds entering the window, drops those that
        left it and forgets expired taint fuses.
        """
        old_hi = self._now + self._window
        self._now = int(now)
        lo, hi = self._now - self._window, self._now + self._window
        for t in [t for t in self._buckets if t < lo or t > hi]:
            del self._buckets[t]
        for t in range(max(old_hi + 1, lo), hi + 1):
            self._bucket(t)
        self._tainted = {a: t for a, t in self._tainted.items() if t >= lo}

    def prefill(self, max_buckets: int) -> int:
        """Generate up to ``max_buckets`` missing buckets, nearest first.

        Returns how many are still missing (0 = fully warm).
        """
        missing = 0
        for t in self._window_order():
            if t in self._buckets:
                continue
            if max_buckets > 0:
                self._bucket(t)
                max_buckets -= 1
            else:
                missing += 1
        return missing

    def lookup_legacy(self, auth16: bytes) -> LegacyMatch | None:
        """Find the user and timestamp for a 16-byte legacy authenticator.

        Returns None when nothing matches; a match whose fuse is burnt is
        returned with ``tainted=True`` (the caller refuses it and drains).
        """
        auth = bytes(auth16)
        if len(auth) != _AUTH_LEN or not self._slots:
            return None
        for t in self._window_order():
            bucket = self._bucket(t)
            i = bucket.find(auth)
            while i >= 0:
                if i % _AUTH_LEN == 0:
                    user = self._slots[i // _AUTH_LEN].user
                    if user is not None:
                        return LegacyMatch(user=user, ts=t, tainted=auth in self._tainted)
                i = bucket.find(auth, i + 1)
        return None

    def burn_taint(self, auth16: bytes, ts: int) -> None:
        """Burn the taint fuse of a legacy auth entry (spec 4.3)."""
        self._tainted[bytes(auth16)] = ts

    # ------------------------------------------------------------ AEAD

    def match_aead(self, auth_id16: bytes, now: float) -> VmessUser | None:
        """Match an AEAD AuthID (spec 5.3).

        Returns the user, or None if no user's CRC and time window fit.
        Raises VmessError(drain=True) if the AuthID is a replay.
        """
        auth = bytes(auth_id16)
        if len(auth) != _AUTH_LEN:
            return None
        crc32 = zlib.crc32
        for user, dec in self._aead:
            plain = dec.update(auth)
            if crc32(plain[:12]) != int.from_bytes(plain[12:], "big"):
                continue
            t = int.from_bytes(plain[:8], "big", signed=True)
            if t < 0 or abs(t - now) > AEAD_TIME_WINDOW_S:
                continue
            if not self._replay.check(auth, now):
                raise VmessError("replayed AEAD AuthID", drain=True)
            return user
        return None

    # ------------------------------------------------------------ sessions

    def check_session(self, user: VmessUser, key: bytes, iv: bytes, now: float) -> bool:
        """Record (user, key, iv); False if seen in the last 3 minutes (spec 4.3)."""
        return self._sessions.add_if_not_exists(user.id, key, iv, now)

    # ------------------------------------------------------------ drain

    def drain_size(self, rng: Rng) -> int:
        """Bytes to consume in total before closing a failed connection (spec 7).

        The per-server part is fixed at the first call from the users added
        so far (not Go-math/rand exact); the per-connection part comes from
        ``rng``.
        """
        if self._drain_base is None:
            self._seed_frozen = True
            seed = self._bs_seed or int.from_bytes(self._rng(8), "big")
            mix = hashlib.sha256(seed.to_bytes(8, "big")).digest()
            self._drain_base = int.from_bytes(mix[:8], "big") % DRAIN_BASE_RANGE
            self._drain_rand_max = int.from_bytes(mix[8:16], "big") % DRAIN_RAND_RANGE + 1
        rolled = int.from_bytes(rng(4), "big") % self._drain_rand_max
        return self._drain_base + DRAIN_FIXED + rolled
