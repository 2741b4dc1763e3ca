"""VMess server user table: AEAD AuthID matching, legacy auth table, replay
filter, taint fuses, session history and drain budget (docs/spec/vmess.md sections
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
* Legacy: 4.34 keeps a hash map of HMAC-MD5(id, t) for every ID ("slot") and
  every second t in [now-120, now+120].  At 5,000 users x (1+alterId) that is
  millions of entries: a Python dict would need ~115 bytes each (~400 MB),
  and a plain scan of per-second blocks costs tens of ms per refused probe.
  So the index is a compact hash table in flat byte strings:

  - seconds are grouped into *generations* of ``2**_GEN_BITS`` seconds; a
    generation is a list of ``2**_BUCKET_BITS`` buckets chosen by 12 bits of
    the auth (bytes 4-5), created lazily;
  - a bucket is a ``bytearray`` of 8-byte records: the auth's first 4 bytes,
    then ``slot << 8 | (t mod 2**_GEN_BITS)`` big-endian;
  - a lookup does one C-speed ``find`` of the 4-byte prefix in one small
    bucket per generation (~17), then recomputes the one HMAC of each
    candidate, so only exact 16-byte matches count (as 4.34's map).

  Building the table costs one HMAC per (slot, second); with the C accelerator
  (``_chunkcrypt.LegacyTable``: each ID's absorbed HMAC pads, records appended to
  the same buckets, each bucket grown once per call) ~0.25 us each, in Python ~1 us.
  It is spread out:

  - ``add_user`` / ``add_users`` build the new IDs for the client band only (now
    +/- ``LEGACY_CLIENT_BAND_S``: 4.34 clients jitter their timestamp by
    [-30, +29] s, spec 4.1), so a fresh server accepts legacy clients at once
    and each call costs O(IDs x band) (``add_users``: one batch for all);
  - the rest is built nearest-second-first by a *scanner*: ``prefill`` /
    ``prefill_budget`` (the shell's warm-up, bounded by an HMAC count per
    call) and, while the table is not complete, a refused lookup (at most
    ``LOOKUP_INLINE_HASHES`` per call; this work is never wasted, so junk
    probes cannot cost more in total than the warm-up itself);
  - ``update`` only moves the window and drops whole generations that left
    it; the seconds entering it are left to the scanner (they are at the far
    edge, which real clients do not use).

  Per second t the scanner keeps ``progress[t]``: slots ``[0, progress[t])``
  are in the index.  Slots are only appended, so a new user's slots are at
  the end; band records built by ``add_user`` ahead of the scanner are
  remembered in ``extra[t]`` and skipped when the scanner gets there.
  Invariant: every window second before ``cursor`` (in nearest-first order)
  is complete.
* Taint fuses are a dict auth -> t, purged when t leaves the window.
* Replay filter: two generations of sets with the 120 s swap, refusing an
  AuthID present in either (refused for 120..240 s), bounded in size.
* Session history: (user id, key, iv) -> expiry (3 min), purged every 30 s.
* Shared state (``v2py run --workers N``): with a ``shared_store`` the replay
  filter, the session history and the taint fuses live in one :class:`KeyStore`
  that every worker process sees, so a replay landing on a sibling worker is
  still refused.  Entries carry wall-clock expiries every worker computes
  alike: an AuthID seen in period ``p = floor(now / 120)`` expires at
  ``(p + 2) * 120`` (refused for 120..240 s, as the two generations); a session
  triple (hashed to 16 bytes) at ``now + 180``; a taint at ``ts + window + 1``
  (alive while ``ts`` is inside the legacy window).  A store that is full
  refuses new keys, as a full cuckoo filter does.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import itertools
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from v2py.errors import VmessError
from v2py.protocol.vmess.account import VmessUser
from v2py.protocol.vmess.header import AEAD_TIME_WINDOW_S, auth_id_key

try:  # optional C accelerator: the AuthID scan in one C loop (see match_aead)
    from v2py._chunkcrypt import AuthTable as _AuthTable
except ImportError:  # not built, or no system libcrypto / libz
    _AuthTable = None  # type: ignore[assignment,misc]

try:  # optional C accelerator: legacy HMAC-MD5 records built in C (see _emit)
    from v2py._chunkcrypt import LegacyTable as _LegacyTable
except ImportError:  # pragma: no cover - not built, or an old build without it
    _LegacyTable = None  # type: ignore[assignment,misc]

try:  # the built-in HACL* MD5 is ~2x faster than OpenSSL's for tiny inputs
    from _md5 import md5 as _fast_md5  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover
    _fast_md5 = hashlib.md5

__all__ = [
    "KeyStore",
    "UserValidator",
    "LegacyMatch",
    "ReplayFilter",
    "SessionHistory",
    "ValidatorStatistics",
]

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
#: Half-width of the legacy band built eagerly on user add: 4.34 clients
#: jitter their timestamp by [-30, +29] s (spec 4.1), plus 1 s of rounding.
LEGACY_CLIENT_BAND_S = 31
#: Client addresses whose last matched AEAD user is remembered (match_aead hint).
RECENT_HINTS = 4_096
#: Most HMACs one ``prefill`` call computes (~0.7-1 us each: <= ~10 ms).
PREFILL_MAX_HASHES = 8_192
#: Most HMACs a refused legacy lookup computes while the table is incomplete
#: (<= ~5 ms; a whole window for up to 17 IDs, so small tables are built at once).
LOOKUP_INLINE_HASHES = 4_096
#: Index record: 4 auth bytes + (slot << 8 | second within generation).
LEGACY_RECORD_BYTES = 8
#: Slot indexes must fit the 24 bits left in a record.
LEGACY_MAX_IDS = 1 << 24
_GEN_BITS = 4  # 16-second generations: ~17 per window, dropped whole
_GEN_MASK = (1 << _GEN_BITS) - 1
_BUCKET_BITS = 12  # bucket = the auth's first 12 bits: ~60 records each at 5,000 users
_BUCKETS = 1 << _BUCKET_BITS
_BUCKET_SHIFT = 16 - _BUCKET_BITS
#: Slots per C ``emit`` call when a batch is built (bounds its sort buffer: 2,048 IDs x
#: 63 band seconds x 20 bytes = 2.6 MB), with the same records in the same order.
_EMIT_SLICE_SLOTS = 2_048
_RECORD = struct.Struct(">4sI")  # auth[:4] (truncated by struct), slot << 8 | t mod 16
_AUTH_ID_SPLIT = struct.Struct(">12sI").unpack  # AuthID plain: i64 t || rand4, CRC32

Rng = Callable[[int], bytes]

#: blake2b personalisations: session triples and taint keys never collide with
#: each other or with raw AuthIDs in a shared store.
_SESSION_PERSON = b"v2py-session"
_TAINT_PERSON = b"v2py-taint"
_STORE_KEY_BYTES = 16


class KeyStore(Protocol):
    """A bounded set of 16-byte keys, each with a wall-clock expiry (seconds).

    A key whose expiry is ``<= now`` counts as absent.  The shell's
    implementation (``v2py.app.shared_state.SharedKeyTable``) is shared by
    every worker process; its operations are atomic across them.
    """

    def add_if_absent(self, key: bytes, expiry: float, now: float) -> bool:
        """Record ``key`` until ``expiry``; False if it is present and live, or
        if there is no room for it (a full store refuses, never evicts)."""
        ...

    def contains(self, key: bytes, now: float) -> bool:
        """True if ``key`` is present and its expiry is later than ``now``."""
        ...

    def add(self, key: bytes, expiry: float, now: float) -> None:
        """Record ``key`` until at least ``expiry``, evicting the soonest-expiring
        entry if there is no room (used for taints, which must not be lost)."""
        ...


def _store_key(person: bytes, data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_STORE_KEY_BYTES, person=person).digest()


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


def _hmac_pads(id16: bytes) -> tuple[Any, Any]:
    """HMAC-MD5 inner and outer hash states keyed with ``id16``."""
    key = id16.ljust(64, b"\x00")
    return _fast_md5(key.translate(_IPAD)), _fast_md5(key.translate(_OPAD))


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _ts_bytes(t: int) -> bytes:
    # Go's uint64(int64) cast: a negative second wraps, as two's complement.
    return t.to_bytes(8, "big", signed=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class ValidatorStatistics:
    """A snapshot of the user table's size and legacy warm-up state.

    ``legacy_entries`` counts (ID, second) records in the index (each
    ``LEGACY_RECORD_BYTES`` long, plus bytearray slack);
    ``legacy_missing`` is an upper bound on the records still to build for
    the current window (0 once ``legacy_warm``).
    """

    users: int
    legacy_ids: int
    legacy_entries: int
    legacy_index_bytes: int
    legacy_missing: int
    legacy_warm: bool


class UserValidator:
    """The server's user table (spec 4.2, 4.3, 5.3, 7).

    ``now`` is wall-clock Unix time in seconds (VMess timestamps are absolute).
    ``rng`` seeds nothing secret; it is used for the fallback drain seed.
    ``legacy_window_s`` is the legacy half-window (4.34: 120 s);
    ``legacy_band_s`` is the half-width built eagerly by ``add_user`` (clamped
    to the window), and ``legacy_band_lead_s`` more seconds after it: ``now`` only
    moves with :meth:`update`, so the shell passes its update interval (plus the
    warm-up's time), and a client whose clock is ahead of a stale ``now`` still
    falls inside the band; ``lookup_inline_hashes`` bounds the table building a
    refused legacy lookup may do while the table is incomplete.
    ``shared_store``, when given, holds the replay filter, session history and
    taint fuses instead of this object (see the module docstring); sibling
    validators over the same store then refuse each other's replays.
    """

    def __init__(
        self,
        now: float,
        rng: Rng,
        *,
        legacy_window_s: int = LEGACY_CACHE_DURATION_S,
        legacy_band_s: int = LEGACY_CLIENT_BAND_S,
        legacy_band_lead_s: int = 0,
        lookup_inline_hashes: int = LOOKUP_INLINE_HASHES,
        shared_store: KeyStore | None = None,
        accelerated: bool = True,
    ) -> None:
        if (
            legacy_window_s < 0
            or legacy_band_s < 0
            or legacy_band_lead_s < 0
            or lookup_inline_hashes < 0
        ):
            raise ValueError("legacy window, band, band lead and inline budget must be >= 0")
        self._now = int(now)
        self._rng = rng
        self._window = legacy_window_s
        self._band = min(legacy_band_s, legacy_window_s)
        self._band_top = min(legacy_band_s + legacy_band_lead_s, legacy_window_s)
        self._inline_hashes = lookup_inline_hashes
        self._users: dict[str, VmessUser] = {}  # lower-cased email -> user (non-empty)
        self._anon: list[VmessUser] = []  # users without email
        # AEAD AuthID keys by slot (None once removed): scanned by the C AuthTable when
        # it is built and ``accelerated``, else by a Python loop over the decryptors.
        self._aead_users: list[VmessUser | None] = []
        self._aead_decrypt: list[Callable[[bytes], bytes] | None] = []
        self._aead_slot: dict[int, int] = {}  # id(user) -> slot
        self._aead_table = _AuthTable() if accelerated and _AuthTable is not None else None
        # Hint -> the slot it matched last (see match_aead): tried first next time.
        self._recent: collections.OrderedDict[object, int] = collections.OrderedDict()
        # Legacy ID slots, as parallel lists (the HMAC loops are hot): owner
        # (None once removed) and HMAC-MD5 inner / outer pad states (in the C
        # LegacyTable instead when it is built and ``accelerated``).
        self._slot_user: list[VmessUser | None] = []
        self._inner: list[Any] = []
        self._outer: list[Any] = []
        self._legacy = _LegacyTable() if accelerated and _LegacyTable is not None else None
        self._user_slots: dict[int, range] = {}  # id(user) -> slot indexes
        # Legacy index (see the module docstring).
        self._gens: dict[int, list[bytearray | None]] = {}
        self._gen_records: dict[int, int] = {}
        self._contexts: dict[int, tuple[bytes, list[bytearray | None], int]] = {}
        self._progress: dict[int, int] = {}  # second -> slots [0, n) indexed
        self._extra: dict[int, set[int]] = {}  # second -> slots indexed ahead of progress
        self._order: list[int] = []  # window seconds, nearest first
        self._cursor = 0  # seconds before it in _order are complete
        self._set_window()
        self._tainted: dict[bytes, int] = {}
        self._replay = ReplayFilter(now)
        self._sessions = SessionHistory(now)
        self._store = shared_store
        self._crc_table: list[int] | None = None
        self._bs_seed = 0
        self._seed_frozen = False
        # ids of users added before the seed froze, not yet folded into it (the fold,
        # ~10 us per user in Python, runs at the warm-up or the first drain instead)
        self._seed_pending: list[bytes] = []
        self._drain_base: int | None = None
        self._drain_rand_max = 1

    # ------------------------------------------------------------ users

    def add_user(self, user: VmessUser) -> None:
        """Register ``user`` for AEAD and legacy lookup.

        Computes the user's legacy auths for the client band only:
        (1 + alterId) x (2 x band + 1) HMACs; the rest of the window follows
        through ``prefill`` / ``prefill_budget`` (or, bounded, refused
        lookups).  Raises ValueError if a user with the same non-empty email
        exists (emails compare case-insensitively, spec 10) or the legacy
        table would exceed ``LEGACY_MAX_IDS`` IDs.
        """
        self.add_users((user,))

    def add_users(self, users: Iterable[VmessUser]) -> None:
        """Register several users at once, as ``add_user`` each in order, with
        one band build for all of them (a config's 10,000 users).

        All or nothing: if one would be refused (a duplicate email, also within
        ``users``, or too many legacy IDs), ValueError and none is added.
        """
        batch = list(users)
        seen: set[str] = set()
        n_ids = 0
        for user in batch:
            email = user.email.lower()
            if email and (email in self._users or email in seen):
                raise ValueError(f"duplicate user email {user.email!r}")
            if email:
                seen.add(email)
            n_ids += 1 + user.alter_id
        old = len(self._slot_user)
        if old + n_ids > LEGACY_MAX_IDS:
            raise ValueError(f"too many legacy IDs (max {LEGACY_MAX_IDS})")
        packed: list[bytes] = []
        for user in batch:
            email = user.email.lower()
            if email:
                self._users[email] = user
            else:
                self._anon.append(user)
            self._add_aead(user)
            ids = user.all_ids
            first = len(self._slot_user)
            self._slot_user.extend([user] * len(ids))
            if self._legacy is not None:
                packed.extend(ids)
            else:
                for id16 in ids:
                    inner, outer = _hmac_pads(id16)
                    self._inner.append(inner)
                    self._outer.append(outer)
            self._user_slots[id(user)] = range(first, len(self._slot_user))
            if not self._seed_frozen:
                self._seed_pending.append(user.id)
        if self._legacy is not None and packed:
            self._legacy.add(b"".join(packed))
        if len(self._slot_user) > old:
            self._add_legacy_slots(old, range(old, len(self._slot_user)))

    def _add_legacy_slots(self, old: int, new: range) -> None:
        # Only the band real clients use is built now (ahead of the scanner if
        # need be), so a new user can log in at once and one add costs
        # O(IDs x band).  Elsewhere the new slots simply extend each second's
        # unbuilt tail, which the scanner covers (4.34 builds the whole window
        # here; in Python that would be ~1 ms per alter ID).
        n = new.stop
        progress = self._progress
        extra = self._extra
        targets = []
        for t in range(self._now - self._band, self._now + self._band_top + 1):
            p = progress.get(t, 0)
            if p == n:
                continue
            targets.append(t)
            if p == old:
                progress[t] = n
            else:
                extra.setdefault(t, set()).update(new)
        self._emit_slots(targets, new)
        self._cursor = 0

    def remove_user(self, email: str) -> VmessUser | None:
        """Unregister the user with ``email``; returns it, or None if absent."""
        user = self._users.pop(email.lower(), None) if email else None
        if user is None:
            return None
        self._remove_aead(user)
        for idx in self._user_slots.pop(id(user), range(0)):
            self._slot_user[idx] = None
        return user

    def get_user(self, email: str) -> VmessUser | None:
        """The user with this email (case-insensitive), or None."""
        return self._users.get(email.lower()) if email else None

    def users(self) -> Iterator[VmessUser]:
        """All registered users."""
        yield from self._users.values()
        yield from self._anon

    def __len__(self) -> int:
        return len(self._aead_slot)

    def statistics(self) -> ValidatorStatistics:
        """Sizes and warm-up state of the table (O(window) to compute)."""
        entries = sum(self._gen_records.values())
        missing = self._missing_records()
        return ValidatorStatistics(
            users=len(self._aead_slot),
            legacy_ids=sum(1 for u in self._slot_user if u is not None),
            legacy_entries=entries,
            legacy_index_bytes=entries * LEGACY_RECORD_BYTES,
            legacy_missing=missing,
            legacy_warm=missing == 0,
        )

    # ------------------------------------------------------------ legacy

    def _set_window(self) -> None:
        base = self._now
        order = [base]
        for d in range(1, self._window + 1):
            order.append(base - d)
            order.append(base + d)
        self._order = order
        self._cursor = 0

    def _context(self, t: int) -> tuple[bytes, list[bytearray | None], int]:
        """(HMAC message, generation buckets, record tag bits) for second ``t``."""
        ctx = self._contexts.get(t)
        if ctx is None:
            g = t >> _GEN_BITS
            gen = self._gens.get(g)
            if gen is None:
                gen = self._gens[g] = [None] * _BUCKETS
                self._gen_records[g] = 0
            ctx = self._contexts[t] = (_ts_bytes(t), gen, t & _GEN_MASK)
        return ctx

    def _emit(self, t: int, lo: int, hi: int, skip: set[int] | None) -> None:
        """Index the auths of second ``t`` for slots [lo, hi) not in ``skip``."""
        msg, gen, toff = self._context(t)
        if self._legacy is not None:
            count = self._legacy.emit(lo, hi, [t], [gen], skip, _BUCKET_SHIFT, _GEN_MASK)
            self._gen_records[t >> _GEN_BITS] += count
            return
        pack = _RECORD.pack
        shift = _BUCKET_SHIFT
        count = 0
        for idx, inner, outer in zip(
            range(lo, hi), self._inner[lo:hi], self._outer[lo:hi], strict=True
        ):
            if skip and idx in skip:
                continue
            i = inner.copy()
            i.update(msg)
            o = outer.copy()
            o.update(i.digest())
            a = o.digest()
            k = (a[0] << 8 | a[1]) >> shift
            bucket = gen[k]
            if bucket is None:
                gen[k] = bytearray(pack(a, idx << 8 | toff))
            else:
                bucket += pack(a, idx << 8 | toff)
            count += 1
        self._gen_records[t >> _GEN_BITS] += count

    def _emit_slots(self, seconds: list[int], slots: range) -> None:
        """Index the auths of a few new slots for many seconds."""
        contexts = [self._context(t) for t in seconds]
        if self._legacy is not None:
            gens = [gen for _, gen, _ in contexts]
            secs = list(seconds)
            # In slices: the C call sorts its records in a buffer of 20 bytes per record.
            for lo in range(slots.start, slots.stop, _EMIT_SLICE_SLOTS):
                hi = min(slots.stop, lo + _EMIT_SLICE_SLOTS)
                self._legacy.emit(lo, hi, secs, gens, None, _BUCKET_SHIFT, _GEN_MASK)
            records = self._gen_records
            for t in seconds:
                records[t >> _GEN_BITS] += len(slots)
            return
        pack = _RECORD.pack
        shift = _BUCKET_SHIFT
        lo, hi = slots.start, slots.stop
        for idx, inner, outer in zip(slots, self._inner[lo:hi], self._outer[lo:hi], strict=True):
            tag = idx << 8
            for msg, gen, toff in contexts:
                i = inner.copy()
                i.update(msg)
                o = outer.copy()
                o.update(i.digest())
                a = o.digest()
                k = (a[0] << 8 | a[1]) >> shift
                bucket = gen[k]
                if bucket is None:
                    gen[k] = bytearray(pack(a, tag | toff))
                else:
                    bucket += pack(a, tag | toff)
        records = self._gen_records
        for t in seconds:
            records[t >> _GEN_BITS] += len(slots)

    def _advance(self, max_hashes: int, max_seconds: int) -> tuple[int, int]:
        """Run the scanner: index missing (slot, second) pairs nearest first,
        at most ``max_hashes`` of them and ``max_seconds`` completed seconds.

        Returns (pairs visited, seconds completed).
        """
        order = self._order
        progress = self._progress
        n = len(self._slot_user)
        cursor = self._cursor
        budget = max_hashes
        done = 0
        while cursor < len(order) and budget > 0 and done < max_seconds:
            t = order[cursor]
            p = progress.get(t, 0)
            if p < n:
                e = min(n, p + budget)
                self._emit(t, p, e, self._extra.get(t))
                budget -= e - p
                progress[t] = e
                if e < n:
                    break
                self._extra.pop(t, None)
                done += 1
            cursor += 1
        self._cursor = cursor
        return max_hashes - budget, done

    def _missing_records(self) -> int:
        n = len(self._slot_user)
        get = self._progress.get
        return sum(n - get(t, 0) for t in self._order[self._cursor :])

    def update(self, now: float) -> None:
        """The periodic refresh (call every 10 s, spec 4.2).

        Moves the window to ``now`` and drops the generations that left it
        and expired taint fuses: O(window + fuses), no HMACs.  The seconds
        entering the window are built by ``prefill`` / ``prefill_budget``
        (and, bounded, by refused lookups).
        """
        self._now = int(now)
        lo, hi = self._now - self._window, self._now + self._window
        for g in [g for g in self._gens if (g + 1) << _GEN_BITS <= lo or g << _GEN_BITS > hi]:
            del self._gens[g]
            del self._gen_records[g]
        live = self._gens
        self._contexts = {}
        self._progress = {t: p for t, p in self._progress.items() if t >> _GEN_BITS in live}
        self._extra = {t: s for t, s in self._extra.items() if t >> _GEN_BITS in live}
        self._set_window()
        self._tainted = {a: t for a, t in self._tainted.items() if t >= lo}

    def prefill(self, max_buckets: int, *, max_hashes: int = PREFILL_MAX_HASHES) -> int:
        """Complete up to ``max_buckets`` seconds of the window, nearest first,
        computing at most ``max_hashes`` HMACs (a partly built second is
        resumed by the next call).

        Returns how many seconds of the window are still incomplete (0 =
        fully warm).
        """
        if max_buckets > 0 and max_hashes > 0:
            self._advance(max_hashes, max_buckets)
        n = len(self._slot_user)
        get = self._progress.get
        return sum(1 for t in self._order[self._cursor :] if get(t, 0) < n)

    def prefill_budget(self, max_hashes: int) -> int:
        """Build up to ``max_hashes`` missing (ID, second) auths, nearest
        second first: the shell's bounded warm-up step (~1 us each).

        Returns an upper bound on the auths still missing (0 = fully warm).
        """
        self._fold_seed(max_hashes // 64)
        if max_hashes > 0:
            self._advance(max_hashes, len(self._order))
        return self._missing_records()

    def _auth(self, idx: int, t: int) -> bytes:
        if self._legacy is not None:
            return self._legacy.auth(idx, t)
        i = self._inner[idx].copy()
        i.update(_ts_bytes(t))
        o = self._outer[idx].copy()
        o.update(i.digest())
        return o.digest()  # type: ignore[no-any-return]

    def _search(self, auth: bytes) -> tuple[VmessUser, int] | None:
        prefix = auth[:4]
        k = (auth[0] << 8 | auth[1]) >> _BUCKET_SHIFT
        now = self._now
        lo, hi = now - self._window, now + self._window
        owners = self._slot_user
        best: tuple[int, bool, int] | None = None
        found: tuple[VmessUser, int] | None = None
        for g, gen in self._gens.items():
            bucket = gen[k]
            if bucket is None:
                continue
            i = bucket.find(prefix)
            while i >= 0:
                if not i % LEGACY_RECORD_BYTES:
                    tag = int.from_bytes(bucket[i + 4 : i + LEGACY_RECORD_BYTES], "big")
                    t = g << _GEN_BITS | (tag & _GEN_MASK)
                    idx = tag >> 8
                    user = owners[idx]
                    if lo <= t <= hi and user is not None and self._auth(idx, t) == auth:
                        # 4.34's map has one entry per auth; for a (never seen)
                        # collision prefer the nearest second, then the first ID.
                        rank = (abs(t - now), t > now, idx)
                        if best is None or rank < best:
                            best, found = rank, (user, t)
                i = bucket.find(prefix, i + 1)
        return found

    def lookup_legacy(self, auth16: bytes | bytearray | memoryview) -> LegacyMatch | None:
        """Find the user and timestamp for a 16-byte legacy authenticator.

        Returns None when nothing matches; a match whose fuse is burnt is
        returned with ``tainted=True`` (the caller refuses it and drains).
        While the table is incomplete, a miss first builds at most
        ``lookup_inline_hashes`` more auths (nearest seconds first) and
        looks again; the client band is always complete, see ``add_user``.
        """
        auth = bytes(auth16)
        if len(auth) != _AUTH_LEN or not self._slot_user:
            return None
        found = self._search(auth)
        if found is None and self._cursor < len(self._order) and self._inline_hashes:
            built, _ = self._advance(self._inline_hashes, len(self._order))
            if built:
                found = self._search(auth)
        if found is None:
            return None
        user, t = found
        if self._store is not None:
            tainted = self._store.contains(_store_key(_TAINT_PERSON, auth), self._now)
        else:
            tainted = auth in self._tainted
        return LegacyMatch(user=user, ts=t, tainted=tainted)

    def burn_taint(self, auth16: bytes, ts: int) -> None:
        """Burn the taint fuse of a legacy auth entry (spec 4.3)."""
        if self._store is not None:
            # Alive while ts >= now - window, as the dict purged by update().
            expiry = ts + self._window + 1
            self._store.add(_store_key(_TAINT_PERSON, bytes(auth16)), expiry, self._now)
            return
        self._tainted[bytes(auth16)] = ts

    # ------------------------------------------------------------ AEAD

    def _add_aead(self, user: VmessUser) -> None:
        key = auth_id_key(user.cmd_key)
        if self._aead_table is not None:
            slot = self._aead_table.add(key)
            self._aead_decrypt.append(None)
        else:
            slot = len(self._aead_users)
            dec = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
            self._aead_decrypt.append(dec.update)
        self._aead_users.append(user)
        self._aead_slot[id(user)] = slot

    def _remove_aead(self, user: VmessUser) -> None:
        slot = self._aead_slot.pop(id(user), None)
        if slot is None:
            return
        self._aead_users[slot] = None
        self._aead_decrypt[slot] = None
        if self._aead_table is not None:
            self._aead_table.remove(slot)

    def match_aead(self, auth_id16: bytes, now: float, *, hint: object = None) -> VmessUser | None:
        """Match an AEAD AuthID (spec 5.3).

        Returns the user, or None if no user's CRC and time window fit.
        Raises VmessError(drain=True) if the AuthID is a replay.

        ``hint`` (the client's address, say) names where the AuthID came from: the
        user that ``hint`` matched last is tried first, so a returning client costs
        one decryption instead of a scan of every user. This gives a prober no timing
        oracle that 4.34 does not: an AuthID that no user's key opens is refused only
        after trying every user, hint or not, exactly as before; only a *valid*
        AuthID is found sooner, and whether an AuthID is valid the connection's
        success tells anyway (4.34's own scan also stops at the first match).
        """
        auth = bytes(auth_id16)
        if len(auth) != _AUTH_LEN:
            return None
        first = self._recent.get(hint, -1) if hint is not None else -1
        slot = self._find_aead(auth, int(now), first)
        if slot < 0:
            return None
        if not self._replay_check(auth, now):
            raise VmessError("replayed AEAD AuthID", drain=True)
        if hint is not None:
            recent = self._recent
            recent[hint] = slot
            recent.move_to_end(hint)
            if len(recent) > RECENT_HINTS:
                recent.popitem(last=False)
        return self._aead_users[slot]

    def _find_aead(self, auth: bytes, now: int, first: int) -> int:
        if self._aead_table is not None:
            return self._aead_table.match(auth, now, AEAD_TIME_WINDOW_S, first)
        decrypts = self._aead_decrypt
        order: Iterable[int] = range(len(decrypts))
        if 0 <= first < len(decrypts):
            order = itertools.chain((first,), (i for i in order if i != first))
        crc32 = zlib.crc32
        split = _AUTH_ID_SPLIT
        for slot in order:
            decrypt = decrypts[slot]
            if decrypt is None:
                continue
            head, crc = split(decrypt(auth))
            if crc32(head) != crc:
                continue
            t = int.from_bytes(head[:8], "big", signed=True)
            if t < 0 or abs(t - now) > AEAD_TIME_WINDOW_S:
                continue
            return slot
        return -1

    def _replay_check(self, auth: bytes, now: float) -> bool:
        if self._store is None:
            return self._replay.check(auth, now)
        # Periods on the Unix epoch: every worker computes the same expiry.
        expiry = (now // REPLAY_INTERVAL_S + 2) * REPLAY_INTERVAL_S
        return self._store.add_if_absent(auth, expiry, now)

    # ------------------------------------------------------------ sessions

    def check_session(self, user: VmessUser, key: bytes, iv: bytes, now: float) -> bool:
        """Record (user, key, iv); False if seen in the last 3 minutes (spec 4.3)."""
        if self._store is not None:
            sid = _store_key(_SESSION_PERSON, bytes(user.id) + bytes(key) + bytes(iv))
            return self._store.add_if_absent(sid, now + SESSION_LIFETIME_S, now)
        return self._sessions.add_if_not_exists(user.id, key, iv, now)

    # ------------------------------------------------------------ drain

    def _fold_seed(self, limit: int | None = None) -> None:
        """Fold (at most ``limit``) pending user ids into the drain seed, in the
        order they were added: 4.34's crc64(HMAC-SHA256("VMESSBSKDF", id)) chain."""
        pending = self._seed_pending
        if not pending:
            return
        take = len(pending) if limit is None else max(1, limit)
        if self._crc_table is None:
            self._crc_table = _crc64_table()
        seed, table = self._bs_seed, self._crc_table
        for uid in pending[:take]:
            seed = _crc64_update(seed, hmac.digest(_BS_KDF_KEY, uid, hashlib.sha256), table)
        self._bs_seed = seed
        del pending[:take]

    def drain_size(self, rng: Rng) -> int:
        """Bytes to consume in total before closing a failed connection (spec 7).

        The per-server part is fixed at the first call from the users added
        so far (not Go-math/rand exact); the per-connection part comes from
        ``rng``.
        """
        if self._drain_base is None:
            self._fold_seed()
            self._seed_frozen = True
            seed = self._bs_seed or int.from_bytes(self._rng(8), "big")
            mix = hashlib.sha256(seed.to_bytes(8, "big")).digest()
            self._drain_base = int.from_bytes(mix[:8], "big") % DRAIN_BASE_RANGE
            self._drain_rand_max = int.from_bytes(mix[8:16], "big") % DRAIN_RAND_RANGE + 1
        rolled = int.from_bytes(rng(4), "big") % self._drain_rand_max
        return self._drain_base + DRAIN_FIXED + rolled
