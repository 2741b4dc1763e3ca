"""What the transports that carry many streams on one connection (HTTP/2 in ``h2.py``,
QUIC in ``quic.py``) share:

* :class:`FedStream`: a stream whose input the connection feeds in (chunks, the end,
  an error that fails both directions) and whose ``drain`` waits on the connection's
  write progress;
* :class:`ConnectionPool`: the client's live connections per destination, a new stream
  going on the first that can take one, else on a new connection;
* :class:`TaskSet` and :func:`run_handler`: a listener's per-stream handler tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from v2py.transport.layer import LayerHandler
from v2py.transport.stream import READ_CHUNK_BYTES, Stream

__all__ = ["ConnectionPool", "FedStream", "TaskSet", "cancel_and_wait", "run_handler"]


class FedStream:
    """One stream of a multiplexed connection (pull mode).

    The connection calls ``_fail(exc)`` when the stream or the connection is gone;
    subclasses append input to ``_chunks`` (never empty ones), set ``_eof`` and set
    ``_readable``. ``drain`` waits while ``_unsent()`` is above ``_write_high_water``:
    the connection sets ``_writable`` once it went lower (``_want_writable`` tells it
    that a writer waits).
    """

    can_push = False
    #: A transport connection: the relay never half-closes it (app/relay.py).
    relays_end = False
    _write_high_water: int

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._eof = False
        self._error: BaseException | None = None
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._closed_event = asyncio.Event()

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc
        self._readable.set()
        self._writable.set()
        self._closed_event.set()

    def _unsent(self) -> int:
        """Bytes written but not yet sent by the connection."""
        raise NotImplementedError

    def _want_writable(self) -> None:
        """``drain`` is about to wait for ``_writable``."""

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        """Up to ``max_bytes``: the chunks that came (about one per frame or packet) are
        joined as far as they fit."""
        chunks = self._chunks
        while not chunks:
            if self._eof:
                return b""
            if self._error is not None:
                raise self._error
            self._readable.clear()
            await self._readable.wait()
        data = chunks[0]
        size = len(data)
        if size > max_bytes:
            chunks[0] = data[max_bytes:]
            return data[:max_bytes]
        count = 1
        while count < len(chunks) and size + len(chunks[count]) <= max_bytes:
            size += len(chunks[count])
            count += 1
        if count > 1:
            data = b"".join(chunks[:count])
        del chunks[:count]
        return data

    async def drain(self) -> None:
        while self._unsent() > self._write_high_water:
            if self._error is not None:
                raise ConnectionResetError(str(self._error))
            self._writable.clear()
            self._want_writable()
            await self._writable.wait()
        if self._error is not None and self._unsent() > 0:
            raise ConnectionResetError(str(self._error))

    async def wait_closed(self) -> None:
        await self._closed_event.wait()


class PooledConnection(Protocol):
    """What :class:`ConnectionPool` asks of a connection."""

    @property
    def closed(self) -> bool: ...

    def can_open(self) -> bool: ...


C = TypeVar("C", bound=PooledConnection)


class ConnectionPool(Generic[C]):
    """Client connections per destination, kept for the transport's lifetime."""

    def __init__(self) -> None:
        self._conns: dict[tuple[str, int], list[C]] = {}
        self._dialing: dict[tuple[str, int], asyncio.Lock] = {}

    async def get(self, host: str, port: int, connect: Callable[[], Awaitable[C]]) -> C:
        """The first live connection to ``host:port`` that can open a stream, else a
        new one from ``connect()`` (one dial at a time per destination)."""
        key = (host, port)
        lock = self._dialing.setdefault(key, asyncio.Lock())
        async with lock:
            conns = [c for c in self._conns.get(key, ()) if not c.closed]
            self._conns[key] = conns
            for conn in conns:
                if conn.can_open():
                    return conn
            conn = await connect()
            conns.append(conn)
            return conn

    def __iter__(self) -> Iterator[C]:
        for conns in self._conns.values():
            yield from conns

    def clear(self) -> None:
        self._conns.clear()


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], timeout: float) -> None:
    """Cancel ``tasks`` and wait at most ``timeout`` seconds for them to end (their
    results and errors are dropped)."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    if pending:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await asyncio.gather(*pending, return_exceptions=True)


class TaskSet:
    """Tasks kept until they finish; cancelled and awaited together."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def wait(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def run_handler(
    handler: LayerHandler, stream: Stream, log: logging.Logger, failed: str
) -> None:
    """Run ``handler`` on one stream, then close it; an error is logged as ``failed``
    (one bad stream never stops the connection or the listener)."""
    try:
        await handler(stream)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception(failed)
    finally:
        stream.close()
