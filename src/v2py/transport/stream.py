"""The byte-stream interface every transport and stream-wrapping proxy layer offers.

TCP (``transport/tcp.py``), mKCP (``transport/mkcp.py``) and the VMess body layer
all present this same shape, so proxies compose without knowing what is below
(v2ray-core ``transport/internet`` hands proxies a ``net.Conn`` the same way).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

#: Largest single read the relay asks for.
READ_CHUNK_BYTES = 64 * 1024


class Stream(Protocol):
    """A reliable, ordered, bidirectional byte stream with half-close.

    * ``await read(n)`` returns 1..n bytes, or ``b""`` once the peer finished writing.
    * ``write(data)`` queues bytes without blocking; ``await drain()`` waits until the
      queue is below the high-water mark (backpressure).
    * ``write_eof()`` half-closes our sending side (a no-op where unsupported).
    * ``relays_end`` (optional, default true): false on a transport connection, which
      the relay never half-closes (4.34's proxies never call ``CloseWrite``; see
      ``app/relay.py``); a layer over a stream answers as the stream below.
    * ``close()`` releases everything at once; ``await wait_closed()`` waits for that.
    """

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes: ...

    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    async def drain(self) -> None: ...

    def write_eof(self) -> None: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...

    @property
    def peer(self) -> tuple[str, int] | None: ...

    @property
    def local(self) -> tuple[str, int] | None: ...

    @property
    def can_push(self) -> bool:
        """True when this stream is a :class:`PushStream` whose push mode is available
        (a typed capability: callers test it instead of probing attributes)."""
        ...


def passes_end(stream: object) -> bool:
    """Whether the relay passes a direction's end on to ``stream`` (its ``relays_end``;
    a stream that does not say is a proxy layer, whose ``write_eof`` is its own end)."""
    return bool(getattr(stream, "relays_end", True))


class PushTarget(Protocol):
    """Receives a stream's input as it arrives (push mode, see :class:`PushStream`).

    Calls come from the event loop's I/O callbacks: they must not block or raise.
    After ``pushed_eof`` or ``pushed_error`` nothing more is pushed.
    """

    def pushed_data(self, data: bytes | bytearray) -> None: ...

    def pushed_eof(self) -> None: ...

    def pushed_error(self, exc: BaseException) -> None: ...


class PushStream(Stream, Protocol):
    """A stream that can hand its input to a :class:`PushTarget` as it arrives,
    instead of waiting for ``read`` (the relay's fast path: no task switch per read).

    * ``can_push`` (declared on :class:`Stream`) is true: push mode is available (a
      wrapper over a stream that cannot push cannot either).
    * ``start_push(target)`` first pushes what is already buffered (and the end, if
      seen), then each arrival; ``stop_push()`` returns to ``read`` mode.
    * ``pause_push()`` / ``resume_push()``: backpressure (reading from the socket stops).
    * ``write_paused`` is true above the write high-water mark;
      ``when_writable(cb)`` calls ``cb(None)`` once it is below again, or
      ``cb(exc)`` if the connection is lost first.
    """

    @property
    def can_push(self) -> bool: ...

    def start_push(self, target: PushTarget) -> None: ...

    def stop_push(self) -> None: ...

    def pause_push(self) -> None: ...

    def resume_push(self) -> None: ...

    @property
    def write_paused(self) -> bool: ...

    def when_writable(self, callback: Callable[[BaseException | None], None]) -> None: ...


class PushLayer:
    """Push mode for a stream layered over another (VMess body, sniffing prefix).

    What the layer already holds is pushed first (``_take_held``, then the end if
    ``_held_end``); after that the stream below (``_below``) pushes into
    ``_below_target(target)``. Flow control (pause, resume, write state) is the lower
    stream's. Subclasses set ``_below`` and ``_push`` (None) in ``__init__``.
    """

    _below: Any
    _push: PushTarget | None

    def _take_held(self) -> bytes:
        return b""

    def _held_end(self) -> bool:
        return False

    def _below_target(self, target: PushTarget) -> PushTarget:
        return target

    @property
    def can_push(self) -> bool:
        return bool(self._below.can_push)

    def start_push(self, target: PushTarget) -> None:
        self._push = target
        held = self._take_held()
        if held:
            target.pushed_data(held)
            if self._push is not target:
                return
        if self._held_end():
            self._push = None
            target.pushed_eof()
            return
        self._below.start_push(self._below_target(target))

    def stop_push(self) -> None:
        self._push = None
        with contextlib.suppress(AttributeError):
            self._below.stop_push()

    def pause_push(self) -> None:
        self._below.pause_push()

    def resume_push(self) -> None:
        self._below.resume_push()

    @property
    def write_paused(self) -> bool:
        return bool(self._below.write_paused)

    def when_writable(self, callback: Callable[[BaseException | None], None]) -> None:
        self._below.when_writable(callback)


class StreamLayer(PushLayer):
    """A stream over the stream ``_below``: what a subclass does not override goes
    straight to it (write, drain, write_eof, close, wait_closed, local). ``peer`` is
    ``_peer`` when a subclass sets it (an address the layer learnt: a PROXY header,
    X-Forwarded-For), else the stream below's. Push mode is :class:`PushLayer`'s."""

    _peer: tuple[str, int] | None = None

    @property
    def relays_end(self) -> bool:
        return passes_end(self._below)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._below.write(data)

    async def drain(self) -> None:
        await self._below.drain()

    def write_eof(self) -> None:
        self._below.write_eof()

    def close(self) -> None:
        self._below.close()

    async def wait_closed(self) -> None:
        await self._below.wait_closed()

    @property
    def peer(self) -> tuple[str, int] | None:
        below: Stream = self._below
        return self._peer if self._peer is not None else below.peer

    @property
    def local(self) -> tuple[str, int] | None:
        below: Stream = self._below
        return below.local


class UnendedLayer(StreamLayer):
    """A proxy protocol's stream over a transport connection, with no end marker of its
    own (4.34's VLESS, Trojan, Shadowsocks and MTProto call no ``CloseWrite``): the
    relay never half-closes it, and ``write_eof`` sends nothing."""

    @property
    def relays_end(self) -> bool:
        return False

    def write_eof(self) -> None:
        """Nothing to send: the protocol never half-closes."""


class UnendedPullLayer(UnendedLayer):
    """An :class:`UnendedLayer` that changes what it reads (a header stripped, bytes
    opened): pull mode only."""

    @property
    def can_push(self) -> bool:
        return False


class PrefixedStream(StreamLayer):
    """A stream that first returns ``prefix`` (bytes already read while sniffing), then
    the end when ``eof`` (the stream below had ended), else what the stream below reads."""

    def __init__(self, prefix: bytes, inner: Stream, *, eof: bool = False) -> None:
        self._prefix = prefix
        self._eof = eof
        self._below = inner
        self._push: PushTarget | None = None

    async def read(self, max_bytes: int = READ_CHUNK_BYTES) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            return data
        if self._eof:
            return b""
        below: Stream = self._below
        return await below.read(max_bytes)

    # -- push mode (PushLayer): the prefix first, then the stream below ---------------
    def _take_held(self) -> bytes:
        held, self._prefix = self._prefix, b""
        return held

    def _held_end(self) -> bool:
        return self._eof
