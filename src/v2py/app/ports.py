"""Pure core of dynamic-port allocation (v2ray-core app/proxyman/inbound/dynamic.go).

Spec: ``docs/spec/dynamic-port.md`` sections 2 and 6.

Two objects, no I/O, no clock and no randomness of their own (``rng`` and ``now``
are passed in):

* :class:`PortAllocator` hands out uniformly random unused ports of a range, the
  way 4.34 does (``first + Roll(size)``, retried while the port is in use), and
  takes them back.
* :class:`PortRotation` is the schedule of a ``strategy: random`` inbound. It
  owns an allocator and decides when a generation of ``concurrency`` ports opens
  and when an old one closes; the shell binds and unbinds listeners.

Theory of operation of :class:`PortRotation`::

    start(now)              refresh due at ``now`` (4.34 runs refresh() at once)
    handle_timer(now)       1. every generation with closes_at <= now expires:
                               its ports are released, GenerationClosed queued
                            2. if a refresh is due: allocate ``concurrency``
                               ports (fewer if the range is short), queue
                               GenerationOpened, last_refresh = now,
                               next refresh = now + refresh
    port_failed(port)       the shell could not bind ``port``: drop it from its
                            generation and release it at once (4.34 leaks it)
    close()                 everything released; no timer any more

    state      | start  | handle_timer        | close
    -----------+--------+---------------------+--------
    NEW        | ACTIVE | LocalProtocolError  | CLOSED
    ACTIVE     | error  | ACTIVE              | CLOSED
    CLOSED     | error  | no-op               | CLOSED

With ``schedule_origin`` (``v2py run --workers N``: every worker process runs its
own rotation and all must agree without talking), refreshes sit on a fixed grid
``origin + k x refresh``: a refresh handled at ``now`` is generation
``k = floor((now - origin) / refresh)``, created at the grid instant, and the next
is due one step later (a late timer skips slots instead of drifting). With
``generation_rng``, generation ``k`` draws its ports from ``generation_rng(k)``,
so equal inputs give equal ports in every worker.

Expiry runs before a refresh due at the same instant. 4.34 races the two timers
and, when the refresh wins while the range is short, spins forever holding the
port lock (spec 2.4). Ordering them removes the race; a short range yields a
generation with fewer ports instead of a livelock.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from v2py.errors import LocalProtocolError

__all__ = [
    "GENERATION_LIFETIME_REFRESHES",
    "MIN_PORT",
    "MAX_PORT",
    "SECONDS_PER_MINUTE",
    "Generation",
    "GenerationClosed",
    "GenerationOpened",
    "PortAllocator",
    "PortRotation",
    "PortsExhaustedError",
    "RotationEvent",
    "Rng",
    "RotationState",
    "derived_rng",
    "minutes_left",
]

MIN_PORT = 1
MAX_PORT = 65535
SECONDS_PER_MINUTE = 60.0
#: A generation closes this many refresh intervals after it opened (spec 2.1).
GENERATION_LIFETIME_REFRESHES = 2
#: Random draws before falling back to picking from the explicit free list. With a
#: range of at least 3 x concurrency, a draw hits a free port with p >= 1/3, so
#: the fallback is practically never taken; it bounds the work when the range is full.
MAX_RANDOM_DRAWS = 64
#: Bytes of randomness per draw; 2**32 is far above any port range size.
_DRAW_BYTES = 4
_DRAW_SPACE = 1 << (8 * _DRAW_BYTES)

Rng = Callable[[int], bytes]


class PortsExhaustedError(LocalProtocolError):
    """Fewer free ports are left in the range than were asked for."""


def derived_rng(seed: bytes, label: bytes) -> Rng:
    """A deterministic ``rng(n) -> bytes``: the stream HMAC-SHA256(seed, label || counter).

    Two calls with the same ``seed`` and ``label`` return equal streams (how the
    worker processes of one server agree on ports and users without talking).
    """
    return _HmacStream(seed, label)


class _HmacStream:
    def __init__(self, seed: bytes, label: bytes) -> None:
        self._seed = seed
        self._label = label
        self._counter = 0
        self._buffer = b""

    def __call__(self, n: int) -> bytes:
        while len(self._buffer) < n:
            block = self._label + self._counter.to_bytes(8, "big")
            self._buffer += hmac.digest(self._seed, block, hashlib.sha256)
            self._counter += 1
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out


def _roll(rng: Rng, n: int) -> int:
    """A uniform integer in ``[0, n)`` from ``rng`` bytes (rejection sampling, no modulo bias)."""
    limit = _DRAW_SPACE - (_DRAW_SPACE % n)
    while True:
        value = int.from_bytes(rng(_DRAW_BYTES), "big")
        if value < limit:
            return value % n


class PortAllocator:
    """Uniformly random, non-repeating ports from ``first..last`` (inclusive).

    :param first: lowest port of the range.
    :param last: highest port of the range.
    :param rng: ``rng(n) -> n random bytes`` (``os.urandom`` in production).
    :raises ValueError: if the range is empty or outside 1..65535.
    """

    def __init__(self, first: int, last: int, rng: Rng) -> None:
        if not MIN_PORT <= first <= last <= MAX_PORT:
            raise ValueError(f"bad port range {first}-{last}")
        self.first = first
        self.last = last
        self._rng = rng
        self._in_use: set[int] = set()

    @property
    def size(self) -> int:
        """Number of ports in the range."""
        return self.last - self.first + 1

    @property
    def in_use(self) -> frozenset[int]:
        """Ports currently handed out and not yet released."""
        return frozenset(self._in_use)

    @property
    def free_count(self) -> int:
        """Number of ports that :meth:`allocate` can still hand out."""
        return self.size - len(self._in_use)

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def allocate(self, n: int, rng: Rng | None = None) -> list[int]:
        """Take ``n`` distinct free ports, each uniformly random among the free ones.

        ``rng`` replaces the allocator's own byte source for this call.

        Like 4.34 (``from + Roll(size)`` retried while in use), but bounded: after
        :data:`MAX_RANDOM_DRAWS` misses it picks uniformly from the free list,
        which has the same distribution.

        :raises PortsExhaustedError: fewer than ``n`` ports are free; nothing is taken.
        :raises ValueError: ``n`` is negative.
        """
        if n < 0:
            raise ValueError("cannot allocate a negative number of ports")
        if n > self.free_count:
            raise PortsExhaustedError(
                f"{n} ports wanted but only {self.free_count} of {self.first}-{self.last} are free"
            )
        draw = rng or self._rng
        return [self._allocate_one(draw) for _ in range(n)]

    def _allocate_one(self, rng: Rng) -> int:
        for _ in range(MAX_RANDOM_DRAWS):
            port = self.first + _roll(rng, self.size)
            if port not in self._in_use:
                self._in_use.add(port)
                return port
        free = [p for p in range(self.first, self.last + 1) if p not in self._in_use]
        port = free[_roll(rng, len(free))]
        self._in_use.add(port)
        return port

    def release(self, ports: Iterable[int]) -> None:
        """Return ``ports`` to the pool. Ports not in use are ignored (idempotent)."""
        for port in ports:
            self._in_use.discard(port)


def minutes_left(refresh_min: int, last_refresh: float, now: float) -> int:
    """ValidMin for a detour: ``refresh − ⌊(now − last_refresh) / 60⌋`` (spec 2.3).

    4.34 computes this in uint32 and would wrap when a refresh is overdue; we
    clamp at 0 instead (the VMess inbound caps the top at 255).
    """
    elapsed = max(0, math.floor((now - last_refresh) / SECONDS_PER_MINUTE))
    return max(0, refresh_min - elapsed)


@dataclass(frozen=True, slots=True, kw_only=True)
class Generation:
    """One batch of ports opened by a refresh.

    :ivar number: 0 for the first refresh, then 1, 2, ...
    :ivar created_at: the ``now`` of the refresh that opened it.
    :ivar closes_at: ``created_at + 2 × refresh``.
    :ivar ports: the ports still belonging to it (failed binds removed).
    """

    number: int
    created_at: float
    closes_at: float
    ports: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationEvent:
    """Base class of what :class:`PortRotation` reports."""

    generation: Generation


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationOpened(RotationEvent):
    """A refresh happened: bind ``generation.ports``; ``requested`` were wanted."""

    requested: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationClosed(RotationEvent):
    """``generation`` reached its lifetime: stop listening on its ports (already released)."""


class RotationState(enum.Enum):
    """Lifecycle of a :class:`PortRotation`."""

    NEW = "new"
    ACTIVE = "active"
    CLOSED = "closed"


class PortRotation:
    """When generations of random ports open and close (``strategy: random``).

    :param first_port: lowest port of the range.
    :param last_port: highest port of the range.
    :param refresh_min: minutes between refreshes (4.34 default 5); must be >= 1.
    :param concurrency: ports per generation (4.34 default 3); must be >= 1 and
        smaller than the range size (4.34's "not enough ports" check).
    :param rng: ``rng(n) -> bytes`` used for allocation.
    :param generation_rng: if given, generation ``k`` allocates with
        ``generation_rng(k)`` instead of ``rng``.
    :param schedule_origin: if given, refreshes sit on the grid
        ``origin + k x refresh`` and generation numbers are grid indexes (see the
        module docstring); ``start`` must then come at or after the origin.
    :raises ValueError: on a bad range, refresh or concurrency.
    """

    def __init__(
        self,
        *,
        first_port: int,
        last_port: int,
        refresh_min: int,
        concurrency: int,
        rng: Rng,
        generation_rng: Callable[[int], Rng] | None = None,
        schedule_origin: float | None = None,
    ) -> None:
        self.allocator = PortAllocator(first_port, last_port, rng)
        if refresh_min < 1:
            # 0 makes 4.34 refresh in a busy loop.
            raise ValueError(f"refresh must be at least 1 minute, not {refresh_min}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, not {concurrency}")
        if concurrency >= self.allocator.size:
            raise ValueError(
                f"not enough ports: concurrency {concurrency} needs a range of more than "
                f"{concurrency} ports, {first_port}-{last_port} has {self.allocator.size}"
            )
        self.refresh_min = refresh_min
        self.concurrency = concurrency
        self._generation_rng = generation_rng
        self._origin = schedule_origin
        self.state = RotationState.NEW
        self._generations: list[Generation] = []
        self._next_number = 0
        self._next_refresh: float | None = None
        self._last_refresh: float | None = None
        self._events: list[RotationEvent] = []

    # -- derived values -----------------------------------------------------
    @property
    def refresh_s(self) -> float:
        """The refresh interval in seconds."""
        return self.refresh_min * SECONDS_PER_MINUTE

    @property
    def lifetime_s(self) -> float:
        """How long a generation lives, in seconds (2 × refresh)."""
        return GENERATION_LIFETIME_REFRESHES * self.refresh_s

    @property
    def well_sized(self) -> bool:
        """True when the range holds 3 × concurrency ports (the spec's safe margin)."""
        return self.allocator.size >= 3 * self.concurrency

    @property
    def current(self) -> Generation | None:
        """The newest generation (detours pick from it), or None before the first refresh."""
        if self._generations and self._generations[-1].number == self._next_number - 1:
            return self._generations[-1]
        return None

    @property
    def generations(self) -> tuple[Generation, ...]:
        """Every live generation, oldest first."""
        return tuple(self._generations)

    @property
    def last_refresh(self) -> float | None:
        """``now`` of the latest refresh."""
        return self._last_refresh

    @property
    def next_refresh(self) -> float | None:
        """When the next refresh is due (None unless active)."""
        return self._next_refresh

    def minutes_left(self, now: float) -> int:
        """ValidMin to advertise at ``now`` (0 before the first refresh)."""
        if self._last_refresh is None:
            return 0
        return minutes_left(self.refresh_min, self._last_refresh, now)

    def pick(self, index: int) -> int | None:
        """Port ``index mod n`` of the current generation, or None when it has none."""
        current = self.current
        if current is None or not current.ports:
            return None
        return current.ports[index % len(current.ports)]

    # -- timer interface ------------------------------------------------------
    def start(self, now: float) -> None:
        """Begin: the first refresh is due at ``now``; call :meth:`handle_timer` next.

        :raises LocalProtocolError: if already started or closed.
        """
        if self.state is not RotationState.NEW:
            raise LocalProtocolError(f"cannot start a rotation in state {self.state.value}")
        self.state = RotationState.ACTIVE
        self._next_refresh = now

    def get_timer(self) -> float | None:
        """The earliest instant at which :meth:`handle_timer` has work, or None."""
        if self.state is not RotationState.ACTIVE:
            return None
        deadlines = [g.closes_at for g in self._generations]
        if self._next_refresh is not None:
            deadlines.append(self._next_refresh)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Expire old generations, then refresh if due; read results with :meth:`next_event`.

        :raises LocalProtocolError: if called before :meth:`start`.
        """
        if self.state is RotationState.NEW:
            raise LocalProtocolError("handle_timer before start")
        if self.state is RotationState.CLOSED:
            return
        keep: list[Generation] = []
        for gen in self._generations:
            if gen.closes_at <= now:
                self.allocator.release(gen.ports)
                self._events.append(GenerationClosed(generation=gen))
            else:
                keep.append(gen)
        self._generations = keep
        if self._next_refresh is not None and self._next_refresh <= now:
            self._refresh(now)

    def _closes_at(self, created: float) -> float:
        """``created`` plus the lifetime as repeated additions of ``refresh_s``: the very
        float the refresh that many steps on is due at when on time, so the expiry sorts
        first (``created + 2 * refresh`` may differ in the last bit)."""
        t = created
        for _ in range(GENERATION_LIFETIME_REFRESHES):
            t += self.refresh_s
        return t

    def _refresh(self, now: float) -> None:
        count = min(self.concurrency, self.allocator.free_count)
        number, created = self._next_number, now
        if self._origin is not None:
            number = max(self._next_number, math.floor((now - self._origin) / self.refresh_s))
            created = self._origin + number * self.refresh_s
        rng = self._generation_rng(number) if self._generation_rng is not None else None
        gen = Generation(
            number=number,
            created_at=created,
            closes_at=self._closes_at(created),
            ports=tuple(self.allocator.allocate(count, rng)),
        )
        self._next_number = number + 1
        self._generations.append(gen)
        self._last_refresh = created
        # Counted from this refresh, not from when it was due: 4.34 schedules the
        # next run after the previous one finished, so it drifts the same way.
        # On a fixed grid (workers) the next refresh is the next grid instant.
        self._next_refresh = created + self.refresh_s
        self._events.append(GenerationOpened(generation=gen, requested=self.concurrency))

    def next_event(self) -> RotationEvent | None:
        """The oldest unread event, or None."""
        return self._events.pop(0) if self._events else None

    # -- feedback from the shell ----------------------------------------------
    def port_failed(self, port: int) -> None:
        """The shell could not listen on ``port``: remove it from its generation and release it.

        4.34 keeps such a port marked in use forever; we give it back so a later
        refresh may try it again. Unknown ports are ignored.
        """
        for i, gen in enumerate(self._generations):
            if port in gen.ports:
                self._generations[i] = Generation(
                    number=gen.number,
                    created_at=gen.created_at,
                    closes_at=gen.closes_at,
                    ports=tuple(p for p in gen.ports if p != port),
                )
                self.allocator.release((port,))
                return

    def close(self) -> None:
        """Stop: release every port, forget all generations and pending events; no more timers."""
        for gen in self._generations:
            self.allocator.release(gen.ports)
        self._generations.clear()
        self._events.clear()
        self._next_refresh = None
        self.state = RotationState.CLOSED
