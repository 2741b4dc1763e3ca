"""DynamicInbound shell: real loopback listeners, fake proxies, an injected clock.

No test here sleeps for a refresh: ``FakeClock.advance`` moves time and waits
until the refresh task has acted and gone back to sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.support.fakes import FakeClock
from tests.support.ports import free_port_range
from v2py.app.dynamic import DynamicInbound, LoopClock
from v2py.app.session import Session
from v2py.transport.stream import Stream

MINUTE = 60.0
WAIT_S = 5.0
#: The fake proxies never dispatch; any object stands in for the dispatcher.
DISPATCHER = object()


class EchoProxy:
    """A stand-in inbound proxy: echoes bytes and records its life cycle."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.started = False
        self.closed = False
        self.sessions: list[Session] = []
        self.users: dict[str, str] = {}

    async def start(self, dispatcher: Any) -> None:
        self.started = True

    def close(self) -> None:
        self.closed = True

    def get_or_create_user(self, email: str) -> str:
        return self.users.setdefault(email, f"user-{self.number}-{email}")

    async def handle(self, session: Session, stream: Stream, dispatcher: Any) -> None:
        self.sessions.append(session)
        while data := await stream.read():
            stream.write(data)
            await stream.drain()
        stream.write_eof()


class Factory:
    def __init__(self) -> None:
        self.made: list[EchoProxy] = []

    def __call__(self, generation: int = 0, port: int = 0) -> EchoProxy:
        proxy = EchoProxy(len(self.made))
        self.made.append(proxy)
        return proxy


def cycling_rng(values: list[int]) -> Callable[[int], bytes]:
    """An rng whose successive 4-byte draws are ``values`` (then repeats)."""
    state = {"i": 0}

    def rng(n: int) -> bytes:
        value = values[state["i"] % len(values)]
        state["i"] += 1
        return value.to_bytes(n, "big")

    return rng


async def roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    async with asyncio.timeout(WAIT_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(payload)
            writer.write_eof()
            return await reader.read()
        finally:
            writer.close()


async def refused(port: int) -> bool:
    try:
        async with asyncio.timeout(WAIT_S):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    return False


@contextlib.asynccontextmanager
async def running(inbound: DynamicInbound) -> AsyncIterator[DynamicInbound]:
    await inbound.start(DISPATCHER)  # type: ignore[arg-type]
    try:
        yield inbound
    finally:
        async with asyncio.timeout(WAIT_S * 2):
            await inbound.close()


def make(
    factory: Factory,
    clock: FakeClock,
    *,
    size: int = 8,
    refresh: int = 2,
    concurrency: int = 2,
    rng: Callable[[int], bytes] | None = None,
    first: int | None = None,
) -> DynamicInbound:
    if first is None:
        first, _ = free_port_range(size)
    return DynamicInbound(
        tag="dyn",
        proxy_factory=factory,
        listen_host="127.0.0.1",
        first_port=first,
        last_port=first + size - 1,
        refresh_min=refresh,
        concurrency=concurrency,
        rng=rng or random.Random(3).randbytes,
        clock=clock,
    )


async def test_start_opens_first_generation() -> None:
    factory, clock = Factory(), FakeClock()
    inbound = make(factory, clock)
    assert inbound.get_random_worker(0) is None
    async with running(inbound):
        ports = inbound.current_ports
        assert len(ports) == 2
        assert inbound.listening_ports == frozenset(ports)
        first = inbound.rotation.allocator.first
        assert all(first <= p < first + 8 for p in ports)
        # Each port has its own, started proxy instance.
        assert len(factory.made) == 2
        assert all(p.started and not p.closed for p in factory.made)
        for port in ports:
            assert await roundtrip(port, b"hello") == b"hello"
        served = {s.inbound_tag for p in factory.made for s in p.sessions}
        assert served == {"dyn"}
        assert all(len(p.sessions) == 1 for p in factory.made)
        stats = inbound.statistics()
        assert (stats.generations_opened, stats.generations_closed, stats.ports_opened) == (1, 0, 2)
        assert dict(stats.accepted_by_port) == {p: 1 for p in ports}


async def test_get_random_worker_and_minutes_left() -> None:
    factory, clock = Factory(), FakeClock()
    async with running(make(factory, clock, refresh=3)) as inbound:
        seen = set()
        for i in range(8):
            worker = inbound.get_random_worker(i)
            assert worker is not None
            proxy, port, minutes = worker
            assert minutes == 3
            assert proxy in factory.made
            assert port in inbound.current_ports
            seen.add(port)
        assert seen == set(inbound.current_ports)
        await clock.advance(MINUTE)
        worker = inbound.get_random_worker(0)
        assert worker is not None and worker[2] == 2
        await clock.advance(MINUTE + 59)
        worker = inbound.get_random_worker(0)
        assert worker is not None and worker[2] == 1
        # the same proxy instance keeps one user per email; different ports differ
        p0, _, _ = inbound.get_random_worker(0) or (None, 0, 0)
        p1, _, _ = inbound.get_random_worker(1) or (None, 0, 0)
        assert p0 is not p1
        assert p0.get_or_create_user("a@x") == p0.get_or_create_user("a@x")  # type: ignore[union-attr]
        assert p0.get_or_create_user("a@x") != p1.get_or_create_user("a@x")  # type: ignore[union-attr]


async def test_rotation_with_injected_clock() -> None:
    factory, clock = Factory(), FakeClock()
    async with running(make(factory, clock, size=8, refresh=2, concurrency=2)) as inbound:
        await clock.wait_sleeping()
        gen0 = set(inbound.current_ports)
        assert clock.next_deadline == clock.now + 2 * MINUTE

        await clock.advance(2 * MINUTE)  # gen 1 opens; gen 0 keeps listening
        gen1 = set(inbound.current_ports)
        assert gen0.isdisjoint(gen1)
        assert inbound.listening_ports == gen0 | gen1
        for port in gen0 | gen1:
            assert await roundtrip(port) == b"ping"
        assert not any(p.closed for p in factory.made)

        await clock.advance(2 * MINUTE)  # gen 0 closes, gen 2 opens
        gen2 = set(inbound.current_ports)
        assert inbound.listening_ports == gen1 | gen2
        assert gen1.isdisjoint(gen2)
        for port in gen0 - gen2:
            assert await refused(port)
        for port in gen1 | gen2:
            assert await roundtrip(port) == b"ping"
        assert [p.closed for p in factory.made] == [True, True, False, False, False, False]
        assert inbound.rotation.allocator.in_use == frozenset(gen1 | gen2)
        stats = inbound.statistics()
        assert (stats.generations_opened, stats.generations_closed) == (3, 1)


async def test_closed_generation_keeps_established_connections() -> None:
    factory, clock = Factory(), FakeClock()
    inbound = make(factory, clock, size=8, refresh=1, concurrency=1)
    async with running(inbound):
        (port,) = inbound.current_ports
        async with asyncio.timeout(WAIT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"before")
            assert await reader.readexactly(6) == b"before"

        await clock.advance(MINUTE)
        await clock.advance(MINUTE)  # the port's generation is now closed
        assert port not in inbound.listening_ports
        assert await refused(port) or port in inbound.current_ports
        assert factory.made[0].closed
        assert inbound.statistics().draining_listeners == 1

        async with asyncio.timeout(WAIT_S):
            writer.write(b"after")
            assert await reader.readexactly(5) == b"after"
            writer.write_eof()
            assert await reader.read() == b""
        writer.close()
        async with asyncio.timeout(WAIT_S):
            while inbound.statistics().draining_listeners:
                await asyncio.sleep(0.01)  # the watcher ends when the connection does


async def test_close_cancels_draining_connections() -> None:
    factory, clock = Factory(), FakeClock()
    inbound = make(factory, clock, size=8, refresh=1, concurrency=1)
    await inbound.start(DISPATCHER)  # type: ignore[arg-type]
    (port,) = inbound.current_ports
    async with asyncio.timeout(WAIT_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
    await clock.advance(2 * MINUTE)
    assert inbound.statistics().draining_listeners == 1
    async with asyncio.timeout(WAIT_S * 2):
        await inbound.close()
        assert await reader.read() == b""  # closed by us
    writer.close()
    assert inbound.listening_ports == frozenset()
    assert inbound.current_ports == ()
    assert inbound.get_random_worker(0) is None
    assert inbound.rotation.allocator.in_use == frozenset()
    assert inbound.statistics().draining_listeners == 0
    assert all(p.closed for p in factory.made)


async def test_bind_failure_skips_and_releases_port(caplog: pytest.LogCaptureFixture) -> None:
    first, last = free_port_range(8)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", first + 1))
    blocker.listen()
    factory, clock = Factory(), FakeClock()
    # Draws: offsets 1 (blocked), 4 -> generation 0 = {first+1, first+4}.
    inbound = make(factory, clock, first=first, size=8, concurrency=2, rng=cycling_rng([1, 4]))
    try:
        with caplog.at_level(logging.INFO, logger="v2py.app.dynamic"):
            async with running(inbound):
                assert inbound.current_ports == (first + 4,)
                assert inbound.rotation.allocator.in_use == frozenset({first + 4})
                stats = inbound.statistics()
                assert stats.bind_failures == 1
                assert stats.ports_opened == 1
                assert factory.made[0].closed  # the instance for the failed port
                worker = inbound.get_random_worker(7)
                assert worker is not None and worker[1] == first + 4
                # Released, so a later generation may try it again: it binds once free.
                blocker.close()
                await clock.advance(2 * MINUTE)
                assert first + 1 in inbound.current_ports
    finally:
        blocker.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("cannot listen" in m and str(first + 1) in m for m in messages)
    assert any("has 1 of 2 ports" in m for m in messages)


async def test_generation_with_no_ports_gives_no_worker() -> None:
    first, _ = free_port_range(4)
    blockers = []
    try:
        for port in (first, first + 1):
            s = socket.socket()
            s.bind(("127.0.0.1", port))
            s.listen()
            blockers.append(s)
        clock = FakeClock()
        inbound = make(
            Factory(), clock, first=first, size=4, concurrency=2, rng=cycling_rng([0, 1])
        )
        async with running(inbound):
            assert inbound.current_ports == ()
            assert inbound.get_random_worker(3) is None
    finally:
        for s in blockers:
            s.close()


async def test_info_logs_on_allocation_and_rotation(caplog: pytest.LogCaptureFixture) -> None:
    factory, clock = Factory(), FakeClock()
    with caplog.at_level(logging.INFO, logger="v2py.app.dynamic"):
        async with running(make(factory, clock, refresh=1, concurrency=2)) as inbound:
            gen0 = inbound.current_ports
            await clock.advance(MINUTE)
            await clock.advance(MINUTE)
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    opened = [m for m in messages if "listening on tcp" in m]
    closed = [m for m in messages if "closed ports" in m]
    assert len(opened) == 3
    assert opened[0].startswith("inbound dyn: generation 0")
    assert all(str(p) in opened[0] for p in gen0)
    assert closed and closed[0].startswith("inbound dyn: generation 0 closed")


async def test_late_wakeup_catches_up() -> None:
    """The task wakes once after a long stall: overdue closes and the refresh happen together."""
    factory, clock = Factory(), FakeClock()
    async with running(make(factory, clock, size=10, refresh=1, concurrency=2)) as inbound:
        await clock.advance(10 * MINUTE)
        assert len(inbound.listening_ports) == 2  # gen 0 expired; only gen 1 remains
        assert inbound.statistics().generations_opened == 2
        worker = inbound.get_random_worker(0)
        assert worker is not None and worker[2] == 1


@pytest.mark.parametrize(("concurrency", "refresh"), [(8, 1), (0, 1), (2, 0)])
def test_bad_settings_raise(concurrency: int, refresh: int) -> None:
    with pytest.raises(ValueError):
        DynamicInbound(
            tag="dyn",
            proxy_factory=Factory(),
            listen_host="127.0.0.1",
            first_port=30000,
            last_port=30007,
            refresh_min=refresh,
            concurrency=concurrency,
        )


def test_short_range_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="v2py.app.dynamic"):
        DynamicInbound(
            tag="dyn",
            proxy_factory=Factory(),
            listen_host="127.0.0.1",
            first_port=30000,
            last_port=30004,
            refresh_min=1,
            concurrency=2,
        )
    assert any("3 x concurrency" in r.getMessage() for r in caplog.records)


class FakeListener:
    def __init__(self) -> None:
        self.closed = False
        self.stopped = False

    def close(self) -> None:
        self.closed = True

    def stop_accepting(self) -> None:
        self.stopped = True

    async def wait_closed(self) -> None:
        return None


async def test_kcp_generation_close_closes_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    """mKCP sessions share the listener's UDP socket, so closing a generation closes it."""
    made: list[tuple[str, int, Any, FakeListener]] = []

    kcp_settings = object()

    class FakeKcpTransport:
        name = "kcp"
        listener_ends_sessions = True

        async def listen(
            self, host: str, port: int, handler: Any, *, reuse_port: bool = False
        ) -> FakeListener:
            listener = FakeListener()
            made.append((self.name, port, kcp_settings, listener))
            return listener

    clock = FakeClock()
    inbound = DynamicInbound(
        tag="dyn",
        proxy_factory=Factory(),
        listen_host="127.0.0.1",
        first_port=40000,
        last_port=40009,
        refresh_min=1,
        concurrency=2,
        transport=FakeKcpTransport(),  # type: ignore[arg-type]
        clock=clock,
    )
    async with running(inbound):
        assert [(n, k) for n, _, k, _ in made] == [("kcp", kcp_settings)] * 2
        await clock.advance(2 * MINUTE)
        gen0 = [m[3] for m in made[:2]]
        assert all(lst.closed and not lst.stopped for lst in gen0)
        assert inbound.statistics().draining_listeners == 0


async def test_loop_clock_sleeps_until_deadline() -> None:
    clock = LoopClock()
    start = clock.time()
    await clock.sleep_until(start + 0.02)
    assert clock.time() >= start + 0.02
    await clock.sleep_until(start - 1.0)  # past deadlines return at once


async def test_start_twice_is_an_error() -> None:
    from v2py.errors import LocalProtocolError

    clock = FakeClock()
    async with running(make(Factory(), clock)) as inbound:
        with pytest.raises(LocalProtocolError):
            await inbound.start(DISPATCHER)  # type: ignore[arg-type]
