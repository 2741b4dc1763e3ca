"""Watching the client while an outbound dials (v2ray-core 4.34 ``proxy/*/server.go``
``transport``: the inbound copies the client into the link while the outbound dials,
under the connection's inactivity timer).

In 4.34 the inbound side of a connection never waits for the outbound's dial: it keeps
copying what the client sends into the link's pipe (up to the buffer policy), and the
``ActivityTimer`` keeps running. When the client ends its side, the timer drops to
``downlinkOnly`` (1 s by default), and if nothing comes back by then the context is
cancelled, which aborts a dial still in progress. A target that never answers the TCP
handshake therefore costs 4.34 about a second after its client left [verified against
the binary]; an outbound that only starts reading after its dial would hold the dial
for all its attempts (freedom: 5 x 16 s).

:func:`dial_watching` gives the outbounds 4.34's behaviour: the dial runs while the
client is watched (in the caller's task, started at once: no task or loop iteration of
its own; a timer cancels it when the client's end or silence says so); client bytes
are kept (and replayed first afterwards) up to the policy's buffer size, after which
the client is no longer read (as 4.34's pipe blocks its writer); the dial is abandoned
``downlink_only`` seconds after the client ended, ``conn_idle`` seconds after the
client's last byte, and at once when reading the client failed (that error is raised,
as the relay's read would have raised it).

Push-capable clients (TCP and layers over it) are watched in push mode, so nothing is
left pending when the dial completes and the relay can still push; other streams
(mKCP, an HTTP request's exchange) are watched with a read task whose result, if it is
still pending, is the first thing read afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast

from v2py.app.policy import Timeouts
from v2py.transport.stream import (
    READ_CHUNK_BYTES,
    PrefixedStream,
    PushStream,
    Stream,
    StreamLayer,
)

__all__ = ["ClientGone", "dial_watching"]

T = TypeVar("T")


class ClientGone(ConnectionAbortedError):
    """The dial was abandoned: the client ended, failed or stayed silent meanwhile."""


class _Watch:
    """What the client did while the dial ran: bytes kept, end, error, last activity."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int) -> None:
        self.loop = loop
        self.limit = limit
        self.chunks: list[bytes] = []
        self.size = 0
        self.ended_at: float | None = None
        self.error: BaseException | None = None
        self.active_at = loop.time()
        #: Called when the client ends (its deadline moves closer): the guard's re-arm.
        self.on_end: Callable[[], None] | None = None

    def data(self, data: bytes | bytearray) -> None:
        if data:
            self.chunks.append(bytes(data))
            self.size += len(data)
            self.active_at = self.loop.time()  # a later deadline: the timer re-arms lazily

    def end(self, error: BaseException | None = None) -> None:
        if self.ended_at is None:
            self.ended_at = self.loop.time()
            self.error = error
            if self.on_end is not None:
                self.on_end()

    def deadline(self, timeouts: Timeouts) -> float:
        """When the dial is abandoned: at once after a client error, ``downlink_only``
        after the client's end, else ``conn_idle`` after its last byte."""
        if self.ended_at is not None and self.error is not None:
            return self.ended_at
        if self.ended_at is not None:
            return self.ended_at + timeouts.downlink_only
        return self.active_at + timeouts.conn_idle

    @property
    def full(self) -> bool:
        return self.size >= self.limit

    def held(self) -> bytes:
        return b"".join(self.chunks)


class _Guard:
    """Cancels ``task`` (the dialing one) once the watch's deadline passes; the reason
    is kept in ``fired``. One timer handle, re-armed lazily when the client was active
    since (as :class:`~v2py.app.idle.IdleTimer`) and at once when it ends."""

    def __init__(self, task: asyncio.Task[object], watch: _Watch, timeouts: Timeouts) -> None:
        self._task = task
        self._watch = watch
        self._timeouts = timeouts
        self.fired: str | None = None
        self._handle: asyncio.TimerHandle | None = None
        watch.on_end = self._rearm
        self._arm()

    def _arm(self) -> None:
        self._handle = self._watch.loop.call_at(self._watch.deadline(self._timeouts), self._check)

    def _check(self) -> None:
        self._handle = None
        watch = self._watch
        if watch.loop.time() < watch.deadline(self._timeouts):
            self._arm()
            return
        if watch.error is not None:
            self.fired = "failed"
        else:
            self.fired = "ended" if watch.ended_at is not None else "went silent"
        self._task.cancel()

    def _rearm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._arm()

    def cancel(self) -> None:
        """Never fire; also drops the watch's reference back to the guard (no cycle)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._watch.on_end = None


class _PushWatcher:
    """Push-mode watch: the client pushes into the :class:`_Watch` (a PushTarget)."""

    def __init__(self, client: PushStream, watch: _Watch) -> None:
        self._client = client
        self._watch = watch
        client.start_push(self)

    def pushed_data(self, data: bytes | bytearray) -> None:
        self._watch.data(data)
        if self._watch.full:
            self._client.pause_push()

    def pushed_eof(self) -> None:
        self._watch.end()

    def pushed_error(self, exc: BaseException) -> None:
        self._watch.end(exc)

    def finish(self) -> Stream:
        self._client.stop_push()
        watch = self._watch
        if not watch.chunks and watch.ended_at is None:
            return self._client
        return PrefixedStream(watch.held(), self._client, eof=watch.ended_at is not None)

    def abandon(self) -> None:
        self._client.stop_push()


class _PendingRead(StreamLayer):
    """The client after a read-mode watch: the kept bytes, then the result of the read
    that was still pending when the dial completed, then the client itself."""

    def __init__(self, held: bytes, inner: Stream, pending: asyncio.Task[bytes]) -> None:
        self._below = inner
        self._push = None
        self._held = held
        self._pending: asyncio.Task[bytes] | None = pending

    @property
    def can_push(self) -> bool:
        return False

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        if self._held:
            data, self._held = self._held[:max_bytes], self._held[max_bytes:]
            return data
        pending = self._pending
        if pending is not None:
            data = await pending
            self._pending = None
            if len(data) > max_bytes:
                self._held = data[max_bytes:]
                return data[:max_bytes]
            return data
        below: Stream = self._below
        return await below.read(max_bytes)

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
        self._below.close()


class _ReadWatcher:
    """Read-mode watch: one read task at a time while the client sends."""

    def __init__(self, client: Stream, watch: _Watch) -> None:
        self._client = client
        self._watch = watch
        self._task: asyncio.Task[bytes] | None = None
        self._next()

    def _next(self) -> None:
        task = self._watch.loop.create_task(self._client.read(READ_CHUNK_BYTES))
        task.add_done_callback(self._done)
        self._task = task

    def _done(self, task: asyncio.Task[bytes]) -> None:
        if task is not self._task:
            return
        self._task = None
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._watch.end(exc)
            return
        data = task.result()
        if not data:
            self._watch.end()
            return
        self._watch.data(data)
        if not self._watch.full:
            self._next()

    def finish(self) -> Stream:
        watch = self._watch
        task = self._task
        self._task = None
        if task is not None:
            return _PendingRead(watch.held(), self._client, task)
        if not watch.chunks and watch.ended_at is None:
            return self._client
        return PrefixedStream(watch.held(), self._client, eof=watch.ended_at is not None)

    def abandon(self) -> None:
        task = self._task
        self._task = None
        if task is not None:
            task.cancel()


async def dial_watching(
    client: Stream,
    dial: Callable[[], Awaitable[T]],
    timeouts: Timeouts,
    *,
    discard: Callable[[T], object] | None = None,
) -> tuple[T, Stream]:
    """Run ``dial()`` while watching ``client``; return its result and the client stream
    to relay from (with the bytes it sent meanwhile replayed first).

    Raises :class:`ClientGone` when the dial is abandoned (see the module docstring),
    what reading the client raised when that failed (at once, as 4.34's request copy
    ends the connection; a finished dial's result then goes to ``discard``), and
    whatever the dial raises. Cancelling this coroutine cancels the dial.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("dial_watching must run in a task")
    watch = _Watch(loop, max(1, timeouts.buffer_size))
    watcher: _PushWatcher | _ReadWatcher = (
        _PushWatcher(cast(PushStream, client), watch)
        if getattr(client, "can_push", False)  # as the relay asks (test fakes lack it)
        else _ReadWatcher(client, watch)
    )
    # The dial runs in this task, from this very step (no task of its own, no loop
    # iteration before its first syscall); the guard cancels this task when the client
    # says so. A dial cancelled half-way cleans up as on any cancellation, so ``discard``
    # never gets a result here: a finished dial's result is always handed over.
    guard = _Guard(task, watch, timeouts)
    try:
        result = await dial()
    except asyncio.CancelledError:
        watcher.abandon()
        if guard.fired is not None and task.uncancel() == 0:
            if watch.error is not None:
                raise watch.error from None  # what the relay's read would have raised
            raise ClientGone(f"the client {guard.fired} while dialing") from None
        raise
    except BaseException:
        watcher.abandon()
        raise
    finally:
        guard.cancel()
    if watch.error is not None:
        # The client failed while the dial was finishing (4.34: the request copy's error
        # ends the connection): nothing is relayed.
        watcher.abandon()
        if discard is not None:
            discard(result)
        raise watch.error
    return result, watcher.finish()
