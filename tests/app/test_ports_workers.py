"""The pure parts that let worker processes agree on dynamic ports without talking:
``derived_rng`` streams and ``PortRotation`` on a fixed grid with per-generation rngs."""

from __future__ import annotations

from v2py.app.ports import GenerationClosed, GenerationOpened, PortRotation, derived_rng

SEED = bytes(range(32))
REFRESH_MIN = 2
STEP_S = REFRESH_MIN * 60.0
ORIGIN = 1000.0


def test_derived_rng_is_a_deterministic_stream() -> None:
    a, b = derived_rng(SEED, b"x"), derived_rng(SEED, b"x")
    assert [a(5), a(40), a(1)] == [b(5), b(40), b(1)]
    whole = derived_rng(SEED, b"x")(46)
    again = derived_rng(SEED, b"x")
    assert again(5) + again(40) + again(1) == whole  # split points do not matter
    assert derived_rng(SEED, b"y")(16) != derived_rng(SEED, b"x")(16)
    assert derived_rng(bytes(32), b"x")(16) != derived_rng(SEED, b"x")(16)


def _rotation() -> PortRotation:
    return PortRotation(
        first_port=20000,
        last_port=20011,
        refresh_min=REFRESH_MIN,
        concurrency=3,
        rng=lambda n: bytes(n),  # never used: every generation has its own rng
        generation_rng=lambda k: derived_rng(SEED, b"ports\0%d" % k),
        schedule_origin=ORIGIN,
    )


def _drive(rotation: PortRotation, start: float, until: float) -> list[tuple[str, int, float]]:
    """Run the timer loop from ``start`` with a late-firing timer (0.7 s + jitter)."""
    out: list[tuple[str, int, float]] = []
    rotation.start(start)
    now = start
    while (deadline := rotation.get_timer()) is not None and deadline <= until:
        now = max(now, deadline + 0.7 + (deadline % 0.3))
        rotation.handle_timer(now)
        while (event := rotation.next_event()) is not None:
            kind = "open" if isinstance(event, GenerationOpened) else "close"
            out.append((kind, event.generation.number, event.generation.created_at))
            assert isinstance(event, GenerationOpened | GenerationClosed)
    return out


def test_workers_starting_apart_agree_on_grid_and_ports() -> None:
    a, b = _rotation(), _rotation()
    events_a = _drive(a, ORIGIN + 0.2, ORIGIN + 10 * STEP_S)
    events_b = _drive(b, ORIGIN + 1.9, ORIGIN + 10 * STEP_S)
    assert events_a == events_b
    opened = [(n, t) for kind, n, t in events_a if kind == "open"]
    assert opened == [(k, ORIGIN + k * STEP_S) for k in range(11)]
    assert [g.ports for g in a.generations] == [g.ports for g in b.generations]
    assert a.last_refresh == b.last_refresh == ORIGIN + 10 * STEP_S
    assert a.minutes_left(ORIGIN + 10 * STEP_S + 61) == REFRESH_MIN - 1


def test_a_late_worker_skips_to_the_current_grid_slot() -> None:
    early, late = _rotation(), _rotation()
    _drive(early, ORIGIN, ORIGIN + 3 * STEP_S)
    late.start(ORIGIN + 3 * STEP_S + 5)  # started (or stalled) three refreshes late
    late.handle_timer(ORIGIN + 3 * STEP_S + 5)
    assert late.current is not None and early.current is not None
    assert late.current.number == early.current.number == 3
    assert late.current.created_at == early.current.created_at
    assert late.next_refresh == early.next_refresh == ORIGIN + 4 * STEP_S
    # (Its ports may differ: the early worker's draw avoided generation 2's ports,
    # which the late one never opened. A documented limit of --workers.)
