"""Pure dynamic-port core: PortAllocator and PortRotation with a seeded rng and explicit time."""

from __future__ import annotations

import collections
import random
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2py.app.ports import (
    Generation,
    GenerationClosed,
    GenerationOpened,
    PortAllocator,
    PortRotation,
    PortsExhaustedError,
    RotationEvent,
    RotationState,
    minutes_left,
)
from v2py.errors import LocalProtocolError

MINUTE = 60.0


def seeded(seed: int = 1) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def drain(rotation: PortRotation) -> list[RotationEvent]:
    events = []
    while (event := rotation.next_event()) is not None:
        events.append(event)
    return events


# -- PortAllocator ------------------------------------------------------------------


def test_allocate_distinct_ports_in_range() -> None:
    alloc = PortAllocator(10000, 10009, seeded())
    ports = alloc.allocate(4)
    assert len(set(ports)) == 4
    assert all(10000 <= p <= 10009 for p in ports)
    assert alloc.in_use == frozenset(ports)
    assert alloc.free_count == 6
    assert alloc.size == 10


def test_allocate_is_deterministic_for_a_seed() -> None:
    a = PortAllocator(20000, 20999, seeded(42)).allocate(5)
    b = PortAllocator(20000, 20999, seeded(42)).allocate(5)
    c = PortAllocator(20000, 20999, seeded(43)).allocate(5)
    assert a == b
    assert a != c


def test_allocate_never_repeats_until_released() -> None:
    alloc = PortAllocator(1, 6, seeded())
    first = alloc.allocate(3)
    second = alloc.allocate(3)
    assert set(first).isdisjoint(second)
    assert alloc.free_count == 0
    with pytest.raises(PortsExhaustedError):
        alloc.allocate(1)
    alloc.release(first)
    again = alloc.allocate(3)
    assert set(again) == set(first)


def test_allocate_whole_range_uses_fallback_and_terminates() -> None:
    alloc = PortAllocator(40000, 40999, seeded(5))
    ports = alloc.allocate(1000)
    assert sorted(ports) == list(range(40000, 41000))


def test_exhausted_allocation_takes_nothing() -> None:
    alloc = PortAllocator(100, 104, seeded())
    alloc.allocate(3)
    with pytest.raises(PortsExhaustedError):
        alloc.allocate(3)
    assert alloc.free_count == 2
    assert isinstance(PortsExhaustedError("x"), LocalProtocolError)


def test_release_is_idempotent_and_ignores_unknown_ports() -> None:
    alloc = PortAllocator(100, 109, seeded())
    ports = alloc.allocate(2)
    alloc.release(ports)
    alloc.release(ports)
    alloc.release([1, 65535])
    assert alloc.in_use == frozenset()


def test_allocate_zero_and_negative() -> None:
    alloc = PortAllocator(100, 109, seeded())
    assert alloc.allocate(0) == []
    with pytest.raises(ValueError):
        alloc.allocate(-1)


@pytest.mark.parametrize(("first", "last"), [(0, 10), (10, 9), (65530, 65536), (-1, 5)])
def test_bad_ranges(first: int, last: int) -> None:
    with pytest.raises(ValueError):
        PortAllocator(first, last, seeded())


def test_single_port_range_and_membership() -> None:
    alloc = PortAllocator(5000, 5000, seeded())
    assert alloc.allocate(1) == [5000]
    assert 5000 in alloc
    assert 5001 not in alloc
    assert "5000" not in alloc


def test_allocation_is_uniform() -> None:
    """Chi-square over 6000 single draws from 6 ports (seeded, so not flaky)."""
    rng = seeded(99)
    counts: collections.Counter[int] = collections.Counter()
    draws = 6000
    for _ in range(draws):
        alloc = PortAllocator(1, 6, rng)
        counts[alloc.allocate(1)[0]] += 1
    expected = draws / 6
    chi2 = sum((counts[p] - expected) ** 2 / expected for p in range(1, 7))
    assert chi2 < 20.5  # p = 0.001 at 5 degrees of freedom


def test_allocation_uniform_among_free_ports() -> None:
    rng = seeded(7)
    counts: collections.Counter[int] = collections.Counter()
    for _ in range(3000):
        alloc = PortAllocator(1, 4, rng)
        taken = alloc.allocate(2)
        counts.update(taken)
    assert set(counts) == {1, 2, 3, 4}
    assert min(counts.values()) > 1300  # each port taken in ~1500 of 3000 pairs


def test_roll_rejects_biased_draws() -> None:
    """A draw at the top of the 32-bit space is rejected, not folded by modulo."""
    draws = iter([b"\xff\xff\xff\xff", (7).to_bytes(4, "big")])
    alloc = PortAllocator(1, 3, lambda n: next(draws))
    assert alloc.allocate(1) == [1 + 7 % 3]


@settings(max_examples=60, deadline=None)
@given(
    first=st.integers(1, 65000),
    size=st.integers(1, 200),
    seed=st.integers(0, 2**32),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 20)), max_size=30),
)
def test_allocator_invariants(
    first: int, size: int, seed: int, ops: list[tuple[bool, int]]
) -> None:
    last = min(65535, first + size - 1)
    alloc = PortAllocator(first, last, seeded(seed))
    held: list[int] = []
    for is_alloc, n in ops:
        if is_alloc:
            if n > alloc.free_count:
                with pytest.raises(PortsExhaustedError):
                    alloc.allocate(n)
            else:
                got = alloc.allocate(n)
                assert len(set(got)) == n
                assert set(got).isdisjoint(held)
                held.extend(got)
        else:
            back, held = held[:n], held[n:]
            alloc.release(back)
        assert alloc.in_use == frozenset(held)
        assert all(first <= p <= last for p in held)
        assert alloc.free_count == alloc.size - len(held)


# -- minutes_left ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refresh", "elapsed", "expected"),
    [
        (2, 0.0, 2),
        (2, 59.999, 2),
        (2, 60.0, 1),  # spec 4: ValidMin 2 right after a refresh, 1 a minute later
        (2, 119.9, 1),
        (2, 120.0, 0),
        (5, 299.0, 1),
        (3, 1000.0, 0),  # overdue refresh: clamped, not wrapped like uint32
        (1, -5.0, 1),  # clock went backwards: never more than refresh
    ],
)
def test_minutes_left(refresh: int, elapsed: float, expected: int) -> None:
    assert minutes_left(refresh, 1000.0, 1000.0 + elapsed) == expected


# -- PortRotation ---------------------------------------------------------------------


def make(
    first: int = 10000, last: int = 10011, refresh: int = 3, concurrency: int = 2, seed: int = 1
) -> PortRotation:
    return PortRotation(
        first_port=first,
        last_port=last,
        refresh_min=refresh,
        concurrency=concurrency,
        rng=seeded(seed),
    )


def test_first_generation_opens_at_start() -> None:
    rot = make()
    assert rot.state is RotationState.NEW
    assert rot.get_timer() is None
    rot.start(100.0)
    assert rot.get_timer() == 100.0
    rot.handle_timer(100.0)
    (event,) = drain(rot)
    assert isinstance(event, GenerationOpened)
    gen = event.generation
    assert gen.number == 0
    assert gen.created_at == 100.0
    assert gen.closes_at == 100.0 + 6 * MINUTE
    assert len(gen.ports) == 2
    assert event.requested == 2
    assert rot.current == gen
    assert rot.last_refresh == 100.0
    assert rot.next_refresh == 100.0 + 3 * MINUTE
    assert rot.get_timer() == 100.0 + 3 * MINUTE
    assert rot.allocator.in_use == frozenset(gen.ports)


def test_timeline_two_generations_listen_at_steady_state() -> None:
    """Spec 6: at kR gen(k-2) closes and gen k opens; 2 x concurrency ports at steady state."""
    refresh, conc = 2, 2
    rot = make(first=21100, last=21111, refresh=refresh, concurrency=conc)
    rot.start(0.0)
    opened: list[Generation] = []
    for k in range(6):
        now = k * refresh * MINUTE
        assert rot.get_timer() == now
        rot.handle_timer(now)
        events = drain(rot)
        closes = [e for e in events if isinstance(e, GenerationClosed)]
        opens = [e for e in events if isinstance(e, GenerationOpened)]
        # Expiry is reported before the refresh due at the same instant.
        assert events == closes + opens
        assert [e.generation.number for e in opens] == [k]
        if k >= 2:
            assert [e.generation for e in closes] == [opened[k - 2]]
        else:
            assert closes == []
        opened.append(opens[0].generation)
        live = rot.generations
        assert [g.number for g in live] == list(range(max(0, k - 1), k + 1))
        assert len(rot.allocator.in_use) == conc * len(live)
        assert rot.allocator.in_use == frozenset(p for g in live for p in g.ports)


def test_nothing_happens_between_deadlines() -> None:
    rot = make(refresh=3)
    rot.start(0.0)
    rot.handle_timer(0.0)
    drain(rot)
    rot.handle_timer(3 * MINUTE - 0.001)
    assert drain(rot) == []
    assert rot.next_event() is None


def test_late_refresh_drifts_like_4_34() -> None:
    rot = make(refresh=1)
    rot.start(0.0)
    rot.handle_timer(0.0)
    drain(rot)
    rot.handle_timer(61.5)  # the task woke 1.5 s late
    (opened,) = drain(rot)
    assert opened.generation.created_at == 61.5
    assert rot.next_refresh == 121.5
    # gen 0 closes at 120 (2 x refresh after creation), before the next refresh at 121.5
    assert rot.get_timer() == 120.0
    rot.handle_timer(120.0)
    (closed,) = drain(rot)
    assert isinstance(closed, GenerationClosed)
    assert closed.generation.number == 0


def test_minutes_left_follows_last_refresh() -> None:
    rot = make(refresh=3)
    assert rot.minutes_left(0.0) == 0
    rot.start(0.0)
    rot.handle_timer(0.0)
    assert rot.minutes_left(0.0) == 3
    assert rot.minutes_left(59.0) == 3
    assert rot.minutes_left(60.0) == 2
    assert rot.minutes_left(179.0) == 1
    rot.handle_timer(180.0)
    assert rot.minutes_left(180.0) == 3


def test_pick_uses_current_generation() -> None:
    rot = make()
    assert rot.pick(0) is None
    rot.start(0.0)
    rot.handle_timer(0.0)
    gen0 = rot.current
    assert gen0 is not None
    assert {rot.pick(i) for i in range(10)} == set(gen0.ports)
    rot.handle_timer(3 * MINUTE)
    gen1 = rot.current
    assert gen1 is not None and gen1.number == 1
    assert {rot.pick(i) for i in range(10)} == set(gen1.ports)


def test_port_failed_releases_and_shrinks_generation() -> None:
    rot = make(concurrency=3)
    rot.start(0.0)
    rot.handle_timer(0.0)
    drain(rot)
    gen = rot.current
    assert gen is not None
    bad = gen.ports[1]
    rot.port_failed(bad)
    current = rot.current
    assert current is not None
    assert bad not in current.ports
    assert len(current.ports) == 2
    assert bad not in rot.allocator.in_use
    rot.port_failed(bad)  # unknown now: ignored
    rot.port_failed(1)
    assert len(rot.allocator.in_use) == 2


def test_all_ports_failed_gives_no_pick() -> None:
    rot = make(concurrency=2)
    rot.start(0.0)
    rot.handle_timer(0.0)
    gen = rot.current
    assert gen is not None
    for port in gen.ports:
        rot.port_failed(port)
    assert rot.pick(5) is None
    assert rot.allocator.in_use == frozenset()


def test_short_range_opens_fewer_ports_instead_of_livelock() -> None:
    """Spec 2.4: range 4, concurrency 3 livelocks 4.34; we open what is free."""
    rot = make(first=30000, last=30003, refresh=1, concurrency=3)
    assert not rot.well_sized
    rot.start(0.0)
    rot.handle_timer(0.0)
    (e0,) = drain(rot)
    assert isinstance(e0, GenerationOpened)
    assert len(e0.generation.ports) == 3
    rot.handle_timer(MINUTE)
    (e1,) = drain(rot)
    assert isinstance(e1, GenerationOpened)
    assert len(e1.generation.ports) == 1
    assert e1.requested == 3
    rot.handle_timer(2 * MINUTE)  # gen 0 closes first, so gen 2 gets 3 ports
    e2 = drain(rot)
    assert [type(e) for e in e2] == [GenerationClosed, GenerationOpened]
    assert len(e2[1].generation.ports) == 3
    assert rot.allocator.free_count == 0
    rot.handle_timer(3 * MINUTE)
    e3 = drain(rot)
    assert len(e3[1].generation.ports) == 1  # gen 1's single port came back


def test_well_sized() -> None:
    assert make(first=1, last=6, concurrency=2).well_sized
    assert not make(first=1, last=5, concurrency=2).well_sized


@pytest.mark.parametrize(
    ("refresh", "concurrency", "first", "last"),
    [(0, 2, 1, 10), (-1, 2, 1, 10), (1, 0, 1, 10), (1, 10, 1, 10), (1, 11, 1, 10), (1, 1, 5, 4)],
)
def test_rotation_rejects_bad_settings(
    refresh: int, concurrency: int, first: int, last: int
) -> None:
    with pytest.raises(ValueError):
        make(first=first, last=last, refresh=refresh, concurrency=concurrency)


def test_state_machine_misuse() -> None:
    rot = make()
    with pytest.raises(LocalProtocolError):
        rot.handle_timer(0.0)
    rot.start(0.0)
    with pytest.raises(LocalProtocolError):
        rot.start(1.0)
    rot.handle_timer(0.0)
    rot.close()
    assert rot.state is RotationState.CLOSED
    assert rot.allocator.in_use == frozenset()
    assert rot.generations == ()
    assert rot.get_timer() is None
    assert rot.next_refresh is None
    assert rot.next_event() is None  # pending events are dropped
    rot.handle_timer(1000.0)  # no-op
    assert rot.next_event() is None
    with pytest.raises(LocalProtocolError):
        rot.start(2.0)
    rot.close()


def test_close_before_start() -> None:
    rot = make()
    rot.close()
    assert rot.get_timer() is None


def test_current_is_none_when_newest_generation_expired() -> None:
    """If refreshes stall (task blocked), the newest generation can still expire."""
    rot = make(refresh=1)
    rot.start(0.0)
    rot.handle_timer(0.0)
    drain(rot)
    # Jump past gen 0's lifetime: it closes, and the overdue refresh opens gen 1.
    rot.handle_timer(10 * MINUTE)
    events = drain(rot)
    assert [type(e) for e in events] == [GenerationClosed, GenerationOpened]
    current = rot.current
    assert current is not None and current.number == 1


@settings(max_examples=40, deadline=None)
@given(
    refresh=st.integers(1, 5),
    concurrency=st.integers(1, 4),
    extra=st.integers(0, 12),
    seed=st.integers(0, 2**32),
    jitter=st.lists(st.floats(0.0, 5.0), min_size=1, max_size=25),
)
def test_rotation_invariants(
    refresh: int, concurrency: int, extra: int, seed: int, jitter: list[float]
) -> None:
    """Driving the timer (late by up to 5 s each time) keeps ports consistent and never spins."""
    size = concurrency + 1 + extra
    rot = make(
        first=50000, last=50000 + size - 1, refresh=refresh, concurrency=concurrency, seed=seed
    )
    rot.start(0.0)
    now = 0.0
    live: dict[int, tuple[int, ...]] = {}
    for late in jitter:
        timer = rot.get_timer()
        assert timer is not None
        now = max(now, timer) + late
        rot.handle_timer(now)
        for event in drain(rot):
            if isinstance(event, GenerationClosed):
                assert event.generation.closes_at <= now
                del live[event.generation.number]
            else:
                assert isinstance(event, GenerationOpened)
                gen = event.generation
                assert len(gen.ports) == min(concurrency, size - sum(map(len, live.values())))
                live[gen.number] = gen.ports
        held = [p for ports in live.values() for p in ports]
        assert len(held) == len(set(held))
        assert rot.allocator.in_use == frozenset(held)
        assert len(live) <= 2
        assert all(g.closes_at > now for g in rot.generations)
