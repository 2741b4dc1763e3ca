"""What the stream layers (TLS, WebSocket, TCP HTTP header, PROXY protocol) share.

* :class:`InnerTransport`: what a layer needs from the transport beneath it (the
  ``dial``/``listen`` shape of :class:`v2py.transport.Transport`, restated here so
  that the layers type-check on their own).
* :class:`LayerTransport`: a transport made of a layer over another: the name, dial,
  listen and close plumbing; a layer says how it wraps an accepted stream.
* :class:`LayerStream`: a layer's stream (a :class:`StreamLayer` that can abort);
  :class:`DecodingLayerStream`: one that decodes what the stream below pushes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from v2py.transport.stream import PushTarget, Stream, StreamLayer

__all__ = [
    "DecodingLayerStream",
    "InnerTransport",
    "LayerHandler",
    "LayerListener",
    "LayerStream",
    "LayerTransport",
]

#: What a listener runs for every accepted connection.
LayerHandler = Callable[[Stream], Awaitable[None]]


class LayerListener(Protocol):
    """A listening endpoint."""

    def close(self) -> None: ...

    def stop_accepting(self) -> None: ...

    async def wait_closed(self) -> None: ...


class InnerTransport(Protocol):
    """A transport a layer wraps."""

    @property
    def name(self) -> str: ...

    @property
    def listener_ends_sessions(self) -> bool: ...

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream: ...

    async def listen(
        self, host: str, port: int, handler: LayerHandler, *, reuse_port: bool = False
    ) -> LayerListener: ...

    async def aclose(self) -> None: ...


#: Made once per ``listen``: turns an accepted stream into the layer's stream, or
#: None when the connection is done (its handshake failed; logged by the layer).
LayerAccept = Callable[[Stream], Awaitable[Stream | None]]


class LayerTransport:
    """A transport made of a layer over ``inner``: ``name`` and
    ``listener_ends_sessions`` are the inner transport's, ``dial`` passes through
    unless overridden, ``listen`` runs ``handler`` on the stream ``_accepting()``
    makes of each accepted one (and closes it after), ``aclose`` closes ``inner``."""

    def __init__(self, inner: InnerTransport) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def listener_ends_sessions(self) -> bool:
        return self.inner.listener_ends_sessions

    async def dial(self, host: str, port: int, *, timeout: float | None = None) -> Stream:
        return await self.inner.dial(host, port, timeout=timeout)

    def _accepting(self) -> LayerAccept:
        """Called once by ``listen``, before the inner transport listens."""
        raise NotImplementedError

    async def listen(
        self, host: str, port: int, handler: LayerHandler, *, reuse_port: bool = False
    ) -> LayerListener:
        wrap = self._accepting()

        async def accept(below: Stream) -> None:
            stream = await wrap(below)
            if stream is None:
                return
            try:
                await handler(stream)
            finally:
                stream.close()

        return await self.inner.listen(host, port, accept, reuse_port=reuse_port)

    async def aclose(self) -> None:
        await self.inner.aclose()


class LayerStream(StreamLayer):
    """A transport layer's stream: a :class:`StreamLayer` that can also abort."""

    _closed = False

    @property
    def relays_end(self) -> bool:
        """A transport layer's connection: the relay never half-closes it."""
        return False

    def abort(self) -> None:
        """Close at once, without the layer's own goodbye (TLS close_notify, WebSocket
        Close): ``_closed`` is set and the stream below is aborted (closed when it
        cannot abort)."""
        self._closed = True
        abort = getattr(self._below, "abort", None)
        if abort is not None:
            abort()
        else:
            self._below.close()


class DecodingLayerStream(LayerStream):
    """A layer that decodes what the stream below pushes (TLS records, WebSocket
    frames). In push mode it is the lower stream's push target; ``_deliver`` hands
    what it decoded (then the end) to its own target unless that paused it. A pause
    also pauses the stream below; on resume what is held goes on first."""

    _push_paused: bool

    def _deliver(self) -> None:
        raise NotImplementedError

    def pushed_data(self, data: bytes | bytearray) -> None:
        raise NotImplementedError

    def pushed_eof(self) -> None:
        raise NotImplementedError

    def _below_target(self, target: PushTarget) -> PushTarget:
        return self

    def start_push(self, target: PushTarget) -> None:
        self._push_paused = False  # the stream below starts unpaused too
        super().start_push(target)

    def pause_push(self) -> None:
        self._push_paused = True
        self._below.pause_push()

    def resume_push(self) -> None:
        self._push_paused = False
        self._below.resume_push()
        self._deliver()

    def pushed_error(self, exc: BaseException) -> None:
        target = self._push
        if target is not None:
            self._push = None
            target.pushed_error(exc)
