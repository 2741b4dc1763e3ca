"""5,000 concurrent bulk connections through socks → vmess (AEAD, aes-128-gcm) → vmess →
freedom → an echo server: every connection completes, every byte comes back as sent, and
neither v2py process keeps a descriptor once the connections are gone.

The v2py sides run as their own ``v2py run`` processes, not in-process: with 5,000
connections one process would hold six descriptors per connection (30,000) and the whole
chain would share one core.  Each process here holds two per connection.

Connections are set up a bounded number at a time (so no listen backlog on the way
overflows), each proven end to end by a one-byte echo; then all of them send their
pattern at once and read it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.support.configs import vmess_client_config, vmess_server_config
from tests.support.servers import TcpEchoServer, fd_count, run_v2py_process
from tests.support.socks import socks5_connect
from tests.support.v2ray import free_ports

CONNECTIONS = 5000
SIZE = 64 * 1024
#: connections being set up at once (v2py listens with a backlog of 1024)
SETUP_PARALLEL = 256
SETUP_TIMEOUT_S = 20.0
TRANSFER_TIMEOUT_S = 60.0
#: descriptors this process holds per connection (its socks end and the echo server's end)
#: and besides them (pytest, the loop, listeners)
FDS_PER_CONNECTION = 2
FDS_SPARE = 256
#: descriptors a proxy process may hold above its baseline once everything is closed, and
#: how long it gets to close them
FD_TOLERANCE = 2
FD_SETTLE_S = 10.0
#: patterns are slices of one random block, at an offset keyed by the connection, so bytes
#: delivered on the wrong connection do not compare equal
BLOCK = os.urandom(1 << 20)


def _pattern(index: int) -> bytes:
    offset = (index * 7919) % (len(BLOCK) - SIZE)
    return BLOCK[offset : offset + SIZE]


def _raise_fd_limit(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"{CONNECTIONS} connections need {need} open files; the hard limit is {hard}")
    if soft != resource.RLIM_INFINITY and soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@pytest.fixture
def fd_limit() -> Iterator[None]:
    """This process's soft open-files limit raised for the test, restored afterwards."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    _raise_fd_limit(FDS_PER_CONNECTION * CONNECTIONS + FDS_SPARE)
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, before)  # type: ignore[misc]


async def _wait_fds(pids: dict[str, int | str], baseline: dict[str, int]) -> dict[str, int]:
    deadline = time.monotonic() + FD_SETTLE_S
    while True:
        now = {name: fd_count(pid) for name, pid in pids.items()}
        if all(now[n] <= baseline[n] + FD_TOLERANCE for n in now):
            return now
        if time.monotonic() > deadline:
            return now
        await asyncio.sleep(0.1)


class _Tally:
    def __init__(self) -> None:
        self.established = 0
        self.completed = 0
        self.verified = 0
        self.failures: list[str] = []


async def _many_echoes(socks_port: int, echo_port: int) -> _Tally:
    tally = _Tally()
    setup = asyncio.Semaphore(SETUP_PARALLEL)
    go = asyncio.Event()
    left = CONNECTIONS

    def setup_finished() -> None:
        nonlocal left
        left -= 1
        if left == 0:
            go.set()

    async def one(index: int) -> None:
        data = _pattern(index)
        writer = None
        stage = "setup"
        try:
            try:
                async with setup, asyncio.timeout(SETUP_TIMEOUT_S):
                    reader, writer = await socks5_connect(socks_port, "127.0.0.1", echo_port)
                    writer.write(data[:1])
                    if await reader.readexactly(1) != data[:1]:
                        raise ConnectionError("first byte came back different")
                tally.established += 1
            finally:
                setup_finished()
            stage = "transfer"
            async with asyncio.timeout(TRANSFER_TIMEOUT_S):
                await go.wait()
                writer.write(data[1:])
                echoed = await reader.readexactly(SIZE - 1)
            if echoed != data[1:]:
                pairs = zip(echoed, data[1:], strict=True)
                first = next(i for i, (got, sent) in enumerate(pairs) if got != sent)
                tally.failures.append(f"#{index}: echo differs at byte {first + 1}")
                return
            tally.completed += 1
            tally.verified += SIZE
        except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
            tally.failures.append(f"#{index} in {stage}: {type(exc).__name__}: {exc}")
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError, TimeoutError):
                    async with asyncio.timeout(5):
                        await writer.wait_closed()

    await asyncio.gather(*(one(i) for i in range(CONNECTIONS)))
    return tally


async def _check_many(socks_port: int, echo: TcpEchoServer, pids: dict[str, int | str]) -> None:
    # one connection first: whatever a process opens lazily on its first use (resolver,
    # executor) is part of its baseline, not a leak
    tally = await _one_echo(socks_port, echo)
    assert tally.completed == 1, tally.failures
    baseline = {name: fd_count(pid) for name, pid in pids.items()}

    started = time.monotonic()
    tally = await _many_echoes(socks_port, echo.port)
    took = time.monotonic() - started

    assert not tally.failures, f"{len(tally.failures)} failed, first: {tally.failures[:5]}"
    assert tally.established == tally.completed == CONNECTIONS
    assert tally.verified == CONNECTIONS * SIZE
    after = await _wait_fds(pids, baseline)
    leaked = {n: (baseline[n], after[n]) for n in after if after[n] > baseline[n] + FD_TOLERANCE}
    assert not leaked, f"descriptors (before, after) not back within {FD_SETTLE_S}s: {leaked}"
    assert echo.open == 0
    print(f"{CONNECTIONS} x {SIZE} B echoed in {took:.1f}s; fds {baseline} -> {after}")


async def _one_echo(socks_port: int, echo: TcpEchoServer) -> _Tally:
    tally = _Tally()
    async with asyncio.timeout(SETUP_TIMEOUT_S):
        reader, writer = await socks5_connect(socks_port, "127.0.0.1", echo.port)
        writer.write(_pattern(0))
        if await reader.readexactly(SIZE) == _pattern(0):
            tally.completed = 1
        writer.close()
        await writer.wait_closed()
        while echo.open:
            await asyncio.sleep(0.05)
    return tally


@contextlib.asynccontextmanager
async def _v2py_chain() -> AsyncIterator[tuple[int, dict[str, int | str]]]:
    socks_port, vmess_port = free_ports(2)
    user = str(uuid.uuid4())
    server_cfg = vmess_server_config(vmess_port, user, 0)
    client_cfg = vmess_client_config(socks_port, vmess_port, user, 0, "aes-128-gcm")
    async with (
        run_v2py_process(server_cfg, wait_tcp=vmess_port) as server,
        run_v2py_process(client_cfg, wait_tcp=socks_port) as client,
    ):
        yield socks_port, {"client": client.pid, "server": server.pid, "test": "self"}


async def test_5000_concurrent_bulk_connections(fd_limit: None) -> None:
    async with asyncio.timeout(150), TcpEchoServer() as echo, _v2py_chain() as (socks, pids):
        await _check_many(socks, echo, pids)
