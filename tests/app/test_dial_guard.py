"""app/dial_guard.py: the client is watched while an outbound dials, as 4.34's inbound
keeps copying and timing it (its bytes are kept and replayed, its end or silence ends
the dial after downlinkOnly / connIdle), in push mode (TCP) and read mode (others)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from v2py.app.dial_guard import ClientGone, dial_watching
from v2py.app.policy import Timeouts
from v2py.transport.stream import READ_CHUNK_BYTES, Stream
from v2py.transport.tcp import TcpStream, dial_tcp, listen_tcp

TIMEOUT_S = 5.0


@contextlib.asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[TcpStream, TcpStream]]:
    """(server side, client side) of one loopback TCP connection."""
    accepted: asyncio.Queue[TcpStream] = asyncio.Queue()
    done = asyncio.Event()

    async def handler(stream: TcpStream) -> None:
        await accepted.put(stream)
        await done.wait()

    listener = await listen_tcp("127.0.0.1", 0, handler)
    client = await dial_tcp("127.0.0.1", listener.port)
    server = await accepted.get()
    try:
        yield server, client
    finally:
        done.set()
        client.close()
        server.close()
        listener.close()


class QueueStream:
    """A non-push stream reading from a queue (b"" = EOF)."""

    can_push = False
    peer = None
    local = None

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = False

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        return await self.queue.get()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass

    async def drain(self) -> None:
        pass

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    async def wait_closed(self) -> None:
        pass


async def read_all(stream: Stream) -> bytes:
    out = b""
    while data := await stream.read():
        out += data
    return out


def timeouts(
    conn_idle: float = 30.0, downlink_only: float = 0.2, buffer: int = 1 << 20
) -> Timeouts:
    return Timeouts(conn_idle=conn_idle, downlink_only=downlink_only, buffer_size=buffer)


async def test_fast_dial_hands_the_client_over_untouched() -> None:
    async with tcp_pair() as (server, client):

        async def dial() -> str:
            return "remote"

        result, stream = await dial_watching(server, dial, timeouts())
        assert result == "remote" and stream is server


@pytest.mark.parametrize("mode", ["push", "read"])
async def test_bytes_sent_while_dialing_come_first_and_the_end_after(mode: str) -> None:
    gate = asyncio.Event()

    async def dial() -> str:
        await gate.wait()
        return "remote"

    async with asyncio.timeout(TIMEOUT_S), tcp_pair() as (server, client):
        source: Stream
        if mode == "push":
            source = server
        else:
            source = fake = QueueStream()
        watching = asyncio.create_task(dial_watching(source, dial, timeouts(downlink_only=5.0)))
        await asyncio.sleep(0.05)
        if mode == "push":
            client.write(b"early ")
            client.write(b"bytes")
            client.write_eof()
        else:
            for part in (b"early ", b"bytes", b""):
                fake.queue.put_nowait(part)
        await asyncio.sleep(0.05)
        gate.set()
        result, stream = await watching
        assert result == "remote"
        assert await read_all(stream) == b"early bytes"


@pytest.mark.parametrize("mode", ["push", "read"])
async def test_client_end_abandons_the_dial_after_downlink_only(mode: str) -> None:
    cancelled = asyncio.Event()

    async def dial() -> str:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()
        return "never"

    async with asyncio.timeout(TIMEOUT_S), tcp_pair() as (server, client):
        source: Stream = server if mode == "push" else QueueStream()
        loop = asyncio.get_running_loop()
        watching = asyncio.create_task(dial_watching(source, dial, timeouts(downlink_only=0.2)))
        await asyncio.sleep(0.05)
        ended = loop.time()
        if mode == "push":
            client.close()
        else:
            source.queue.put_nowait(b"")  # type: ignore[attr-defined]
        with pytest.raises(ClientGone, match="ended"):
            await watching
        assert 0.15 <= loop.time() - ended < 2.0
        assert cancelled.is_set()


async def test_silent_client_abandons_the_dial_after_conn_idle_and_bytes_reset_it() -> None:
    async def dial() -> str:
        await asyncio.Event().wait()
        return "never"

    async with asyncio.timeout(TIMEOUT_S), tcp_pair() as (server, client):
        loop = asyncio.get_running_loop()
        started = loop.time()
        watching = asyncio.create_task(dial_watching(server, dial, timeouts(conn_idle=0.4)))
        await asyncio.sleep(0.3)
        client.write(b"still here")  # activity: the idle deadline moves
        with pytest.raises(ClientGone, match="silent"):
            await watching
        assert 0.6 <= loop.time() - started < 2.0


async def test_dial_errors_propagate_and_the_client_is_left_readable() -> None:
    async def dial() -> str:
        await asyncio.sleep(0.05)
        raise ConnectionRefusedError("refused")

    async with asyncio.timeout(TIMEOUT_S), tcp_pair() as (server, client):
        client.write(b"data")
        with pytest.raises(ConnectionRefusedError):
            await dial_watching(server, dial, timeouts())
        client.write(b" more")
        client.write_eof()
        # the watch stopped: what the client sends is still there to read
        got = await read_all(server)
        assert got.endswith(b" more")


async def test_full_buffer_stops_reading_the_client() -> None:
    gate = asyncio.Event()

    async def dial() -> str:
        await gate.wait()
        return "remote"

    async with asyncio.timeout(TIMEOUT_S), tcp_pair() as (server, client):
        watching = asyncio.create_task(dial_watching(server, dial, timeouts(buffer=1000)))
        payload = bytes(range(256)) * 400
        client.write(payload)
        client.write_eof()
        await asyncio.sleep(0.1)
        gate.set()
        _, stream = await watching
        assert await read_all(stream) == payload


async def test_cancel_cancels_the_dial_and_discards_nothing_unfinished() -> None:
    discarded: list[str] = []
    started = asyncio.Event()

    async def dial() -> str:
        started.set()
        await asyncio.Event().wait()
        return "never"

    async with asyncio.timeout(TIMEOUT_S), tcp_pair() as (server, _):
        watching = asyncio.create_task(
            dial_watching(server, dial, timeouts(), discard=discarded.append)
        )
        await started.wait()
        watching.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watching
        assert discarded == []


async def test_the_dial_starts_in_the_callers_step() -> None:
    """No task or loop iteration of its own before the dial's first syscall (issue 16:
    one event-loop hop less per connection on each outbound)."""
    started: list[bool] = []

    async def dial() -> str:
        started.append(True)
        return "dialled"

    async with asyncio.timeout(TIMEOUT_S), tcp_pair() as (server, _):
        watching = asyncio.create_task(dial_watching(server, dial, timeouts()))
        await asyncio.sleep(0)  # the watching task's first step runs before this resumes
        assert started == [True]
        result, stream = await watching
        assert result == "dialled" and stream is server


class FailingStream(QueueStream):
    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        await asyncio.sleep(0.05)
        raise ConnectionResetError("client broke its framing")


@pytest.mark.parametrize("dial_time", [0.2, None])
async def test_client_read_error_is_raised_and_ends_the_dial(dial_time: float | None) -> None:
    """4.34: the request copy's error ends the connection at once (a header layer's 404
    probe answer depends on it): raised while dialing (the dial is cancelled) or when the
    dial finishes (its result is discarded)."""
    cancelled = asyncio.Event()
    discarded: list[str] = []

    async def dial() -> str:
        try:
            if dial_time is None:
                await asyncio.Event().wait()
            await asyncio.sleep(dial_time or 0)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "remote"

    async with asyncio.timeout(TIMEOUT_S):
        with pytest.raises(ConnectionResetError, match="framing"):
            await dial_watching(
                FailingStream(), dial, timeouts(downlink_only=30.0), discard=discarded.append
            )
    if dial_time is None:
        assert cancelled.is_set() and not discarded
    else:
        assert cancelled.is_set() or discarded == ["remote"]
