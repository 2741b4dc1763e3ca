"""The relay over real loopback TCP, in both copy modes (push and task), same semantics.

Chain in every test: client socket -> [TcpListener: stream A] =relay= [dial: stream B]
-> target socket.  ``push`` runs the relay's push path (both streams can push);
``task`` hides push so the read/write/drain loops run. ``ends=True`` makes both
streams say ``relays_end`` (as a proxy layer does: VMess, Mux.Cool, a chain link), so
a direction's end is passed on; bare TCP streams never get it (4.34 never half-closes).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from v2py.app.policy import Timeouts
from v2py.app.relay import relay
from v2py.transport.tcp import TcpListener, TcpStream, dial_tcp

STEP_S = 5.0  # bound on every await


class PullOnly:
    """A stream wrapper without push mode (forces the task relay)."""

    def __init__(self, inner: TcpStream) -> None:
        self._inner = inner
        self.relays_end = inner.relays_end

    async def read(self, max_bytes: int = 65536) -> bytes:
        return await self._inner.read(max_bytes)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._inner.write(data)

    async def drain(self) -> None:
        await self._inner.drain()

    def write_eof(self) -> None:
        self._inner.write_eof()

    def close(self) -> None:
        self._inner.close()

    async def wait_closed(self) -> None:
        await self._inner.wait_closed()

    @property
    def peer(self) -> tuple[str, int] | None:
        return self._inner.peer

    @property
    def local(self) -> tuple[str, int] | None:
        return self._inner.local


@dataclass
class Chain:
    client_r: asyncio.StreamReader
    client_w: asyncio.StreamWriter
    target_r: asyncio.StreamReader
    target_w: asyncio.StreamWriter
    result: asyncio.Future[bool]
    inbound: TcpStream


@contextlib.asynccontextmanager
async def _chain(mode: str, timeouts: Timeouts, *, ends: bool = False) -> AsyncIterator[Chain]:
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
        loop.create_future()
    )

    async def on_target(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.set_result((r, w))

    target = await asyncio.start_server(on_target, "127.0.0.1", 0)
    target_port = target.sockets[0].getsockname()[1]
    result: asyncio.Future[bool] = loop.create_future()
    inbound_seen: asyncio.Future[TcpStream] = loop.create_future()

    async def handler(stream: TcpStream) -> None:
        inbound_seen.set_result(stream)
        remote = await dial_tcp("127.0.0.1", target_port, timeout=STEP_S)
        if ends:
            stream.relays_end = remote.relays_end = True
        a: object = stream if mode == "push" else PullOnly(stream)
        b: object = remote if mode == "push" else PullOnly(remote)
        try:
            result.set_result(await relay(a, b, timeouts))  # type: ignore[arg-type]
        except asyncio.CancelledError:
            result.cancel()  # torn down with the relay still running
            raise
        except Exception as exc:
            result.set_exception(exc)
        finally:
            remote.close()

    listener = TcpListener(handler)
    await listener.start("127.0.0.1", 0)
    client_r, client_w = await asyncio.open_connection("127.0.0.1", listener.port)
    target_r, target_w = await asyncio.wait_for(accepted, STEP_S)
    inbound = await asyncio.wait_for(inbound_seen, STEP_S)
    try:
        yield Chain(client_r, client_w, target_r, target_w, result, inbound)
    finally:
        client_w.close()
        target_w.close()
        listener.close()
        await asyncio.wait_for(listener.wait_closed(), STEP_S)
        target.close()
        await asyncio.wait_for(target.wait_closed(), STEP_S)


MODES = ["push", "task"]


@pytest.mark.parametrize("mode", MODES)
async def test_bytes_both_ways_and_half_close(mode: str) -> None:
    async with _chain(mode, Timeouts(), ends=True) as c:
        up = os.urandom(3 * 1024 * 1024 + 17)
        c.client_w.write(up)
        c.client_w.write_eof()
        got = await asyncio.wait_for(c.target_r.readexactly(len(up)), STEP_S)
        assert got == up
        assert await asyncio.wait_for(c.target_r.read(), STEP_S) == b""  # EOF passed on
        down = os.urandom(1024 * 1024 + 3)
        c.target_w.write(down)
        c.target_w.write_eof()
        assert await asyncio.wait_for(c.client_r.readexactly(len(down)), STEP_S) == down
        assert await asyncio.wait_for(c.client_r.read(), STEP_S) == b""
        assert await asyncio.wait_for(c.result, STEP_S) is True


@pytest.mark.parametrize("mode", MODES)
async def test_transport_end_not_passed_on(mode: str) -> None:
    """The client half-closes: the target gets no end, the other direction goes on,
    and the relay ends (closing both) once downlinkOnly passes without traffic."""
    async with _chain(mode, Timeouts(downlink_only=0.5)) as c:
        c.client_w.write(b"request")
        c.client_w.write_eof()
        assert await asyncio.wait_for(c.target_r.readexactly(7), STEP_S) == b"request"
        for _ in range(3):  # traffic keeps the relay going past downlinkOnly
            await asyncio.sleep(0.2)
            c.target_w.write(b"more")
            assert await asyncio.wait_for(c.client_r.readexactly(4), STEP_S) == b"more"
        assert not c.target_r.at_eof()
        assert await asyncio.wait_for(c.result, STEP_S) is False  # the timer ended it
        assert await asyncio.wait_for(c.target_r.read(), STEP_S) == b""
        assert await asyncio.wait_for(c.client_r.read(), STEP_S) == b""


@pytest.mark.parametrize("mode", MODES)
async def test_backpressure_bounds_buffering_then_everything_arrives(mode: str) -> None:
    async with _chain(mode, Timeouts()) as c:
        total = 64 * 1024 * 1024
        block = os.urandom(256 * 1024)
        digest = hashlib.sha256()
        sent = 0

        async def pump() -> None:
            nonlocal sent
            while sent < total:
                c.client_w.write(block)
                digest.update(block)
                sent += len(block)
                await c.client_w.drain()
            c.client_w.write_eof()

        writer = asyncio.ensure_future(pump())
        # The target reads nothing: the client must get stuck well short of the total
        # (kernel buffers plus the relay's high-water marks, not the whole 64 MiB).
        for _ in range(50):
            before = sent
            await asyncio.sleep(0.02)
            if sent == before and sent > 0:
                break
        assert not writer.done()
        assert sent < total // 2
        received = hashlib.sha256()
        n = 0
        while n < total:
            data = await asyncio.wait_for(c.target_r.read(1 << 20), STEP_S)
            assert data
            received.update(data)
            n += len(data)
        await asyncio.wait_for(writer, STEP_S)
        assert n == total and received.digest() == digest.digest()


@pytest.mark.parametrize("mode", MODES)
async def test_target_reset_ends_the_relay(mode: str) -> None:
    async with _chain(mode, Timeouts()) as c:
        c.client_w.write(b"hello")
        assert await asyncio.wait_for(c.target_r.readexactly(5), STEP_S) == b"hello"
        c.target_w.transport.abort()  # RST
        # A write towards the dead target fails; the relay ends (error or both ends).
        for _ in range(20):
            if c.result.done():
                break
            c.client_w.write(b"x" * 65536)
            await asyncio.sleep(0.02)
        with pytest.raises((ConnectionError, OSError)):
            ok = await asyncio.wait_for(c.result, STEP_S)
            raise ConnectionResetError(f"relay ended normally: {ok}")


@pytest.mark.parametrize("mode", MODES)
async def test_idle_timeout_returns_false(mode: str) -> None:
    async with _chain(mode, Timeouts(conn_idle=0.2)) as c:
        c.client_w.write(b"ping")
        assert await asyncio.wait_for(c.target_r.readexactly(4), STEP_S) == b"ping"
        assert await asyncio.wait_for(c.result, STEP_S) is False


async def test_push_mode_delivers_bytes_buffered_before_the_relay_started() -> None:
    """Data that arrived while the handler was still dialling is pushed first, in order."""
    async with _chain("push", Timeouts()) as c:
        c.client_w.write(b"late")
        assert await asyncio.wait_for(c.target_r.readexactly(4), STEP_S) == b"late"
        assert c.inbound.can_push
