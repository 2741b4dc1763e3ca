"""This process's census (asyncio tasks, sockets, descriptors) and a bounded wait for it to
get back to a baseline: for tests that run v2py in-process and check it leaks nothing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass

#: How long a process gets to return to its baseline.
SETTLE_S = 10.0


@dataclass(frozen=True)
class Census:
    tasks: int
    sockets: int
    fds: int

    @classmethod
    def take(cls) -> Census:
        fds = os.listdir("/proc/self/fd")
        sockets = 0
        for fd in fds:
            with contextlib.suppress(OSError):
                sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        return cls(tasks=len(asyncio.all_tasks()), sockets=sockets, fds=len(fds))

    def within(self, baseline: Census) -> bool:
        return (
            self.tasks <= baseline.tasks
            and self.sockets <= baseline.sockets
            and self.fds <= baseline.fds
        )


async def back_to(baseline: Census, what: str, timeout: float = SETTLE_S) -> float:
    """Wait until the census is back at ``baseline``; return how long it took."""
    start = time.monotonic()
    while True:
        now = Census.take()
        if now.within(baseline):
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: {now} not back to {baseline} after {timeout}s")
        await asyncio.sleep(0.05)
