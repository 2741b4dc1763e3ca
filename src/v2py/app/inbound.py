"""Inbound handlers: listeners around an inbound proxy (v2ray-core app/proxyman/inbound).

``AlwaysOnInbound`` listens on every port of its range for its whole life.
``DynamicInbound`` (the ``allocate: random`` case) lives in ``app/dynamic.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from v2py.app.handler import Dispatch, InboundProxy
from v2py.app.session import Session, SniffingSettings
from v2py.transport import Listener, TcpTransport, Transport
from v2py.transport.stream import Stream

log = logging.getLogger(__name__)


class AlwaysOnInbound:
    """Listens on ``ports`` with one shared proxy instance.

    ``reuse_port`` binds with SO_REUSEPORT (``v2py run --workers N``).
    """

    def __init__(
        self,
        *,
        tag: str,
        proxy: InboundProxy,
        listen_host: str,
        ports: list[int],
        transport: Transport | None = None,
        sniffing: SniffingSettings | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.tag = tag
        self.proxy = proxy
        self.reuse_port = reuse_port
        self.listen_host = listen_host
        self.ports = ports
        self.transport: Transport = transport or TcpTransport()
        self.sniffing = sniffing or SniffingSettings()
        self._listeners: list[Listener] = []
        self._dispatcher: Dispatch | None = None

    async def start(self, dispatcher: Dispatch) -> None:
        self._dispatcher = dispatcher
        for port in self.ports:
            listener = await self.transport.listen(
                self.listen_host, port, self._on_connection, reuse_port=self.reuse_port
            )
            self._listeners.append(listener)
            log.info(
                "inbound %s listening on %s %s:%d",
                self.tag or "-",
                self.transport.name,
                self.listen_host,
                port,
            )
        await self.proxy.start(dispatcher)

    async def _on_connection(self, stream: Stream) -> None:
        assert self._dispatcher is not None
        session = Session(
            inbound_tag=self.tag,
            source=stream.peer,
            sniffing=self.sniffing,
        )
        await self.proxy.handle(session, stream, self._dispatcher)

    def get_random_worker(self, rng_index: int) -> tuple[InboundProxy, int, int]:
        """Detour target of an always-on range: any port, ValidMin 255 (dynamic-port.md 2.3)."""
        return self.proxy, self.ports[rng_index % len(self.ports)], 255

    async def close(self) -> None:
        for listener in self._listeners:
            listener.close()
        self.proxy.close()
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await listener.wait_closed()
        self._listeners.clear()
