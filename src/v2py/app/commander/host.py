"""The commander of one instance: its services over the instance's handler managers
(v2ray-core ``app/commander/commander.go`` ``NewCommander``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from v2py.app.commander.convert import inbound_config, outbound_config
from v2py.app.commander.proto import handler_command_pb2 as hpb
from v2py.app.commander.proto import log_command_pb2 as lpb
from v2py.app.commander.proto import stats_command_pb2 as spb
from v2py.app.commander.server import Commander, ServiceSpec
from v2py.app.commander.services import (
    AccountTable,
    HandlerServiceImpl,
    LoggerServiceImpl,
    StatsServiceImpl,
    UserTable,
)
from v2py.app.handler import InboundHandler, Outbound
from v2py.app.proxyman import InboundManager, OutboundManager
from v2py.app.stats import StatsManager
from v2py.config.model import ApiConfig, InboundConfig, OutboundConfig, TransportConfig
from v2py.protocol.vmess.validator import UserValidator

if TYPE_CHECKING:
    from v2py.app.shared_state import WorkerContext

__all__ = ["InstanceHost", "make_commander", "reopen_log_files"]


def reopen_log_files() -> None:
    """RestartLogger: close the log files; each reopens at its next record (after
    a rotation that is the new file)."""
    for name in ("v2py", "v2py.access"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.FileHandler):
                handler.close()


class InstanceHost:
    """:class:`~v2py.app.commander.services.HandlerHost` over an instance's managers;
    ``build_inbound`` / ``build_outbound`` are the instance's builder."""

    def __init__(
        self,
        *,
        inbounds: InboundManager,
        outbounds: OutboundManager,
        build_inbound: Callable[[InboundConfig], InboundHandler],
        build_outbound: Callable[[OutboundConfig], Outbound],
        single_process: bool = True,
    ) -> None:
        self._single_process = single_process
        self._inbounds = inbounds
        self._outbounds = outbounds
        self._build_inbound = build_inbound
        self._build_outbound = build_outbound

    def inbound_users(self, tag: str) -> UserTable | AccountTable | None:
        handler = self._inbounds.get(tag)
        if handler is None:
            raise KeyError(tag)
        # Only an always-on handler exposes its proxy (4.34 ``proxy.GetInbound``).
        proxy = getattr(handler, "proxy", None)
        if proxy is None:
            raise LookupError(tag)
        validator = getattr(proxy, "validator", None)
        if isinstance(validator, UserValidator):
            return validator
        accounts = getattr(proxy, "accounts", None)  # VLESS and Trojan
        return accounts if isinstance(accounts, AccountTable) else None

    async def add_inbound(self, config: InboundConfig) -> None:
        if config.tag and self._inbounds.get(config.tag) is not None:
            raise ValueError(f"existing tag found: {config.tag}")
        if not self._single_process:
            from v2py.transport.ds import inbound_unix_socket

            if inbound_unix_socket(config) is not None:
                # Every worker adds the inbound; a Unix socket binds in one process only.
                raise ValueError("a Unix socket inbound cannot be added with --workers")
        await self._inbounds.add(self._build_inbound(config))

    async def remove_inbound(self, tag: str) -> bool:
        return await self._inbounds.remove(tag)

    async def add_outbound(self, config: OutboundConfig) -> None:
        if config.tag and self._outbounds.get(config.tag) is not None:
            raise ValueError(f"existing tag found: {config.tag}")
        self._outbounds.add(self._build_outbound(config))

    async def remove_outbound(self, tag: str) -> bool:
        return self._outbounds.remove(tag) is not None


def make_commander(
    api: ApiConfig,
    *,
    stats: StatsManager | None,
    host: InstanceHost,
    restart_logger: Callable[[], None],
    transport: TransportConfig | None = None,
    worker: WorkerContext | None = None,
) -> Commander:
    """The commander serving ``api.services`` (unknown services are UNIMPLEMENTED);
    handlers it adds take what they lack from ``transport`` (the config's top-level one).
    In a worker of ``--workers N`` every call also runs on the other workers
    (``fanout.py``)."""
    services: list[ServiceSpec] = []
    if "HandlerService" in api.services:
        h = HandlerServiceImpl(
            host,
            convert_inbound=lambda handler: inbound_config(
                handler,  # type: ignore[arg-type]
                transport,
            ),
            convert_outbound=lambda handler: outbound_config(
                handler,  # type: ignore[arg-type]
                transport,
            ),
        )
        services.append(
            ServiceSpec(
                "app.proxyman.command.HandlerService",
                {
                    "AddInbound": (h.AddInbound, hpb.AddInboundRequest, hpb.AddInboundResponse),
                    "RemoveInbound": (
                        h.RemoveInbound,
                        hpb.RemoveInboundRequest,
                        hpb.RemoveInboundResponse,
                    ),
                    "AlterInbound": (
                        h.AlterInbound,
                        hpb.AlterInboundRequest,
                        hpb.AlterInboundResponse,
                    ),
                    "AddOutbound": (
                        h.AddOutbound,
                        hpb.AddOutboundRequest,
                        hpb.AddOutboundResponse,
                    ),
                    "RemoveOutbound": (
                        h.RemoveOutbound,
                        hpb.RemoveOutboundRequest,
                        hpb.RemoveOutboundResponse,
                    ),
                    "AlterOutbound": (
                        h.AlterOutbound,
                        hpb.AlterOutboundRequest,
                        hpb.AlterOutboundResponse,
                    ),
                },
            )
        )
    if "StatsService" in api.services:
        st = StatsServiceImpl(stats)
        services.append(
            ServiceSpec(
                "app.stats.command.StatsService",
                {
                    "GetStats": (st.GetStats, spb.GetStatsRequest, spb.GetStatsResponse),
                    "QueryStats": (st.QueryStats, spb.QueryStatsRequest, spb.QueryStatsResponse),
                    "GetSysStats": (st.GetSysStats, spb.SysStatsRequest, spb.SysStatsResponse),
                },
            )
        )
    if "LoggerService" in api.services:
        lg = LoggerServiceImpl(restart_logger)
        services.append(
            ServiceSpec(
                "app.log.command.LoggerService",
                {
                    "RestartLogger": (
                        lg.RestartLogger,
                        lpb.RestartLoggerRequest,
                        lpb.RestartLoggerResponse,
                    )
                },
            )
        )
    if worker is None or not worker.peer_dir:
        return Commander(api.tag, services)
    from v2py.app.commander.fanout import PeerServer, fan_out, peer_socket

    siblings = [peer_socket(worker.peer_dir, i) for i in range(worker.count) if i != worker.index]
    first = None if worker.index == 0 else peer_socket(worker.peer_dir, 0)
    fanned = fan_out(services, siblings, first=first)
    peers = PeerServer(
        peer_socket(worker.peer_dir, worker.index),
        services,
        ordering=fanned if first is None else (),
    )
    return Commander(api.tag, fanned, peers=peers)
