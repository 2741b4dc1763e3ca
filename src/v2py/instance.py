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
from typing import TYPE_CHECKING

from v2py.app.dispatcher import Dispatcher, LinkStats, Router
from v2py.app.geodata import GeoData
from v2py.app.handler import Outbound
from v2py.app.mux_server import MuxServer
from v2py.app.proxyman import CLOSE_TIMEOUT_S, InboundManager, OutboundManager
from v2py.app.routing import build_routing
from v2py.build import Builder
from v2py.config.model import Config, OutboundConfig

if TYPE_CHECKING:
    from v2py.app.commander.server import Commander
    from v2py.app.mux_client import MuxClientOutbound
    from v2py.app.reverse import Reverse
    from v2py.app.shared_state import WorkerContext
    from v2py.app.stats import StatsManager, StatsPolicy, TrafficStats

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
        # "stats": {} turns the counters on; the policy says which exist. Counters and
        # Mux.Cool clients are imported only when a config uses them (start-up time).
        self.stats_manager: StatsManager | None = None
        self.traffic: TrafficStats | None = None
        if config.stats is not None:
            from v2py.app.stats import StatsManager, TrafficStats

            self.stats_manager = StatsManager()
            self.traffic = TrafficStats(self.stats_manager, stats_policy(config))
        self.builder = Builder(
            config,
            env=dict(os.environ if env is None else env),
            inbounds=self.inbounds,
            worker=worker,
            stats=self.traffic,
            outbounds=self.outbounds,
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
        self.dispatcher = Dispatcher(
            self.outbounds, router=router, stats=stats if stats is not None else self.traffic
        )
        # Reverse proxy (app/reverse.py): portals are outbounds, bridges dispatch.
        self.reverse: Reverse | None = None
        if config.reverse is not None:
            self.reverse = self._reverse(config)
        # Every inbound serves Mux.Cool (v1.mux.cool requests) before routing (4.34).
        self.inbound_dispatcher = MuxServer(self.dispatcher, self.policy)
        for inbound_cfg in config.inbounds:
            self.inbounds.register(self.builder.inbound(inbound_cfg))
        self.commander: Commander | None = None
        if config.api is not None:
            self.commander = self._commander(config)

    def _with_mux(self, handler: Outbound, cfg: OutboundConfig) -> Outbound:
        """``handler`` itself, or wrapped in a Mux.Cool client when there is a ``mux``
        object (disabled, it carries only sessions that prefer mux, as 4.34)."""
        mux = cfg.mux
        if mux is None or not mux.configured:
            return handler
        from v2py.app.mux_client import MuxClientOutbound

        client = MuxClientOutbound(
            handler,
            concurrency=mux.sessions_per_connection,
            policy=self.policy,
            enabled=mux.active,
        )
        self._mux_clients.append(client)
        return client

    def _reverse(self, config: Config) -> Reverse:
        """The ``reverse`` app: each portal is added to the outbound manager under its
        tag (replacing an outbound with that tag, as 4.34's portal does at start)."""
        from v2py.app.reverse import Reverse

        reverse_cfg = config.reverse
        assert reverse_cfg is not None
        reverse = Reverse(reverse_cfg, self.dispatcher, self.policy)
        for portal in reverse.portals:
            self.outbounds.add(portal)
        worker = self.worker
        if worker is not None and worker.peer_dir and reverse.portals:
            # A bridge's connections reach one worker: the others pass theirs on to it.
            from v2py.app.reverse_relay import portal_socket

            siblings = [
                portal_socket(worker.peer_dir, i) for i in range(worker.count) if i != worker.index
            ]
            reverse.relay_across(portal_socket(worker.peer_dir, worker.index), siblings)
        return reverse

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

    def _commander(self, config: Config) -> Commander:
        """The gRPC API behind the outbound tagged ``api.tag`` (replacing a configured
        outbound with that tag, as 4.34's commander does)."""
        from v2py.app.commander.host import InstanceHost, make_commander, reopen_log_files

        api = config.api
        assert api is not None
        host = InstanceHost(
            inbounds=self.inbounds,
            outbounds=self.outbounds,
            build_inbound=self.builder.inbound,
            build_outbound=lambda cfg: self._with_mux(self.builder.outbound(cfg), cfg),
            single_process=self.worker is None,
        )
        commander = make_commander(
            api,
            stats=self.stats_manager,
            host=host,
            restart_logger=reopen_log_files,
            transport=config.transport,
            worker=self.worker,
        )
        self.outbounds.remove(api.tag)
        self.outbounds.add(commander.outbound(self.policy.for_level(0)))
        return commander

    async def start(self) -> None:
        """Open every inbound; on failure close what was opened and re-raise."""
        try:
            if self.commander is not None:
                await self.commander.start()
            await self.inbounds.start(self.inbound_dispatcher)
            if self.reverse is not None:
                await self.reverse.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        """Close the inbounds, then what the transports left open (mKCP sockets)."""
        if self.reverse is not None:
            with contextlib.suppress(Exception):
                await self.reverse.aclose()
        await self.inbounds.close()
        if self.dns is not None:
            await self.dns.aclose()
        for mux_client in self._mux_clients:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await mux_client.aclose()
        if self.commander is not None:
            await self.commander.close()
        for transport in self.builder.transports:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await transport.aclose()


def stats_policy(config: Config) -> StatsPolicy:
    """Which counters ``config.policy`` asks for (levels and system switches)."""
    from v2py.app.stats import StatsPolicy

    policy = config.policy
    return StatsPolicy.from_levels(
        {n: (lp.stats_user_uplink, lp.stats_user_downlink) for n, lp in policy.levels.items()},
        inbound=(policy.system.stats_inbound_uplink, policy.system.stats_inbound_downlink),
        outbound=(policy.system.stats_outbound_uplink, policy.system.stats_outbound_downlink),
    )
