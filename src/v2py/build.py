"""Config types -> runtime objects: the one assembly table (v2ray-core ``infra/conf``
``Build()`` methods feeding ``core.New``).

Every protocol, network and security the config model accepts is built here by
an exhaustive ``match`` on the typed settings (mypy checks that no case is left
out, and ``tests/test_assembly.py`` builds one of each). Nothing here re-reads
JSON or the environment: the config hands over parsed values.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NoReturn

from v2py.app.handler import InboundHandler, InboundProxy, Outbound
from v2py.app.policy import PolicyTable, Timeouts
from v2py.app.session import SniffingSettings
from v2py.config.fallback import FallbackConfig, check_fallbacks
from v2py.config.model import Config, InboundConfig, OutboundConfig, StreamConfig
from v2py.config.settings import (
    BlackholeSettings,
    DnsOutboundSettings,
    DokodemoSettings,
    FreedomSettings,
    HttpInboundSettings,
    HttpOutboundSettings,
    HttpServerConfig,
    MtprotoInboundSettings,
    MtprotoOutboundSettings,
    ShadowsocksInboundSettings,
    ShadowsocksOutboundSettings,
    SocksInboundSettings,
    SocksOutboundSettings,
    SocksServerConfig,
    VlessInboundSettings,
    VlessOutboundSettings,
    VmessInboundSettings,
    VmessOutboundSettings,
    VmessServerConfig,
)
from v2py.config.trojan import TrojanInboundSettings, TrojanOutboundSettings
from v2py.errors import ConfigError
from v2py.transport import KcpTransport, TcpTransport, Transport

if TYPE_CHECKING:
    from v2py.app.chain import ChainTransport
    from v2py.app.proxyman import InboundManager, OutboundManager
    from v2py.app.shared_state import WorkerContext
    from v2py.app.stats import TrafficStats
    from v2py.protocol.fallback import FallbackTable
    from v2py.protocol.mkcp.settings import KcpSettings
    from v2py.protocol.vmess.account import VmessUser
    from v2py.protocol.vmess.constants import SecurityType
    from v2py.protocol.vmess.impl import VmessImpl
    from v2py.proxy.freedom import DomainStrategy, FreedomOutbound, Resolver
    from v2py.proxy.socks_outbound import PacketChannel, PacketOpener, UpstreamServer
    from v2py.proxy.vmess_inbound import DetourLookup, VmessInbound
    from v2py.proxy.vmess_outbound import ServerEntry
    from v2py.transport.sockopt import SocketOptions

__all__ = [
    "Builder",
    "build_transport",
    "check_single_process_switches",
    "policy_table",
    "socket_options",
]

log = logging.getLogger(__name__)

#: Environment switch: run the VMess cores without the optional C accelerator.
PURE_PYTHON_ENV = "V2PY_PURE_PYTHON"
#: Environment switch: socks inbounds with ``udp: true`` serve UDP only from the IP of a
#: live ASSOCIATE (proxy/socks_inbound.py). Not a JSON key: 4.34 would ignore the key and
#: run the same config open to anyone.
SOCKS_STRICT_UDP_ENV = "V2PY_SOCKS_STRICT_UDP"

#: Bytes of a VMess user id.
_USER_ID_BYTES = 16

#: Where a detour user lives: (generation, port) of a dynamic inbound, None for static.
Where = tuple[int, int] | None


def _unreachable(value: object) -> NoReturn:
    # The config model admits only the cases matched above; reaching this is a bug.
    raise AssertionError(f"no builder for {type(value).__name__}")


def policy_table(config: Config) -> PolicyTable:
    """The run-time timeouts of every configured user level (level 0 always present)."""
    levels: dict[int, Timeouts] = {}
    for level in sorted(set(config.policy.levels) | {0}):
        lp = config.policy.level(level)
        levels[level] = Timeouts(
            handshake=float(lp.handshake),
            conn_idle=float(lp.conn_idle),
            uplink_only=float(lp.uplink_only),
            downlink_only=float(lp.downlink_only),
            buffer_size=lp.buffer_size * 1024,
        )
    return PolicyTable(levels)


def kcp_settings(stream: StreamConfig) -> KcpSettings:
    """The mKCP core settings of a ``network: "kcp"`` stream."""
    from v2py.protocol.mkcp.settings import KcpSettings

    kcp = stream.kcp
    if kcp is None:
        return KcpSettings()
    return KcpSettings(
        mtu=kcp.mtu,
        tti=kcp.tti,
        uplink_capacity=kcp.uplink_capacity,
        downlink_capacity=kcp.downlink_capacity,
        congestion=kcp.congestion,
        read_buffer_size=kcp.read_buffer_size,
        write_buffer_size=kcp.write_buffer_size,
        header_type=kcp.header_type,
        seed=kcp.seed,
    )


def _strict_udp_requested(env: Mapping[str, str]) -> bool:
    return env.get(SOCKS_STRICT_UDP_ENV, "") not in ("", "0")


def _strict_udp_workers_error(cfg: InboundConfig) -> ConfigError:
    return ConfigError(
        f"{cfg.path}.settings.udp", f"{SOCKS_STRICT_UDP_ENV} needs a single process (not --workers)"
    )


def check_single_process_switches(config: Config, env: Mapping[str, str]) -> None:
    """Raise ConfigError for an environment switch ``--workers`` cannot honour (run by
    the parent before it forks): strict socks UDP, whose ASSOCIATE connection and
    datagrams may reach different workers."""
    if not _strict_udp_requested(env):
        return
    for cfg in config.inbounds:
        if isinstance(cfg.settings, SocksInboundSettings) and cfg.settings.udp:
            raise _strict_udp_workers_error(cfg)


def socket_options(stream: StreamConfig, *, follow_redirect: bool = False) -> SocketOptions | None:
    """The ``sockopt`` of ``stream`` (None: nothing to set). An inbound that follows
    redirects gets "redirect" unless "tproxy" is set, and asks for the original
    destination (4.34 ``app/proxyman/inbound/always.go``)."""
    from v2py.transport.sockopt import SocketOptions, TproxyMode

    sockopt = stream.sockopt
    if (sockopt is None or sockopt.is_default) and not follow_redirect:
        return None
    tproxy = TproxyMode(sockopt.tproxy) if sockopt is not None else TproxyMode.OFF
    if follow_redirect and tproxy is TproxyMode.OFF:
        tproxy = TproxyMode.REDIRECT
    return SocketOptions(
        mark=sockopt.mark if sockopt is not None else 0,
        tcp_fast_open=sockopt.tcp_fast_open if sockopt is not None else None,
        tproxy=tproxy,
        receive_original_destination=follow_redirect,
    )


def build_transport(
    stream: StreamConfig, *, options: SocketOptions | None = None, source: str | None = None
) -> Transport:
    """The :class:`~v2py.transport.Transport` of one ``streamSettings``; ``options``
    (``sockopt``) and ``source`` (``sendThrough``) apply to its sockets as in 4.34: TCP
    (tcp, ws, h2) and mKCP's UDP sockets take both, QUIC's only ``options`` (its dialer
    binds the any-address), domain sockets neither."""
    from v2py.transport.stack import layered

    match stream.network:
        case "tcp" | "ws":
            return layered(stream, TcpTransport(options, source))
        case "kcp":
            return layered(stream, KcpTransport(kcp_settings(stream), options, source))
        case "h2":
            from v2py.transport.h2 import H2Transport

            assert stream.http is not None  # the loader sets it for network "h2"
            return H2Transport(
                layered(stream, TcpTransport(options, source)),
                stream.http,
                tls=stream.tls is not None,
            )
        case "quic":
            from v2py.app import entropy
            from v2py.transport.quic import QuicTransport

            assert stream.quic is not None  # the loader sets it for network "quic"
            # A nonce and header counters per datagram: pooled randomness, as mKCP.
            return QuicTransport(stream.quic, stream.tls, rng=entropy.urandom, options=options)
        case "ds":
            from v2py.transport.ds import DsTransport

            assert stream.ds is not None  # the loader sets it for network "ds"
            return layered(stream, DsTransport(stream.ds))
        case other:
            _unreachable(other)


def _sniffing(cfg: InboundConfig) -> SniffingSettings:
    return SniffingSettings(
        enabled=cfg.sniffing.enabled, dest_override=tuple(cfg.sniffing.dest_override)
    )


def _label(*parts: object) -> bytes:
    return b"\0".join(str(p).encode() for p in parts) + b"\0"


def _security(name: str) -> SecurityType:
    from v2py.protocol.vmess.constants import SecurityType

    # The config model has already mapped every accepted spelling onto these names.
    return {
        "aes-128-gcm": SecurityType.AES_128_GCM,
        "chacha20-poly1305": SecurityType.CHACHA20_POLY1305,
        "auto": SecurityType.AUTO,
        "none": SecurityType.NONE,
        "aes-128-cfb": SecurityType.LEGACY,
    }[name]


def _upstream_servers(
    servers: tuple[SocksServerConfig, ...] | tuple[HttpServerConfig, ...],
) -> list[UpstreamServer]:
    """The ``servers`` of a SOCKS or HTTP outbound."""
    from v2py.proxy.socks_outbound import UpstreamServer, UpstreamUser

    return [
        UpstreamServer(
            address=server.address,
            port=server.port,
            users=tuple(
                UpstreamUser(user=u.user, password=u.password, level=u.level) for u in server.users
            ),
        )
        for server in servers
    ]


class Builder:
    """Builds the handlers of one config for one :class:`~v2py.instance.Instance`.

    ``worker`` is set in the worker processes of ``v2py run --workers N``:
    listeners bind with SO_REUSEPORT, VMess inbounds share the replay / session /
    taint table, and dynamic ports and detour users are derived from the shared
    seed, so that every worker opens the same ports and knows the same users.
    ``inbounds`` is where a VMess ``detour`` finds its target at run time.
    Transports built here are kept in :attr:`transports` for the instance to close.
    """

    def __init__(
        self,
        config: Config,
        *,
        env: Mapping[str, str],
        inbounds: InboundManager,
        worker: WorkerContext | None = None,
        stats: TrafficStats | None = None,
        outbounds: OutboundManager | None = None,
    ) -> None:
        self.config = config
        self.stats = stats
        self.env = env
        self.worker = worker
        self.inbounds = inbounds
        # Where a ``proxySettings`` chain finds its next outbound at dial time.
        self.outbounds = outbounds
        self.policy = policy_table(config)
        # The built-in DNS (``dns`` object) for freedom's UseIP*; None: the system resolver.
        self.resolver: Resolver | None = None
        self.transports: list[Transport] = []
        self._detour_emails = self._collect_detour_emails() if worker is not None else {}

    @functools.cached_property
    def vmess_impl(self) -> VmessImpl:
        """The VMess cores' implementation; V2PY_PURE_PYTHON=1 (to compare, see
        bench/README.md): no C accelerator. Imported on first use, so a config
        without VMess never loads the VMess package (nor ``cryptography``)."""
        from v2py.protocol.vmess.impl import VmessImpl

        return VmessImpl.best(accelerated=self.env.get(PURE_PYTHON_ENV, "") in ("", "0"))

    def _socks_strict_udp(self, cfg: InboundConfig, udp: bool) -> bool:
        """Whether :data:`SOCKS_STRICT_UDP_ENV` asks for strict UDP (refused in a
        worker: see :func:`check_single_process_switches`)."""
        strict = udp and _strict_udp_requested(self.env)
        if strict and self.worker is not None:
            raise _strict_udp_workers_error(cfg)
        return strict

    def transport(
        self,
        stream: StreamConfig,
        *,
        options: SocketOptions | None = None,
        source: str | None = None,
    ) -> Transport:
        """Build and keep the transport of ``stream``."""
        transport = build_transport(stream, options=options, source=source)
        self.transports.append(transport)
        return transport

    @staticmethod
    def _socket_options(
        path: str, stream: StreamConfig, *, follow_redirect: bool = False
    ) -> SocketOptions | None:
        """:func:`socket_options`, refused with one line where the system lacks them."""
        from v2py.transport.sockopt import unsupported_reason

        options = socket_options(stream, follow_redirect=follow_redirect)
        reason = unsupported_reason(options) if options is not None else None
        if reason is not None:
            where = ".settings.followRedirect" if follow_redirect else ".streamSettings.sockopt"
            raise ConfigError(f"{path}{where}", reason)
        return options

    # -- outbounds --------------------------------------------------------
    def outbound(self, cfg: OutboundConfig) -> Outbound:
        """The outbound handler of ``cfg`` (with its traffic counters when the config
        asks for them: they exist from here on, as in 4.34)."""
        tag = cfg.tag
        stats = self.stats
        match cfg.settings:
            case FreedomSettings() as s:
                from v2py.proxy.freedom import DomainStrategy

                freedom = self._freedom(
                    cfg,
                    domain_strategy=DomainStrategy(s.domain_strategy),
                    redirect=s.redirect_override,
                    user_level=s.user_level,
                )
                return stats.direct_outbound(freedom) if stats is not None else freedom
            case DnsOutboundSettings() as s:
                from v2py.app.dns import DnsClient
                from v2py.common.net import Network, normalize_address
                from v2py.proxy.dns_outbound import DnsOutbound

                # What it forwards is dialled as 4.34's Handler.Dial dials (freedom's way,
                # one attempt) and counted as this outbound's traffic.
                forward = self._freedom(cfg, dial_delays=(0.0,))
                client = self.resolver if isinstance(self.resolver, DnsClient) else None
                return DnsOutbound(
                    tag=tag,
                    client=client or DnsClient.system(),
                    forward=stats.direct_outbound(forward) if stats is not None else forward,
                    network=Network(s.network) if s.network else None,
                    address=normalize_address(s.address) if s.address else None,
                    port=s.port or None,
                )
            case BlackholeSettings() as s:
                from v2py.proxy.blackhole import BlackholeOutbound

                if stats is not None:
                    stats.outbound_counters(tag)  # they exist and stay 0: nothing is dialed
                return BlackholeOutbound(tag=tag, response=s.response.type)
            case VmessOutboundSettings() as s:
                from v2py.proxy.vmess_outbound import VmessOutbound

                return VmessOutbound(
                    tag=tag,
                    servers=[self._server_entry(server) for server in s.vnext],
                    policy=self.policy,
                    transport=self._dial_transport(cfg),
                    aead_forced=self.config.switches.vmess_aead_forced,
                    padding=self.config.switches.vmess_padding,
                    impl=self.vmess_impl,
                )
            case VlessOutboundSettings() as s:
                from v2py.protocol.vmess.account import parse_uuid
                from v2py.proxy.vless_outbound import VlessOutbound, VlessServer, VlessUser

                return VlessOutbound(
                    tag=tag,
                    servers=[
                        VlessServer(
                            server.address,
                            server.port,
                            tuple(
                                VlessUser(parse_uuid(u.id), u.level, u.email) for u in server.users
                            ),
                        )
                        for server in s.vnext
                    ],
                    policy=self.policy,
                    transport=self._dial_transport(cfg),
                )
            case MtprotoOutboundSettings():
                from v2py.proxy.mtproto import MtprotoOutbound

                return MtprotoOutbound(
                    tag=tag, policy=self.policy, transport=self._dial_transport(cfg)
                )
            case ShadowsocksOutboundSettings() as s:
                from v2py.protocol.shadowsocks import cipher_named, password_key
                from v2py.proxy.shadowsocks_outbound import ShadowsocksOutbound, ShadowsocksServer

                chain = self._chain(cfg)
                servers = []
                for server in s.servers:
                    cipher = cipher_named(server.method)
                    servers.append(
                        ShadowsocksServer(
                            server.address,
                            server.port,
                            cipher,
                            password_key(server.password, cipher.key_size),
                            server.level,
                            server.email,
                        )
                    )
                return ShadowsocksOutbound(
                    tag=tag,
                    servers=servers,
                    policy=self.policy,
                    transport=self._dial_transport(cfg, chain),
                    open_packets=self._packet_opener(cfg, chain),
                )
            case TrojanOutboundSettings() as s:
                from v2py.proxy.trojan_outbound import TrojanOutbound, TrojanServer, TrojanUser

                return TrojanOutbound(
                    tag=tag,
                    servers=[
                        TrojanServer(
                            server.address or "",
                            server.port,
                            TrojanUser(server.password, server.level, server.email),
                        )
                        for server in s.servers
                    ],
                    policy=self.policy,
                    transport=self._dial_transport(cfg),
                )
            case SocksOutboundSettings() as s:
                from v2py.proxy.socks_outbound import SocksOutbound

                chain = self._chain(cfg)
                return SocksOutbound(
                    tag=tag,
                    servers=_upstream_servers(s.servers),
                    policy=self.policy,
                    transport=self._dial_transport(cfg, chain),
                    open_packets=self._packet_opener(cfg, chain),
                )
            case HttpOutboundSettings() as s:
                from v2py.proxy.http_outbound import HttpOutbound

                return HttpOutbound(
                    tag=tag,
                    servers=_upstream_servers(s.servers),
                    policy=self.policy,
                    transport=self._dial_transport(cfg),
                )
            case other:
                _unreachable(other)

    def _freedom(
        self,
        cfg: OutboundConfig,
        *,
        domain_strategy: DomainStrategy | None = None,
        redirect: tuple[str | None, int | None] = (None, None),
        user_level: int = 0,
        dial_delays: tuple[float, ...] | None = None,
    ) -> FreedomOutbound:
        """A freedom outbound dialling with ``cfg``'s stream, socket and chain settings."""
        from v2py.proxy.freedom import DIAL_DELAYS_S, DomainStrategy, FreedomOutbound

        chain = self._chain(cfg)
        return FreedomOutbound(
            tag=cfg.tag,
            socket_options=self._socket_options(cfg.path, cfg.stream),
            source=cfg.source_address,
            domain_strategy=domain_strategy or DomainStrategy.AS_IS,
            redirect=redirect,
            user_level=user_level,
            dial_delays=DIAL_DELAYS_S if dial_delays is None else dial_delays,
            policy=self.policy,
            resolver=self.resolver,
            transport=self._freedom_transport(cfg, chain),
            open_packets=chain.open_packets if chain is not None else None,
        )

    def _chain(self, cfg: OutboundConfig) -> ChainTransport | None:
        """Under ``proxySettings``: the dialer through the outbound with that tag."""
        if cfg.proxy_settings is None:
            return None
        from v2py.app.chain import ChainTransport

        if self.outbounds is None:
            raise ConfigError(f"{cfg.path}.proxySettings", "no outbound manager to chain through")
        stream = cfg.stream
        # 4.34 keeps only TLS of the streamSettings on a chained connection.
        if stream.network != "tcp" or (stream.tcp is not None and stream.tcp.header.type != "none"):
            log.warning(
                "%s.streamSettings: only tlsSettings applies under proxySettings (as in 4.34)",
                cfg.path,
            )
        return ChainTransport(cfg.proxy_settings.tag, self.outbounds.get)

    def _freedom_transport(
        self, cfg: OutboundConfig, chain: ChainTransport | None
    ) -> Transport | None:
        """What freedom dials TCP destinations through: None (it dials them itself)
        for plain TCP, else its ``streamSettings`` transport (TLS, ws, mKCP, h2, QUIC,
        ds, the HTTP header) or under ``proxySettings`` the chained outbound (TLS kept),
        as 4.34's freedom dials through ``Handler.Dial``. Its UDP ignores the stream
        settings (4.34's UDP dialer uses only ``sockopt``) but not the chain. Counted as
        the link's bytes (``direct_outbound``), which are the bytes of that top layer."""
        stream = cfg.stream
        if (
            chain is None
            and stream.network == "tcp"
            and stream.tls is None
            and (stream.tcp is None or stream.tcp.header.type == "none")
        ):
            return None
        return self._dial_transport(cfg, chain, counted=False)

    def _dial_transport(
        self, cfg: OutboundConfig, chain: ChainTransport | None = None, *, counted: bool = True
    ) -> Transport:
        """What an outbound dials through, with its traffic counters (unless not
        ``counted``): its ``streamSettings``, or under ``proxySettings`` the chained
        outbound with TLS (if set) on top, as 4.34's ``Handler.Dial``."""
        chain = chain or self._chain(cfg)
        transport: Transport
        if chain is None:
            transport = self.transport(
                cfg.stream,
                options=self._socket_options(cfg.path, cfg.stream),
                source=cfg.source_address,
            )
        elif cfg.stream.tls is not None:
            from v2py.transport.tls import TlsSecurity, TlsTransport

            security = TlsSecurity(
                cfg.stream.tls, network="tcp", path=f"{cfg.path}.streamSettings.tlsSettings"
            )
            transport = TlsTransport(chain, security)
            self.transports.append(transport)
        else:
            transport = chain
            self.transports.append(transport)
        if self.stats is not None and counted:
            transport = self.stats.outbound_transport(cfg.tag, transport)
        return transport

    def _packet_opener(self, cfg: OutboundConfig, chain: ChainTransport | None) -> PacketOpener:
        """How the SOCKS and Shadowsocks outbounds open their UDP channel: a UDP socket (bound to
        ``sendThrough``, with ``sockopt``), or the chained outbound's packet link under
        ``proxySettings``."""
        from v2py.proxy.socks_outbound import open_udp_channel

        if chain is None:
            return functools.partial(
                open_udp_channel,
                source=cfg.source_address,
                options=self._socket_options(cfg.path, cfg.stream),
            )
        if cfg.stream.tls is not None:

            async def refuse(host: str, port: int) -> PacketChannel:
                raise OSError("UDP through proxySettings with TLS is not supported")

            return refuse
        return chain.open_packets

    @staticmethod
    def _server_entry(server: VmessServerConfig) -> ServerEntry:
        from v2py.protocol.vmess.account import VmessUser, parse_uuid
        from v2py.proxy.vmess_outbound import ServerEntry, VmessAccount

        accounts = [
            VmessAccount(
                user=VmessUser(
                    id=parse_uuid(u.id), alter_id=u.alter_id, level=u.level, email=u.email.lower()
                ),
                security=_security(u.security),
                tests_enabled=u.tests_enabled or "",
            )
            for u in server.users
        ]
        return ServerEntry(address=server.address, port=server.port, accounts=accounts)

    # -- inbounds ---------------------------------------------------------
    def inbound(self, cfg: InboundConfig) -> InboundHandler:
        """The inbound handler (listeners + proxy) of ``cfg``; its traffic counters,
        when the config asks for them, exist from here on (as in 4.34)."""
        follow = isinstance(cfg.settings, DokodemoSettings) and cfg.settings.follow_redirect
        transport = self.transport(
            cfg.stream,
            options=self._socket_options(cfg.path, cfg.stream, follow_redirect=follow),
        )
        if self.stats is not None:
            transport = self.stats.inbound_transport(cfg.tag, transport)
        reuse_port = self.worker is not None
        if cfg.allocate is not None and cfg.allocate.strategy == "random":
            from v2py.app.dynamic import DynamicInbound

            return DynamicInbound(
                tag=cfg.tag,
                proxy_factory=lambda generation, port: self.proxy(cfg, (generation, port)),
                listen_host=cfg.listen,
                first_port=cfg.port.first,
                last_port=cfg.port.last,
                refresh_min=cfg.allocate.refresh,
                concurrency=cfg.allocate.concurrency,
                transport=transport,
                sniffing=_sniffing(cfg),
                generation_rng=self._generation_rng(cfg.tag),
                schedule_origin=self._schedule_origin(),
                reuse_port=reuse_port,
            )
        from v2py.app.inbound import AlwaysOnInbound

        return AlwaysOnInbound(
            tag=cfg.tag,
            proxy=self.proxy(cfg),
            listen_host=cfg.listen,
            ports=list(range(cfg.port.first, cfg.port.last + 1)),
            transport=transport,
            sniffing=_sniffing(cfg),
            reuse_port=reuse_port,
        )

    def proxy(self, cfg: InboundConfig, where: Where = None) -> InboundProxy:
        """The inbound protocol handler of ``cfg`` (one per port of a dynamic generation)."""
        tag = cfg.tag
        sniffing = _sniffing(cfg)
        reuse_port = self.worker is not None
        match cfg.settings:
            case SocksInboundSettings() as s:
                from v2py.proxy.socks_inbound import SocksInbound

                return SocksInbound(
                    tag=tag,
                    listen=cfg.listen,
                    port=cfg.port.first,
                    auth=s.auth,
                    accounts={a.user: a.password for a in s.accounts},
                    udp=s.udp,
                    ip=s.ip or None,
                    user_level=s.user_level,
                    policy=self.policy,
                    sniffing=sniffing,
                    reuse_port=reuse_port,
                    strict_udp=self._socks_strict_udp(cfg, s.udp),
                    # 4.34 sets sockopt on the UDP relay socket too (ListenSystemPacket).
                    socket_options=self._socket_options(cfg.path, cfg.stream) if s.udp else None,
                )
            case HttpInboundSettings() as s:
                from v2py.proxy.http_inbound import HttpInbound

                return HttpInbound(
                    tag=tag,
                    listen=cfg.listen,
                    port=cfg.port.first,
                    accounts={a.user: a.password for a in s.accounts},
                    allow_transparent=s.allow_transparent,
                    user_level=s.user_level,
                    policy=self.policy,
                    sniffing=sniffing,
                )
            case DokodemoSettings() as s:
                from v2py.proxy.dokodemo import DokodemoInbound

                return DokodemoInbound(
                    tag=tag,
                    listen=cfg.listen,
                    port=cfg.port.first,
                    address=s.address,
                    dest_port=s.port,
                    networks=tuple(s.network),
                    user_level=s.user_level,
                    policy=self.policy,
                    sniffing=sniffing,
                    reuse_port=reuse_port,
                    follow_redirect=s.follow_redirect,
                    socket_options=socket_options(cfg.stream, follow_redirect=s.follow_redirect),
                )
            case VmessInboundSettings() as s:
                return self._vmess_inbound(tag, s, where)
            case MtprotoInboundSettings() as s:
                from v2py.proxy.mtproto import MtprotoInbound

                first = s.users[0]  # 4.34 serves the first user only
                return MtprotoInbound(
                    tag=tag,
                    secret=bytes.fromhex(first.secret),
                    level=first.level,
                    email=first.email,
                    policy=self.policy,
                )
            case ShadowsocksInboundSettings() as s:
                from v2py.protocol.shadowsocks import cipher_named, password_key
                from v2py.proxy.shadowsocks_inbound import ShadowsocksInbound

                cipher = cipher_named(s.method)
                networks = set(s.network) or {"tcp"}
                if s.udp:
                    networks.add("udp")
                return ShadowsocksInbound(
                    tag=tag,
                    listen=cfg.listen,
                    port=cfg.port.first,
                    cipher=cipher,
                    key=password_key(s.password, cipher.key_size),
                    level=s.level,
                    email=s.email,
                    networks=frozenset(networks),
                    policy=self.policy,
                    reuse_port=reuse_port,
                    # 4.34's UDP worker listens with sockopt too (ListenSystemPacket).
                    socket_options=(
                        self._socket_options(cfg.path, cfg.stream) if "udp" in networks else None
                    ),
                )
            case TrojanInboundSettings() as s:
                from v2py.proxy.trojan_inbound import TrojanInbound
                from v2py.proxy.trojan_outbound import TrojanUser

                trojan_users = [TrojanUser(c.password, c.level, c.email) for c in s.clients]
                return TrojanInbound(
                    tag=tag,
                    users=trojan_users,
                    policy=self.policy,
                    fallbacks=_fallback_table(s.fallbacks, "Trojan"),
                )
            case VlessInboundSettings() as s:
                from v2py.protocol.vmess.account import parse_uuid
                from v2py.proxy.vless_inbound import VlessInbound
                from v2py.proxy.vless_outbound import VlessUser

                users = [VlessUser(parse_uuid(c.id), c.level, c.email) for c in s.clients]
                return VlessInbound(
                    tag=tag,
                    users=users,
                    policy=self.policy,
                    fallbacks=_fallback_table(s.fallbacks, "VLESS"),
                )
            case other:
                _unreachable(other)

    def _vmess_inbound(self, tag: str, s: VmessInboundSettings, where: Where) -> VmessInbound:
        from v2py.protocol.vmess.account import VmessUser, parse_uuid
        from v2py.proxy.vmess_inbound import VmessInbound

        users = [
            VmessUser(
                # The email keeps its case: 4.34 names counters and logs with it (the
                # user table compares emails case-insensitively on its own).
                id=parse_uuid(c.id),
                alter_id=c.alter_id,
                level=c.level,
                email=c.email,
            )
            for c in s.clients
        ]
        proxy = VmessInbound(
            tag=tag,
            users=users,
            policy=self.policy,
            default_level=s.default.level,
            default_alter_id=s.default.alter_id,
            disable_insecure=s.disable_insecure_encryption,
            shared_store=self.worker.store if self.worker is not None else None,
            user_ids=self._user_ids(tag, where),
            impl=self.vmess_impl,
        )
        # Workers: the detour users exist up front in every worker, since the
        # worker that announces one is rarely the one the client comes back to.
        for email in self._detour_emails.get(tag, ()):
            proxy.get_or_create_user(email)
        if s.detour_to:
            proxy.detour = self._detour_lookup(s.detour_to)
        return proxy

    def _detour_lookup(self, target_tag: str) -> DetourLookup:
        """``detour(email)``: (port, user, minutes left) on the target inbound, or None."""
        from v2py.proxy.vmess_inbound import VmessInbound

        def lookup(email: str) -> tuple[int, VmessUser, int] | None:
            handler = self.inbounds.get(target_tag)
            if handler is None:
                log.warning("vmess: detour target %r not found", target_tag)
                return None
            worker = handler.get_random_worker(int.from_bytes(os.urandom(4), "big"))
            if worker is None:
                return None
            proxy, port, minutes = worker
            if not isinstance(proxy, VmessInbound):
                return None
            return port, proxy.get_or_create_user(email), minutes

        return lookup

    # -- worker mode ------------------------------------------------------
    def _collect_detour_emails(self) -> dict[str, tuple[str, ...]]:
        """Detour target tag -> the (lower-cased) emails of the VMess clients detoured to it."""
        emails: dict[str, dict[str, None]] = {}
        for cfg in self.config.inbounds:
            s = cfg.settings
            if isinstance(s, VmessInboundSettings) and s.detour_to:
                found = emails.setdefault(s.detour_to, {})
                for client in s.clients:
                    found[client.email.lower()] = None
        return {tag: tuple(found) for tag, found in emails.items()}

    def _user_ids(self, tag: str, where: Where) -> Callable[[str], bytes] | None:
        """Detour user ids derived from the shared seed (None: random, one process)."""
        if self.worker is None:
            return None
        seed = self.worker.seed
        place = "static" if where is None else f"{where[0]}:{where[1]}"

        def user_id(email: str) -> bytes:
            label = _label("detour-user", tag, place, email)
            return hmac.digest(seed, label, hashlib.sha256)[:_USER_ID_BYTES]

        return user_id

    def _generation_rng(self, tag: str) -> Callable[[int], Callable[[int], bytes]] | None:
        if self.worker is None:
            return None
        from v2py.app.ports import derived_rng

        seed = self.worker.seed
        return lambda number: derived_rng(seed, _label("ports", tag, number))

    def _schedule_origin(self) -> float | None:
        """The parent's start instant on this loop's clock (workers only)."""
        if self.worker is None:
            return None
        try:
            offset = asyncio.get_running_loop().time() - time.monotonic()
        except RuntimeError:  # no running loop: the default one reads time.monotonic()
            offset = 0.0
        return self.worker.start_monotonic + offset


def _fallback_table(fallbacks: tuple[FallbackConfig, ...], protocol: str) -> FallbackTable | None:
    """A VLESS or Trojan inbound's fallbacks (None without any, as 4.34)."""
    if not fallbacks:
        return None
    from v2py.protocol.fallback import FallbackTable, FallbackTarget  # noqa: F811

    return FallbackTable([FallbackTarget(*entry) for entry in check_fallbacks(fallbacks, protocol)])
