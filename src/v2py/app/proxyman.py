"""Inbound and outbound handler managers (v2ray-core ``app/proxyman/inbound``,
``app/proxyman/outbound``).

They own the running handlers by tag: the instance fills them at start-up, the
dispatcher looks outbounds up here, a VMess ``detour`` finds its target inbound
here, and the gRPC HandlerService adds and removes handlers while running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator

from v2py.app.handler import Dispatch, InboundHandler, Outbound

__all__ = ["CLOSE_TIMEOUT_S", "HandlerExistsError", "InboundManager", "OutboundManager"]

log = logging.getLogger(__name__)

#: Bound on closing one inbound handler.
CLOSE_TIMEOUT_S = 5.0


class HandlerExistsError(ValueError):
    """A handler with this (non-empty) tag is already registered."""

    def __init__(self, tag: str) -> None:
        super().__init__(f"existing tag found: {tag}")
        self.tag = tag


class InboundManager:
    """The running inbound handlers, in configuration order.

    Handlers added before :meth:`start` start with it; handlers added after it
    start at once. Tags are unique when non-empty, as in 4.34 (``AddHandler``
    refuses an existing tag).
    """

    def __init__(self) -> None:
        self._handlers: list[InboundHandler] = []
        self._dispatcher: Dispatch | None = None

    def __iter__(self) -> Iterator[InboundHandler]:
        return iter(list(self._handlers))

    def __len__(self) -> int:
        return len(self._handlers)

    def get(self, tag: str) -> InboundHandler | None:
        """The handler tagged ``tag`` (non-empty), or None."""
        if not tag:
            return None
        return next((h for h in self._handlers if h.tag == tag), None)

    def register(self, handler: InboundHandler) -> None:
        """Add a handler without starting it (start-up assembly)."""
        if handler.tag and self.get(handler.tag) is not None:
            raise HandlerExistsError(handler.tag)
        self._handlers.append(handler)

    async def add(self, handler: InboundHandler) -> None:
        """Register ``handler`` and, when the manager runs, start it.

        Raises :class:`HandlerExistsError` for a taken tag, and whatever the
        handler's ``start`` raises (OSError for a port in use); the handler is
        then not kept.
        """
        self.register(handler)
        if self._dispatcher is None:
            return
        try:
            await handler.start(self._dispatcher)
        except BaseException:
            self._handlers.remove(handler)
            await _close_quietly(handler)
            raise

    async def remove(self, tag: str) -> bool:
        """Close and forget the handler tagged ``tag``; False when there is none."""
        handler = self.get(tag)
        if handler is None:
            return False
        self._handlers.remove(handler)
        await _close_quietly(handler)
        return True

    async def start(self, dispatcher: Dispatch) -> None:
        """Start every registered handler; on failure close those already started."""
        self._dispatcher = dispatcher
        try:
            for handler in list(self._handlers):
                await handler.start(dispatcher)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close every handler (each bounded by :data:`CLOSE_TIMEOUT_S`)."""
        self._dispatcher = None
        for handler in list(self._handlers):
            await _close_quietly(handler)


async def _close_quietly(handler: InboundHandler) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await handler.close()


class OutboundManager:
    """The outbound handlers by tag, and the default one (``app/proxyman/outbound``).

    As in 4.34: the first handler added becomes the default; adding a handler
    with a taken tag replaces the old one under that tag; removing the default
    leaves no default until the next handler is added.
    """

    def __init__(self) -> None:
        self._by_tag: dict[str, Outbound] = {}
        self._untagged: list[Outbound] = []
        self._default: Outbound | None = None

    @classmethod
    def of(cls, handlers: Iterable[Outbound]) -> OutboundManager:
        """A manager holding ``handlers`` (the first is the default)."""
        manager = cls()
        for handler in handlers:
            manager.add(handler)
        return manager

    def __iter__(self) -> Iterator[Outbound]:
        return iter([*self._by_tag.values(), *self._untagged])

    def __len__(self) -> int:
        return len(self._by_tag) + len(self._untagged)

    @property
    def default(self) -> Outbound | None:
        """The default handler, or None when there is none."""
        return self._default

    def get(self, tag: str) -> Outbound | None:
        """The handler tagged ``tag`` (non-empty), or None."""
        return self._by_tag.get(tag) if tag else None

    def add(self, handler: Outbound) -> None:
        """Add ``handler`` (replacing a handler with the same non-empty tag)."""
        if self._default is None:
            self._default = handler
        if handler.tag:
            self._by_tag[handler.tag] = handler
        else:
            self._untagged.append(handler)

    def remove(self, tag: str) -> Outbound | None:
        """Forget the handler tagged ``tag`` and return it (None when there is none).

        Sessions already handed to it run to their end.
        """
        handler = self._by_tag.pop(tag, None) if tag else None
        if self._default is not None and tag and self._default.tag == tag:
            self._default = None
        return handler
