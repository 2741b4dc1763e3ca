"""Fakes for shell tests: a clock that only moves when told to."""

from __future__ import annotations

import asyncio

#: Bound on waiting for the code under test to go back to sleep.
WAIT_S = 5.0


class FakeClock:
    """A clock whose time only moves in :meth:`advance` (explicit time for the shell)."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self._registrations = 0
        self._registered = asyncio.Event()

    def time(self) -> float:
        return self.now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self.now:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()
        entry = (deadline, fut)
        self._sleepers.append(entry)
        self._registrations += 1
        self._registered.set()
        try:
            await fut
        finally:
            self._sleepers.remove(entry)

    @property
    def next_deadline(self) -> float | None:
        pending = [d for d, f in self._sleepers if not f.done()]
        return min(pending) if pending else None

    async def wait_sleeping(self, count: int = 1) -> None:
        """Wait until ``count`` sleep_until calls have registered in total."""
        async with asyncio.timeout(WAIT_S):
            while self._registrations < count:
                self._registered.clear()
                await self._registered.wait()

    async def advance(self, seconds: float) -> None:
        """Move time forward; wake due sleepers; wait until each has slept again."""
        await self.wait_sleeping(1)
        self.now += seconds
        woken = 0
        for deadline, fut in list(self._sleepers):
            if deadline <= self.now and not fut.done():
                fut.set_result(None)
                woken += 1
        await self.wait_sleeping(self._registrations + woken)
