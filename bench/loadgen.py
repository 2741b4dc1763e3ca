"""Load generator: a sink/source TCP server and SOCKS5 CONNECT clients (asyncio, buffered
protocols so that the bench itself costs as little CPU per byte as possible).

Every connection through the chain starts with a 13-byte request header to the sink::

    op (1 byte) | id (4 bytes, big endian) | length (8 bytes, big endian)

op ``U``: upload; the sink counts ``length`` bytes (readable live by id) then answers ``K``.
op ``D``: download; the sink sends ``length`` bytes.
op ``P``: ping; the header is padded to 64 bytes, the sink answers 64 bytes (and keeps the
          connection open until the client closes it: also used for idle connections).
op ``E``: echo; the sink answers one byte ``R`` (so the client knows every hop is connected),
          then returns every byte it receives until the client closes.  The many-connections
          phase sends ``length`` bytes of a pattern keyed by the id and checks the echo.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import struct
import time
from dataclasses import dataclass, field

HEADER = struct.Struct(">cIQ")
PING_SIZE = 64
CHUNK = 1 << 20
RECV_BUF = 256 * 1024
PAYLOAD = memoryview(os.urandom(CHUNK))
_ids = itertools.count(1)
# One receive buffer for every connection: asyncio and uvloop call buffer_updated() right
# after the recv_into() of get_buffer(), and _Peer copies or counts the bytes before it
# returns, so nothing reads the buffer later.  Per-connection buffers would cost the bench
# 512 KiB per connection (both ends) with thousands of connections open.
_RECV = memoryview(bytearray(RECV_BUF))


class _Peer(asyncio.BufferedProtocol):
    """A TCP endpoint that either collects bytes (small messages) or just counts them."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._view = _RECV
        self.collected = bytearray()
        self.counting = False
        self.count = 0
        self.count_target: int | None = None
        # verifying mode: incoming bytes are compared with ``expected`` as they arrive
        self.expected: memoryview | None = None
        self.verified = 0
        self.mismatch_at: int | None = None
        self.eof = False
        self.closed = asyncio.get_running_loop().create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._want = 0
        self._can_write = asyncio.Event()
        self._can_write.set()

    # -- asyncio callbacks --------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.transport.set_write_buffer_limits(high=4 * CHUNK, low=CHUNK)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        if self.expected is not None:
            self._verify(self._view[:nbytes])
        elif self.counting:
            self.count += nbytes
            self.on_counted(nbytes)
        else:
            self.collected += self._view[:nbytes]
            self.on_collected()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._can_write.set()
        if not self.closed.done():
            self.closed.set_result(None)
        self._wake()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # -- hooks for subclasses ------------------------------------------------------
    def on_collected(self) -> None:
        pass

    def on_counted(self, nbytes: int) -> None:
        pass

    # -- helpers ------------------------------------------------------------------
    def _verify(self, data: memoryview | bytes) -> None:
        assert self.expected is not None
        pos = self.verified
        want = self.expected[pos : pos + len(data)]
        if self.mismatch_at is None and (len(want) < len(data) or want != data):
            self.mismatch_at = pos
        self.verified = pos + len(data)

    def _wake(self) -> None:
        w = self._waiter
        if w is None or w.done():
            return
        if (
            self.eof
            or (self.expected is not None and self.verified >= len(self.expected))
            or (self.counting and self.count_target is not None and self.count >= self.count_target)
            or (not self.counting and len(self.collected) >= self._want)
        ):
            w.set_result(None)

    async def read_exactly(self, n: int) -> bytes:
        self.counting = False
        while len(self.collected) < n:
            if self.eof:
                raise ConnectionError(f"connection closed after {len(self.collected)}/{n} bytes")
            self._want = n
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        out = bytes(self.collected[:n])
        del self.collected[:n]
        return out

    async def count_until(self, target: int) -> None:
        """Count incoming bytes until ``target`` in total (or EOF)."""
        self.counting = True
        self.count += len(self.collected)
        self.collected.clear()
        self.count_target = target
        while self.count < target and not self.eof:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    async def verify_until_complete(self, expected: memoryview) -> None:
        """Compare incoming bytes with ``expected`` until that many arrived (or EOF).

        Call before sending whatever makes the peer answer; ``verified`` and
        ``mismatch_at`` tell the outcome.
        """
        self.expected = expected
        if self.collected:
            early = bytes(self.collected)
            self.collected.clear()
            self._verify(early)
        while self.verified < len(expected) and not self.eof:
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter

    async def write(self, data: bytes | memoryview) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("connection closed while writing")
        self.transport.write(data)
        await self._can_write.wait()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


# ---------------------------------------------------------------------------------
# the sink / source server
# ---------------------------------------------------------------------------------
class _SinkConn(_Peer):
    def __init__(self, server: SinkServer) -> None:
        super().__init__()
        self.server = server
        self.op = b""
        self.id = 0
        self.length = 0
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.server.conns.discard(self)
        self.server.uploads.pop(self.id, None)

    def on_collected(self) -> None:
        if self.op or len(self.collected) < HEADER.size:
            return
        op, self.id, self.length = HEADER.unpack_from(self.collected)
        self.op = op
        if op == b"U":
            rest = len(self.collected) - HEADER.size
            self.collected.clear()
            self.counting = True
            self.server.uploads[self.id] = self
            self.count = rest
            self.on_counted(0)
        elif op == b"D":
            del self.collected[: HEADER.size]
            self._task = asyncio.get_running_loop().create_task(self._send(self.length))
        elif op == b"P":
            self._task = asyncio.get_running_loop().create_task(self._pong())
        elif op == b"E" and self.transport is not None:
            self.transport.write(b"R" + bytes(self.collected[HEADER.size :]))
            self.collected.clear()
        else:
            self.abort()

    def buffer_updated(self, nbytes: int) -> None:
        if self.op == b"E":
            if self.transport is not None:
                # a copy: the receive buffer is shared, and a transport may keep what it
                # could not send right away
                self.transport.write(bytes(self._view[:nbytes]))
            return
        super().buffer_updated(nbytes)

    def on_counted(self, nbytes: int) -> None:
        if self.op == b"U" and self.count >= self.length and self.transport is not None:
            self.transport.write(b"K")
            self.op = b"u"  # answered once

    async def _send(self, length: int) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            sent = 0
            while sent < length and not self.eof:
                n = min(CHUNK, length - sent)
                await self.write(PAYLOAD[:n])
                sent += n

    async def _pong(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await self.read_exactly(PING_SIZE)
            await self.write(PAYLOAD[:PING_SIZE])


class SinkServer:
    def __init__(self) -> None:
        self.uploads: dict[int, _SinkConn] = {}
        self.conns: set[_SinkConn] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: _SinkConn(self), "127.0.0.1", 0, backlog=4096
        )
        self.port = self.server.sockets[0].getsockname()[1]

    def received(self, conn_id: int) -> int:
        c = self.uploads.get(conn_id)
        return c.count if c is not None else 0

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for c in list(self.conns):
            c.abort()
        if self.server is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await self.server.wait_closed()


# ---------------------------------------------------------------------------------
# SOCKS5 client side
# ---------------------------------------------------------------------------------
async def socks_connect(socks_port: int, dest_port: int) -> _Peer:
    """TCP to the chain's SOCKS inbound and a CONNECT to 127.0.0.1:dest_port."""
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_connection(_Peer, "127.0.0.1", socks_port)
    try:
        await peer.write(b"\x05\x01\x00")
        reply = await peer.read_exactly(2)
        if reply != b"\x05\x00":
            raise ConnectionError(f"socks greeting refused: {reply!r}")
        await peer.write(b"\x05\x01\x00\x01\x7f\x00\x00\x01" + dest_port.to_bytes(2, "big"))
        head = await peer.read_exactly(4)
        if head[1] != 0:
            raise ConnectionError(f"socks CONNECT failed with reply code {head[1]}")
        atyp = head[3]
        rest = {1: 4 + 2, 4: 16 + 2}.get(atyp)
        if rest is None:
            n = (await peer.read_exactly(1))[0]
            rest = n + 2
        await peer.read_exactly(rest)
    except BaseException:
        peer.abort()
        raise
    return peer


def _header(op: bytes, conn_id: int, length: int) -> bytes:
    return HEADER.pack(op, conn_id, length)


async def ping_once(peer: _Peer) -> float:
    """One 64-byte request/response over an established connection; returns seconds."""
    t0 = time.perf_counter()
    req = _header(b"P", next(_ids), 0)
    await peer.write(req + bytes(PING_SIZE - len(req)))
    await peer.read_exactly(PING_SIZE)
    return time.perf_counter() - t0


@dataclass
class BulkResult:
    bytes: int
    seconds: float
    capped: bool  # stopped by the time cap before moving everything

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0


async def bulk_upload(socks_port: int, sink: SinkServer, size: int, cap: float) -> BulkResult:
    peer = await socks_connect(socks_port, sink.port)
    conn_id = next(_ids)
    try:
        t0 = time.perf_counter()
        await peer.write(_header(b"U", conn_id, size))
        done = asyncio.ensure_future(peer.read_exactly(1))

        async def pump() -> None:
            sent = 0
            while sent < size:
                n = min(CHUNK, size - sent)
                await peer.write(PAYLOAD[:n])
                sent += n

        pumper = asyncio.ensure_future(pump())
        try:
            await asyncio.wait_for(asyncio.shield(done), cap)
            elapsed = time.perf_counter() - t0
            return BulkResult(size, elapsed, False)
        except TimeoutError:
            elapsed = time.perf_counter() - t0
            return BulkResult(sink.received(conn_id), elapsed, True)
        finally:
            for t in (pumper, done):
                t.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.gather(pumper, done, return_exceptions=True)
    finally:
        peer.abort()


async def bulk_download(socks_port: int, sink: SinkServer, size: int, cap: float) -> BulkResult:
    peer = await socks_connect(socks_port, sink.port)
    try:
        t0 = time.perf_counter()
        await peer.write(_header(b"D", next(_ids), size))
        try:
            await asyncio.wait_for(peer.count_until(size), cap)
        except TimeoutError:
            return BulkResult(peer.count, time.perf_counter() - t0, True)
        elapsed = time.perf_counter() - t0
        if peer.count < size:
            raise ConnectionError(f"download closed early after {peer.count}/{size} bytes")
        return BulkResult(size, elapsed, False)
    finally:
        peer.abort()


@dataclass
class ConnRateResult:
    connections: int
    errors: int
    seconds: float
    total_lat: list[float] = field(repr=False)  # connect + socks + exchange
    exchange_lat: list[float] = field(repr=False)  # 64-byte request/response only
    first_error: str | None = None

    @property
    def per_s(self) -> float:
        return self.connections / self.seconds if self.seconds > 0 else 0.0


async def conn_rate(
    socks_port: int, sink: SinkServer, workers: int, duration: float, op_timeout: float = 5.0
) -> ConnRateResult:
    """``workers`` loops of connect + SOCKS CONNECT + one 64-byte exchange + close.

    Runs for exactly ``duration``: connections still in flight then are abandoned and not
    counted, so one stalled connection cannot stretch the denominator.
    """
    total: list[float] = []
    exch: list[float] = []
    errors = 0
    first_error: str | None = None

    async def worker() -> None:
        nonlocal errors, first_error
        while True:
            t0 = time.perf_counter()
            peer = None
            try:
                async with asyncio.timeout(op_timeout):
                    peer = await socks_connect(socks_port, sink.port)
                    e = await ping_once(peer)
                total.append(time.perf_counter() - t0)
                exch.append(e)
            except (OSError, ConnectionError, TimeoutError) as exc:
                errors += 1
                if first_error is None:
                    first_error = _describe(exc, op_timeout)
                await asyncio.sleep(0.01)
            finally:
                if peer is not None:
                    peer.close()

    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
    try:
        done, _ = await asyncio.wait(tasks, timeout=duration)
        for t in done:  # a worker only ends by a bug: surface it
            t.result()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    elapsed = time.perf_counter() - t0
    return ConnRateResult(len(total), errors, elapsed, total, exch, first_error)


async def open_idle(
    socks_port: int, sink: SinkServer, count: int, parallel: int = 32, op_timeout: float = 10.0
) -> tuple[list[_Peer], int, str | None]:
    """Open ``count`` connections end to end (one ping each, so the far side is connected)."""
    peers: list[_Peer] = []
    errors = 0
    first_error: str | None = None
    sem = asyncio.Semaphore(parallel)

    async def one() -> None:
        nonlocal errors, first_error
        async with sem:
            try:
                async with asyncio.timeout(op_timeout):
                    peer = await socks_connect(socks_port, sink.port)
                    try:
                        await ping_once(peer)
                    except BaseException:
                        peer.abort()
                        raise
                peers.append(peer)
            except (OSError, ConnectionError, TimeoutError) as exc:
                errors += 1
                if first_error is None:
                    first_error = _describe(exc, op_timeout)

    await asyncio.gather(*(one() for _ in range(count)))
    return peers, errors, first_error


def pattern(conn_id: int, size: int) -> memoryview:
    """``size`` bytes keyed by ``conn_id``: PAYLOAD read from an offset picked by the id
    (wrapping around), so bytes delivered on the wrong connection do not compare equal."""
    off = (conn_id * 7919) % CHUNK
    if off + size <= CHUNK:
        return PAYLOAD[off : off + size]
    out = bytearray()
    while len(out) < size:
        take = min(CHUNK - off, size - len(out))
        out += PAYLOAD[off : off + take]
        off = 0
    return memoryview(bytes(out))


@dataclass
class ManyResult:
    total: int
    established: int  # connections that got the sink's ready byte through the chain
    completed: int  # connections whose whole echo arrived and matched
    bytes_verified: int  # echoed bytes that matched, over the completed connections
    connect_s: float  # first connect to the last connection established (or failed)
    transfer_s: float  # all at once: first payload byte sent to the last echo verified
    wall_s: float  # the whole phase, closes included
    errors: int
    first_error: str | None = None


async def many_conns(
    socks_port: int,
    sink: SinkServer,
    count: int,
    size: int,
    deadline_s: float,
    parallel: int = 256,
    connect_timeout: float = 30.0,
) -> ManyResult:
    """``count`` connections through the chain, all open at the same time, each echoing
    ``size`` bytes of its own pattern through the sink, then closed.

    Connections are set up ``parallel`` at a time (connect, SOCKS CONNECT, echo request, the
    sink's ready byte) so no listen backlog on the way overflows; once every one is up (or
    failed), all send their pattern at once and verify the echo.  ``deadline_s`` bounds the
    whole phase: connections not complete by then count as not completed.
    """
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    deadline = loop.time() + deadline_s
    sem = asyncio.Semaphore(parallel)
    go = asyncio.Event()
    setups_left = count
    established = completed = verified = errors = 0
    first_error: str | None = None
    t_go = t_done = t0

    def fail(exc: BaseException | str, timeout: float) -> None:
        nonlocal errors, first_error
        errors += 1
        if first_error is None:
            first_error = exc if isinstance(exc, str) else _describe(exc, timeout)

    def setup_done() -> None:
        nonlocal setups_left, t_go
        setups_left -= 1
        if setups_left == 0:
            t_go = time.perf_counter()
            go.set()

    async def one() -> None:
        nonlocal established, completed, verified, t_done
        conn_id = next(_ids)
        peer: _Peer | None = None
        limit = connect_timeout
        try:
            try:
                async with sem, asyncio.timeout(connect_timeout):
                    peer = await socks_connect(socks_port, sink.port)
                    await peer.write(_header(b"E", conn_id, size))
                    if await peer.read_exactly(1) != b"R":
                        raise ConnectionError("sink did not answer the echo request")
                established += 1
            finally:
                setup_done()
            limit = deadline_s
            async with asyncio.timeout_at(deadline):
                await go.wait()
                expected = pattern(conn_id, size)
                check = asyncio.ensure_future(peer.verify_until_complete(expected))
                try:
                    await peer.write(expected)
                    await check
                finally:
                    check.cancel()
            if peer.mismatch_at is not None:
                fail(f"echo differs from what was sent at byte {peer.mismatch_at}", 0)
            elif peer.verified < size:
                fail(f"closed after {peer.verified}/{size} echoed bytes", 0)
            else:
                completed += 1
                verified += size
                t_done = max(t_done, time.perf_counter())
            peer.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await peer.closed
        except (OSError, ConnectionError, TimeoutError) as exc:
            fail(exc, limit)
        finally:
            if peer is not None and not peer.closed.done():
                peer.abort()

    await asyncio.gather(*(one() for _ in range(count)))
    wall = time.perf_counter() - t0
    return ManyResult(
        count,
        established,
        completed,
        verified,
        t_go - t0,
        max(0.0, t_done - t_go) if completed else 0.0,
        wall,
        errors,
        first_error,
    )


@dataclass
class LoadLatencyResult:
    bulk: int  # bulk downloads asked for
    bulk_started: int  # of those, streaming when the probes began
    bulk_lost: int  # started ones that ended (EOF/reset) before the phase stopped them
    bulk_mb_s: float  # their combined rate during the probes
    first_byte: list[float]  # per probe: connect start -> first reply byte (seconds)
    connect: list[float]  # per probe: connect start -> SOCKS CONNECT answered
    probe_errors: int
    loop_lag_max: float  # the bench's own loop: largest lateness of a 20 ms tick
    first_error: str | None = None


async def first_byte_under_load(
    socks_port: int,
    sink: SinkServer,
    bulk: int,
    probes: int,
    interval: float = 0.25,
    warmup: float = 1.5,
    probe_timeout: float = 20.0,
    parallel: int = 32,
) -> LoadLatencyResult:
    """``bulk`` endless downloads through the chain (``parallel`` opened at a time), then
    ``probes`` new connections one after another (``interval`` apart), each timed from its
    TCP connect to the first byte of its 64-byte ping reply; also counts the downloads the
    chain dropped meanwhile.

    The downloads only count bytes (no copying) and the bench loop's own lateness is
    sampled, so a slow probe can be told apart from a busy load generator.
    """
    loop = asyncio.get_running_loop()
    sem = asyncio.Semaphore(parallel)
    peers: list[_Peer] = []
    first_error: str | None = None
    probe_errors = 0
    lag_max = 0.0
    stop = asyncio.Event()

    def note(exc: BaseException | str, timeout: float) -> None:
        nonlocal first_error
        if first_error is None:
            first_error = exc if isinstance(exc, str) else _describe(exc, timeout)

    async def start_one() -> None:
        async with sem:
            try:
                async with asyncio.timeout(probe_timeout):
                    peer = await socks_connect(socks_port, sink.port)
                peer.counting = True
                await peer.write(_header(b"D", next(_ids), 1 << 50))
                peers.append(peer)
            except (OSError, ConnectionError, TimeoutError) as exc:
                note(exc, probe_timeout)

    async def lag_monitor() -> None:
        nonlocal lag_max
        tick = 0.02
        while not stop.is_set():
            t = loop.time()
            await asyncio.sleep(tick)
            lag_max = max(lag_max, loop.time() - t - tick)

    first_byte: list[float] = []
    connect: list[float] = []
    monitor = asyncio.ensure_future(lag_monitor())
    try:
        await asyncio.gather(*(start_one() for _ in range(bulk)))
        await asyncio.sleep(warmup)
        lag_max = 0.0
        started = [p for p in peers if not p.eof]
        counted0 = sum(p.count for p in started)
        t_probes = loop.time()
        for _ in range(probes):
            t0 = time.perf_counter()
            peer = None
            try:
                async with asyncio.timeout(probe_timeout):
                    peer = await socks_connect(socks_port, sink.port)
                    t1 = time.perf_counter()
                    req = _header(b"P", next(_ids), 0)
                    await peer.write(req + bytes(PING_SIZE - len(req)))
                    await peer.read_exactly(1)
                first_byte.append(time.perf_counter() - t0)
                connect.append(t1 - t0)
            except (OSError, ConnectionError, TimeoutError) as exc:
                probe_errors += 1
                note(exc, probe_timeout)
            finally:
                if peer is not None:
                    peer.abort()
            await asyncio.sleep(interval)
        took = loop.time() - t_probes
        counted = sum(p.count for p in started) - counted0
        lost = sum(1 for p in started if p.eof)
        if lost:
            note(f"{lost} of {len(started)} downloads ended early", 0)
        return LoadLatencyResult(
            bulk,
            len(started),
            lost,
            counted / took / 1e6 if took else 0.0,
            first_byte,
            connect,
            probe_errors,
            lag_max,
            first_error,
        )
    finally:
        stop.set()
        monitor.cancel()
        for p in peers:
            p.abort()


def _describe(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no reply within {timeout:g}s"
    return f"{type(exc).__name__}: {exc}"


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(pct / 100 * (len(s) - 1))))
    return s[k]
