"""Many concurrent bulk echoes through a chain's socks inbound, every byte checked, and
the chain's processes back to their descriptor baseline afterwards.

Connections are set up ``setup_parallel`` at a time (so no listen backlog on the way
overflows), each proven end to end by a one-byte echo; then all send their pattern at
once and read it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from dataclasses import dataclass, field

import pytest

from tests.support.servers import TcpEchoServer, fd_count
from tests.support.socks import socks5_connect

#: descriptors a proxy process may hold above its baseline once everything is closed,
#: and how long it gets to close them
FD_TOLERANCE = 2
FD_SETTLE_S = 10.0
#: patterns are slices of one random block at an offset keyed by the connection, so bytes
#: delivered on the wrong connection do not compare equal
_BLOCK = os.urandom(1 << 20)


def pattern(index: int, size: int) -> bytes:
    offset = (index * 7919) % (len(_BLOCK) - size)
    return _BLOCK[offset : offset + size]


def raise_fd_limit(need: int, what: str) -> None:
    """Raise this process's soft open-files limit; skip when the hard one is below ``need``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"{what} need {need} open files; the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class Plan:
    connections: int
    size: int = 64 * 1024
    setup_parallel: int = 256
    setup_timeout: float = 20.0
    transfer_timeout: float = 60.0


@dataclass
class Tally:
    established: int = 0
    completed: int = 0
    verified: int = 0
    failures: list[str] = field(default_factory=list)


async def many_echoes(socks_port: int, echo_port: int, plan: Plan) -> Tally:
    """All of ``plan.connections`` set up, then all transferring at once."""
    tally = Tally()
    setup = asyncio.Semaphore(plan.setup_parallel)
    go = asyncio.Event()
    left = plan.connections
    size = plan.size

    def setup_finished() -> None:
        nonlocal left
        left -= 1
        if left == 0:
            go.set()

    async def one(index: int) -> None:
        data = pattern(index, size)
        writer = None
        stage = "setup"
        try:
            try:
                async with setup, asyncio.timeout(plan.setup_timeout):
                    reader, writer = await socks5_connect(socks_port, "127.0.0.1", echo_port)
                    writer.write(data[:1])
                    if await reader.readexactly(1) != data[:1]:
                        raise ConnectionError("first byte came back different")
                tally.established += 1
            finally:
                setup_finished()
            stage = "transfer"
            async with asyncio.timeout(plan.transfer_timeout):
                await go.wait()
                writer.write(data[1:])
                echoed = await reader.readexactly(size - 1)
            if echoed != data[1:]:
                pairs = zip(echoed, data[1:], strict=True)
                first = next(i for i, (got, sent) in enumerate(pairs) if got != sent)
                tally.failures.append(f"#{index}: echo differs at byte {first + 1}")
                return
            tally.completed += 1
            tally.verified += size
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            tally.failures.append(f"#{index} in {stage}: {type(exc).__name__}: {exc}")
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError, TimeoutError):
                    async with asyncio.timeout(5):
                        await writer.wait_closed()

    await asyncio.gather(*(one(i) for i in range(plan.connections)))
    return tally


async def _one_echo(socks_port: int, echo: TcpEchoServer, plan: Plan) -> bool:
    async with asyncio.timeout(plan.setup_timeout):
        reader, writer = await socks5_connect(socks_port, "127.0.0.1", echo.port)
        data = pattern(0, plan.size)
        writer.write(data)
        ok = await reader.readexactly(plan.size) == data
        writer.close()
        await writer.wait_closed()
        while echo.open:
            await asyncio.sleep(0.05)
    return ok


async def _wait_fds(pids: dict[str, int | str], baseline: dict[str, int]) -> dict[str, int]:
    deadline = time.monotonic() + FD_SETTLE_S
    while True:
        now = {name: fd_count(pid) for name, pid in pids.items()}
        if all(now[n] <= baseline[n] + FD_TOLERANCE for n in now):
            return now
        if time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.1)


async def check_many(
    socks_port: int, echo: TcpEchoServer, pids: dict[str, int | str], plan: Plan
) -> None:
    """Assert: every connection completes with every byte as sent, and the processes
    in ``pids`` (``"self"`` for this one) are back at their descriptor baseline."""
    # one connection first: what a process opens lazily on first use (resolver,
    # executor) is part of its baseline, not a leak
    assert await _one_echo(socks_port, echo, plan)
    baseline = {name: fd_count(pid) for name, pid in pids.items()}

    started = time.monotonic()
    tally = await many_echoes(socks_port, echo.port, plan)
    took = time.monotonic() - started

    assert not tally.failures, f"{len(tally.failures)} failed, first: {tally.failures[:5]}"
    assert tally.established == tally.completed == plan.connections
    assert tally.verified == plan.connections * plan.size
    after = await _wait_fds(pids, baseline)
    leaked = {n: (baseline[n], after[n]) for n in after if after[n] > baseline[n] + FD_TOLERANCE}
    assert not leaked, f"descriptors (before, after) not back within {FD_SETTLE_S}s: {leaked}"
    deadline = time.monotonic() + FD_SETTLE_S  # the echo side closes once it sees the end
    while echo.open and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert echo.open == 0, f"{echo.open} echo connections still open after {FD_SETTLE_S}s"
    print(f"{plan.connections} x {plan.size} B echoed in {took:.1f}s; fds {baseline} -> {after}")
