"""The push relay's turns and per-iteration budget (``app/relay.py``), with fake push
streams so every pause, resume and write is seen: over-budget arrivals wait for a later
iteration in order, small ones never wait, an end never overtakes held data, and one
source yields after ``TURN_BYTES``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from v2py.app import relay as relay_mod
from v2py.app.policy import Timeouts
from v2py.transport.stream import PushTarget


class FakePush:
    """A push stream: the test calls ``target.pushed_*``; writes are recorded."""

    can_push = True

    def __init__(self) -> None:
        self.target: PushTarget | None = None
        self.paused = False
        self.pauses = 0
        self.written: list[bytes] = []
        self.eof = False
        self.write_paused = False
        self._writable: Callable[[BaseException | None], None] | None = None

    # source side
    def start_push(self, target: PushTarget) -> None:
        self.target = target

    def stop_push(self) -> None:
        self.target = None

    def pause_push(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_push(self) -> None:
        self.paused = False

    # destination side
    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.eof, "write after write_eof"
        self.written.append(bytes(data))

    def write_eof(self) -> None:
        self.eof = True

    def when_writable(self, callback: Callable[[BaseException | None], None]) -> None:
        self._writable = callback

    async def read(self, max_bytes: int = 65536) -> bytes:  # pragma: no cover - unused
        raise AssertionError

    async def drain(self) -> None:  # pragma: no cover - unused
        pass

    def close(self) -> None:
        pass


async def _ticks(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def _start(
    pairs: int,
) -> tuple[list[tuple[FakePush, FakePush]], list[asyncio.Task[bool]]]:
    streams = [(FakePush(), FakePush()) for _ in range(pairs)]
    tasks = [
        asyncio.ensure_future(relay_mod.relay(a, b, Timeouts()))  # type: ignore[arg-type]
        for a, b in streams
    ]
    await _ticks()
    assert all(a.target is not None and b.target is not None for a, b in streams)
    return streams, tasks


async def _finish(
    streams: list[tuple[FakePush, FakePush]], tasks: list[asyncio.Task[bool]]
) -> None:
    for a, b in streams:
        for s in (a, b):
            if s.target is not None:
                s.target.pushed_eof()
    await _ticks(10)
    for a, b in streams:
        for s in (a, b):
            if s.target is not None:  # ended while held: released by the next tick
                s.target.pushed_eof()
    async with asyncio.timeout(5):
        assert all(await asyncio.gather(*tasks))


async def test_over_budget_arrivals_wait_for_later_iterations_in_order() -> None:
    chunk = 256 * 1024
    per_tick = relay_mod.TICK_BYTES // chunk
    streams, tasks = await _start(3 * per_tick)
    sources = [a for a, _ in streams]
    for i, src in enumerate(sources):
        assert src.target is not None
        src.target.pushed_data(bytes([i]) * chunk)
    delivered = [len(b.written) for _, b in streams]
    assert sum(delivered) == per_tick  # the rest is held, its sources paused
    held = [a for (a, b) in streams if not b.written]
    assert all(a.paused for a in held)
    order = [i for i, (_, b) in enumerate(streams) if b.written]
    for _ in range(10):
        await asyncio.sleep(0)
        before = len(order)
        for i, (_, b) in enumerate(streams):
            if b.written and i not in order:
                order.append(i)
        assert len(order) - before <= per_tick  # never more than one budget per iteration
    assert order == list(range(len(streams)))  # oldest first
    assert all(b.written == [bytes([i]) * chunk] for i, (_, b) in enumerate(streams))
    await _finish(streams, tasks)


async def test_small_arrivals_never_wait() -> None:
    streams, tasks = await _start(2)
    (a, b), (c, d) = streams
    assert a.target is not None and c.target is not None
    a.target.pushed_data(b"x" * relay_mod.TICK_BYTES)  # spends this iteration's budget
    c.target.pushed_data(b"ping")
    assert d.written == [b"ping"] and not c.paused
    await _finish(streams, tasks)


async def test_end_does_not_overtake_held_data() -> None:
    streams, tasks = await _start(2)
    (a, b), (c, d) = streams
    assert a.target is not None and c.target is not None
    a.target.pushed_data(b"a" * relay_mod.TICK_BYTES)
    c.target.pushed_data(b"c" * 100_000)  # held
    c.target.pushed_eof()
    assert d.written == [] and not d.eof
    await _ticks()
    assert d.written == [b"c" * 100_000] and d.eof
    await _finish(streams, tasks)


async def test_one_source_yields_after_a_turn() -> None:
    streams, tasks = await _start(1)
    ((a, b),) = streams
    assert a.target is not None
    a.target.pushed_data(b"x" * (relay_mod.TURN_BYTES // 2))
    assert not a.paused
    a.target.pushed_data(b"x" * (relay_mod.TURN_BYTES // 2))
    assert a.paused  # the rest of the loop runs before this source is read again
    await _ticks()
    assert not a.paused
    await _finish(streams, tasks)
