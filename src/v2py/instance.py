"""A running v2py: inbounds, outbounds and the dispatcher built from a config (v2ray.go).

Wiring is by hand, one explicit branch per protocol; no reflection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from v2py.app.dispatcher import Dispatcher
from v2py.app.inbound import AlwaysOnInbound
from v2py.app.policy import PolicyTable, Timeouts
from v2py.app.session import SniffingSettings
from v2py.app.shared_state import WorkerContext
from v2py.errors import ConfigError
from v2py.proxy.base import Outbound

log = logging.getLogger(__name__)

#: Bound on closing one inbound (or the mKCP dialer) at shutdown.
CLOSE_TIMEOUT_S = 5.0


def _policy_table(config: Any) -> PolicyTable:
    policy = config.policy
    levels: dict[int, Timeouts] = {}
    for level in sorted(set(getattr(policy, "levels", {}) or {}) | {0}):
        lp = policy.level(int(level))
        levels[int(level)] = Timeouts(
            handshake=float(lp.handshake),
            conn_idle=float(lp.conn_idle),
            uplink_only=float(lp.uplink_only),
            downlink_only=float(lp.downlink_only),
            buffer_size=int(lp.buffer_size) * 1024 if lp.buffer_size is not None else 512 * 1024,
        )
    return PolicyTable(levels)


def _kcp_settings(stream: Any) -> Any:
    """The mKCP core settings for a ``streamSettings`` (None unless network is kcp)."""
    if stream is None or stream.network != "kcp":
        return None
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
        header_type=kcp.header_type,  # a property of KcpConfig (header.type)
        seed=kcp.seed,
    )


def _sniffing(cfg: Any) -> SniffingSettings:
    sniff = getattr(cfg, "sniffing", None)
    if sniff is None:
        return SniffingSettings()
    return SniffingSettings(enabled=bool(sniff.enabled), dest_override=tuple(sniff.dest_override))


def _accounts(items: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for acc in items or ():
        user = getattr(acc, "user", "")
        password = getattr(acc, "password", getattr(acc, "pass_", ""))
        out[user] = password
    return out


#: Bytes of a VMess user id.
_USER_ID_BYTES = 16


def _label(*parts: object) -> bytes:
    return b"\0".join(str(p).encode() for p in parts) + b"\0"


def _detour_emails(config: Any) -> dict[str, tuple[str, ...]]:
    """Detour target tag -> the (lower-cased) emails of the VMess clients detoured to it."""
    emails: dict[str, dict[str, None]] = {}
    for cfg in config.inbounds:
        s = cfg.settings
        if cfg.protocol == "vmess" and getattr(s, "detour_to", None):
            found = emails.setdefault(s.detour_to, {})
            for client in s.clients:
                found[(client.email or "").lower()] = None
    return {tag: tuple(found) for tag, found in emails.items()}


class Instance:
    """Everything one config describes, started and stopped as a unit.

    ``worker`` is set in the worker processes of ``v2py run --workers N``: listeners
    bind with SO_REUSEPORT, VMess inbounds share the replay / session / taint table,
    and dynamic ports and detour users are derived from the shared seed, so that
    every worker opens the same ports and knows the same users.
    """

    def __init__(
        self,
        config: Any,
        *,
        env: Mapping[str, str] | None = None,
        worker: WorkerContext | None = None,
    ) -> None:
        self.config = config
        self.worker = worker
        self._reuse_port = worker is not None
        self.env = dict(os.environ if env is None else env)
        self.policy = _policy_table(config)
        # mKCP client sockets outlive a graceful close by seconds (the close handshake);
        # this instance's dialer lets close() end them with the instance.
        self._kcp_dialer: Any = None
        self.outbounds: list[Outbound] = [self._build_outbound(o) for o in config.outbounds]
        if not self.outbounds:
            from v2py.proxy.freedom import FreedomOutbound

            self.outbounds.append(FreedomOutbound(tag="", policy=self.policy))
        self.dispatcher = Dispatcher(self.outbounds)
        self.inbounds: list[Any] = []
        self._by_tag: dict[str, Any] = {}
        self._vmess_pending_detour: list[tuple[Any, str]] = []
        self._detour_emails = _detour_emails(config) if worker is not None else {}
        for inbound_cfg in config.inbounds:
            handler = self._build_inbound(inbound_cfg)
            self.inbounds.append(handler)
            if inbound_cfg.tag:
                self._by_tag[inbound_cfg.tag] = handler
        for proxy, target in self._vmess_pending_detour:
            proxy.detour = self._detour_lookup(target)

    @classmethod
    def from_config(
        cls,
        config: Any,
        *,
        env: Mapping[str, str] | None = None,
        worker: WorkerContext | None = None,
    ) -> Instance:
        return cls(config, env=env, worker=worker)

    # -- outbounds --------------------------------------------------------
    def _build_outbound(self, cfg: Any) -> Outbound:
        protocol = cfg.protocol
        s = cfg.settings
        tag = cfg.tag or ""
        if protocol == "freedom":
            from v2py.proxy.freedom import FreedomOutbound

            return FreedomOutbound(
                tag=tag,
                domain_strategy=getattr(s, "domain_strategy", "AsIs") if s else "AsIs",
                redirect=(getattr(s, "redirect", None) or None) if s else None,
                user_level=getattr(s, "user_level", 0) if s else 0,
                policy=self.policy,
            )
        if protocol == "blackhole":
            from v2py.proxy.blackhole import BlackholeOutbound

            response = getattr(getattr(s, "response", None), "type", "none") if s else "none"
            return BlackholeOutbound(tag=tag, response=response or "none")
        if protocol == "vmess":
            from v2py.protocol.vmess.account import VmessUser, parse_uuid
            from v2py.protocol.vmess.constants import SecurityType
            from v2py.proxy.vmess_outbound import ServerEntry, VmessAccount, VmessOutbound

            security_names = {
                "aes-128-gcm": SecurityType.AES_128_GCM,
                "chacha20-poly1305": SecurityType.CHACHA20_POLY1305,
                "auto": SecurityType.AUTO,
                "none": SecurityType.NONE,
                "aes-128-cfb": SecurityType.LEGACY,
            }
            servers = []
            for server in s.vnext:
                accounts = [
                    VmessAccount(
                        user=VmessUser(
                            id=parse_uuid(u.id),
                            alter_id=u.alter_id,
                            level=u.level,
                            email=(u.email or "").lower(),
                        ),
                        security=security_names[(u.security or "auto").lower()],
                        tests_enabled=u.tests_enabled or "",
                    )
                    for u in server.users
                ]
                servers.append(
                    ServerEntry(address=server.address, port=server.port, accounts=accounts)
                )
            return VmessOutbound(
                tag=tag,
                servers=servers,
                policy=self.policy,
                network=cfg.stream.network if cfg.stream else "tcp",
                kcp=_kcp_settings(cfg.stream),
                kcp_dialer=self._kcp_dialer_for(cfg.stream),
                env=self.env,
            )
        raise ConfigError(
            cfg_path(cfg, "protocol"), f"outbound protocol {protocol!r} is not available"
        )

    def _kcp_dialer_for(self, stream: Any) -> Any:
        if stream is None or stream.network != "kcp":
            return None
        if self._kcp_dialer is None:
            from v2py.transport.mkcp import KcpDialer

            self._kcp_dialer = KcpDialer()
        return self._kcp_dialer

    # -- worker mode ------------------------------------------------------
    def _user_ids(self, tag: str, where: tuple[int, int] | None) -> Callable[[str], bytes] | None:
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

    # -- inbounds ---------------------------------------------------------
    def _build_proxy(self, cfg: Any, where: tuple[int, int] | None = None) -> Any:
        protocol = cfg.protocol
        s = cfg.settings
        tag = cfg.tag or ""
        sniffing = _sniffing(cfg)
        if protocol == "socks":
            from v2py.proxy.socks_inbound import SocksInbound

            return SocksInbound(
                tag=tag,
                listen=cfg.listen,
                port=cfg.port.first,
                auth=s.auth,
                accounts=_accounts(s.accounts),
                udp=s.udp,
                ip=s.ip or None,
                user_level=s.user_level,
                policy=self.policy,
                sniffing=sniffing,
                reuse_port=self._reuse_port,
            )
        if protocol == "http":
            from v2py.proxy.http_inbound import HttpInbound

            return HttpInbound(
                tag=tag,
                listen=cfg.listen,
                port=cfg.port.first,
                accounts=_accounts(s.accounts),
                allow_transparent=s.allow_transparent,
                user_level=s.user_level,
                policy=self.policy,
                sniffing=sniffing,
            )
        if protocol == "dokodemo-door":
            from v2py.proxy.dokodemo import DokodemoInbound

            return DokodemoInbound(
                tag=tag,
                listen=cfg.listen,
                port=cfg.port.first,
                address=s.address,
                dest_port=s.port,
                networks=tuple(s.network)
                if not isinstance(s.network, str)
                else tuple(n.strip() for n in s.network.split(",") if n.strip()),
                user_level=s.user_level,
                policy=self.policy,
                sniffing=sniffing,
                reuse_port=self._reuse_port,
            )
        if protocol == "vmess":
            from v2py.protocol.vmess.account import VmessUser, parse_uuid
            from v2py.proxy.vmess_inbound import VmessInbound

            users = [
                VmessUser(
                    id=parse_uuid(c.id),
                    alter_id=c.alter_id,
                    level=c.level,
                    email=(c.email or "").lower(),
                )
                for c in s.clients
            ]
            default = s.default
            proxy = VmessInbound(
                tag=tag,
                users=users,
                policy=self.policy,
                default_level=default.level if default else 0,
                default_alter_id=default.alter_id if default else 0,
                disable_insecure=s.disable_insecure_encryption,
                shared_store=self.worker.store if self.worker is not None else None,
                user_ids=self._user_ids(tag, where),
            )
            # Workers: the detour users exist up front in every worker, since the
            # worker that announces one is rarely the one the client comes back to.
            for email in self._detour_emails.get(tag, ()):
                proxy.get_or_create_user(email)
            if s.detour_to:
                self._vmess_pending_detour.append((proxy, s.detour_to))
            return proxy
        raise ConfigError(
            cfg_path(cfg, "protocol"), f"inbound protocol {protocol!r} is not available"
        )

    def _build_inbound(self, cfg: Any) -> Any:
        stream = cfg.stream
        network = stream.network if stream else "tcp"
        kcp = _kcp_settings(stream)
        if cfg.allocate is not None and cfg.allocate.strategy == "random":
            from v2py.app.dynamic import DynamicInbound

            return DynamicInbound(
                tag=cfg.tag or "",
                proxy_factory=lambda generation, port: self._build_proxy(cfg, (generation, port)),
                listen_host=cfg.listen,
                first_port=cfg.port.first,
                last_port=cfg.port.last,
                refresh_min=cfg.allocate.refresh,
                concurrency=cfg.allocate.concurrency,
                network=network,
                kcp=kcp,
                sniffing=_sniffing(cfg),
                generation_rng=self._generation_rng(cfg.tag or ""),
                schedule_origin=self._schedule_origin(),
                reuse_port=self._reuse_port,
            )
        return AlwaysOnInbound(
            tag=cfg.tag or "",
            proxy=self._build_proxy(cfg),
            listen_host=cfg.listen,
            ports=list(range(cfg.port.first, cfg.port.last + 1)),
            network=network,
            kcp=kcp,
            sniffing=_sniffing(cfg),
            reuse_port=self._reuse_port,
        )

    def _detour_lookup(self, target_tag: str) -> Any:
        def lookup(email: str) -> Any:
            handler = self._by_tag.get(target_tag)
            if handler is None:
                log.warning("vmess: detour target %r not found", target_tag)
                return None
            worker = handler.get_random_worker(int.from_bytes(os.urandom(4), "big"))
            if worker is None:
                return None
            proxy, port, minutes = worker
            if not hasattr(proxy, "get_or_create_user"):
                return None
            return port, proxy.get_or_create_user(email), minutes

        return lookup

    # -- lifecycle --------------------------------------------------------
    async def start(self) -> None:
        try:
            for inbound in self.inbounds:
                await inbound.start(self.dispatcher)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for inbound in self.inbounds:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await inbound.close()
        if self._kcp_dialer is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await self._kcp_dialer.aclose(grace=0.0)


def cfg_path(cfg: Any, key: str) -> str:
    base = getattr(cfg, "path", "") or ""
    return f"{base}.{key}" if base else key
