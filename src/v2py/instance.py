"""A running v2py: everything one config describes, started and stopped as a unit
(v2ray-core ``v2ray.go``).

The handlers are built by :class:`v2py.build.Builder` from the typed config and
kept in the inbound and outbound managers (``app/proxyman.py``); the dispatcher
routes every session to an outbound of the outbound manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping

from v2py.app.dispatcher import Dispatcher, LinkStats, Router
from v2py.app.geodata import GeoData
from v2py.app.handler import Outbound
from v2py.app.mux_client import MuxClientOutbound
from v2py.app.mux_server import MuxServer
from v2py.app.proxyman import CLOSE_TIMEOUT_S, InboundManager, OutboundManager
from v2py.app.routing import build_routing
from v2py.app.shared_state import WorkerContext
from v2py.build import Builder
from v2py.config.model import Config, OutboundConfig

__all__ = ["CLOSE_TIMEOUT_S", "Instance"]


class Instance:
    """Inbound and outbound managers, dispatcher and transports of one config.

    ``worker`` is set in the worker processes of ``v2py run --workers N`` (see
    :class:`v2py.build.Builder`). ``router`` and ``stats`` are the dispatcher's
    hooks (None: everything to the default outbound, nothing counted).
    """

    def __init__(
        self,
        config: Config,
        *,
        env: Mapping[str, str] | None = None,
        worker: WorkerContext | None = None,
        router: Router | None = None,
        stats: LinkStats | None = None,
    ) -> None:
        self.config = config
        self.worker = worker
        self.inbounds = InboundManager()
        self.outbounds = OutboundManager()
        self.builder = Builder(
            config,
            env=dict(os.environ if env is None else env),
            inbounds=self.inbounds,
            worker=worker,
        )
        self.policy = self.builder.policy
        # Routing and DNS (app/routing.py): geo lists load once, here; DNS queries are
        # dispatched like any UDP session, so the dispatcher is looked up when they go out.
        self.routing = build_routing(config, GeoData(self.builder.env), lambda: self.dispatcher)
        self.dns = self.routing.dns
        self.builder.resolver = self.dns
        self._mux_clients: list[MuxClientOutbound] = []
        for outbound_cfg in config.outbounds:
            self.outbounds.add(self._with_mux(self.builder.outbound(outbound_cfg), outbound_cfg))
        if not config.outbounds:
            from v2py.proxy.freedom import FreedomOutbound

            self.outbounds.add(FreedomOutbound(tag="", policy=self.policy))
        if router is None:
            router = self.routing.session_router(self.outbounds)
        self.dispatcher = Dispatcher(self.outbounds, router=router, stats=stats)
        # Every inbound serves Mux.Cool (v1.mux.cool requests) before routing (4.34).
        self.inbound_dispatcher = MuxServer(self.dispatcher, self.policy)
        for inbound_cfg in config.inbounds:
            self.inbounds.register(self.builder.inbound(inbound_cfg))

    def _with_mux(self, handler: Outbound, cfg: OutboundConfig) -> Outbound:
        """``handler`` itself, or wrapped in a Mux.Cool client when ``mux`` is on."""
        mux = cfg.mux
        if mux is None or not mux.active:
            return handler
        client = MuxClientOutbound(
            handler, concurrency=mux.sessions_per_connection, policy=self.policy
        )
        self._mux_clients.append(client)
        return client

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        env: Mapping[str, str] | None = None,
        worker: WorkerContext | None = None,
    ) -> Instance:
        """Build the instance of ``config`` (nothing listens before :meth:`start`)."""
        return cls(config, env=env, worker=worker)

    async def start(self) -> None:
        """Open every inbound; on failure close what was opened and re-raise."""
        try:
            await self.inbounds.start(self.inbound_dispatcher)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the inbounds, then what the transports left open (mKCP sockets)."""
        await self.inbounds.close()
        if self.dns is not None:
            await self.dns.aclose()
        for mux_client in self._mux_clients:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await mux_client.aclose()
        for transport in self.builder.transports:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await transport.aclose()
