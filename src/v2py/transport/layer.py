"""What a stream layer (TLS, WebSocket, TCP HTTP header, PROXY protocol) needs from the
transport beneath it: the ``dial``/``listen`` shape of :class:`v2py.transport.Transport`,
restated here so that the layers type-check on their own."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from v2py.transport.stream import Stream

__all__ = ["InnerTransport", "LayerListener", "LayerHandler"]

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
