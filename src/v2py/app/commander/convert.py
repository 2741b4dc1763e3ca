"""AddInbound / AddOutbound handler configs (protobuf) -> v2py's config model.

4.34 builds handlers straight from the protobuf configs (``core.AddInboundHandler``).
v2py turns each into the JSON object a config file would hold and validates it
with the same loader, so a handler added through the API means exactly what the
same handler in a config file means, and what v2py cannot do is refused with the
loader's one-line message (as a gRPC error) instead of being dropped.

Covered (what panels send): the receiver's port range, listen address, sniffing
and allocation strategy; stream settings over ``tcp`` (``acceptProxyProtocol``, no
header) or ``websocket`` (path, headers, ``acceptProxyProtocol``), each plain or with
TLS (every field of 4.34's ``tls.Config``; certificates inline); proxies
``vmess``, ``dokodemo-door``, ``shadowsocks``, ``vless`` and ``trojan`` inbound,
``freedom``, ``blackhole``, ``vmess``, ``shadowsocks``, ``vless``, ``trojan`` and ``dns``
outbound (one user per Shadowsocks / Trojan server, as 4.34's JSON writes them).
Anything else is an error naming what is not supported.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from google.protobuf.message import DecodeError, Message

from v2py.app.commander.proto import blackhole_pb2 as bpb
from v2py.app.commander.proto import core_pb2 as cpb
from v2py.app.commander.proto import dns_outbound_pb2 as dnspb
from v2py.app.commander.proto import dokodemo_pb2 as dpb
from v2py.app.commander.proto import freedom_pb2 as fpb
from v2py.app.commander.proto import internet_pb2 as ipb
from v2py.app.commander.proto import net_pb2 as npb
from v2py.app.commander.proto import protocol_pb2 as ppb
from v2py.app.commander.proto import proxyman_pb2 as mpb
from v2py.app.commander.proto import shadowsocks_pb2 as sspb
from v2py.app.commander.proto import tcp_pb2 as tcppb
from v2py.app.commander.proto import tls_pb2 as tlspb
from v2py.app.commander.proto import trojan_pb2 as tjpb
from v2py.app.commander.proto import typed_message_pb2 as tpb
from v2py.app.commander.proto import vless_inbound_pb2 as vlipb
from v2py.app.commander.proto import vless_outbound_pb2 as vlopb
from v2py.app.commander.proto import vless_pb2 as vlpb
from v2py.app.commander.proto import vmess_inbound_pb2 as vipb
from v2py.app.commander.proto import vmess_outbound_pb2 as vopb
from v2py.app.commander.proto import vmess_pb2 as vpb
from v2py.app.commander.proto import websocket_pb2 as wspb
from v2py.app.commander.services import ApiError, canonical_type
from v2py.config.load import load_inbound, load_outbound
from v2py.config.model import InboundConfig, OutboundConfig, TransportConfig
from v2py.errors import ConfigError

__all__ = ["inbound_config", "outbound_config"]

JsonObject = dict[str, Any]
_CORE = "v2ray.com/core: "
_PROXYMAN_OUTBOUND = "v2ray.com/core/app/proxyman/outbound: "
_NOT_SUPPORTED = "not supported by v2py's API"
_SECURITY_NAMES = {
    ppb.UNKNOWN: "auto",
    ppb.AUTO: "auto",
    ppb.LEGACY: "aes-128-cfb",
    ppb.AES128_GCM: "aes-128-gcm",
    ppb.CHACHA20_POLY1305: "chacha20-poly1305",
    ppb.NONE: "none",
}
_DOMAIN_STRATEGIES = {
    fpb.Config.AS_IS: "AsIs",
    fpb.Config.USE_IP: "UseIP",
    fpb.Config.USE_IP4: "UseIPv4",
    fpb.Config.USE_IP6: "UseIPv6",
}
_NETWORKS = {npb.TCP: "tcp", npb.RawTCP: "tcp", npb.UDP: "udp"}


def _unpack(typed: tpb.TypedMessage, message: Message, what: str) -> None:
    if canonical_type(typed.type) != message.DESCRIPTOR.full_name:
        raise ApiError(f"{_CORE}{what}: {typed.type!r} is {_NOT_SUPPORTED}")
    try:
        message.ParseFromString(typed.value)
    except DecodeError:
        raise ApiError(f"{_CORE}{what}: invalid {typed.type}") from None


def _address(addr: npb.IPOrDomain) -> str:
    kind = addr.WhichOneof("address")
    if kind == "ip":
        try:
            return str(ipaddress.ip_address(addr.ip))
        except ValueError:
            raise ApiError(f"{_CORE}invalid IP address of {len(addr.ip)} bytes") from None
    return addr.domain if kind == "domain" else ""


#: 4.34 ``TransportProtocol`` names (the deprecated enum, used when ``protocol_name``
#: is empty).
_TRANSPORT_NAMES: dict[int, str] = {
    ipb.TCP: "tcp",
    ipb.UDP: "udp",
    ipb.MKCP: "mkcp",
    ipb.WebSocket: "websocket",
    ipb.HTTP: "http",
    ipb.DomainSocket: "domainsocket",
}
#: The transports an API-added handler may use: 4.34's protocol name -> JSON ``network``.
_API_NETWORKS = {"tcp": "tcp", "websocket": "ws"}
_TLS_TYPE = tlspb.Config.DESCRIPTOR.full_name
_NOOP_HEADERS = frozenset(
    {
        "v2ray.core.transport.internet.headers.noop.Config",
        "v2ray.core.transport.internet.headers.noop.ConnectionConfig",
    }
)
_CERT_USAGES = {
    tlspb.Certificate.ENCIPHERMENT: "encipherment",
    tlspb.Certificate.AUTHORITY_VERIFY: "verify",
    tlspb.Certificate.AUTHORITY_ISSUE: "issue",
}


def _protocol_name(name: str, protocol: int) -> str:
    """4.34 ``GetEffectiveProtocol`` / ``TransportConfig.GetProtocolName``."""
    return name or _TRANSPORT_NAMES.get(protocol, "")


def _stream(stream: ipb.StreamConfig, what: str) -> JsonObject:
    """``streamSettings`` as a config file writes them.

    As 4.34, only the settings of the effective protocol count (the first entry of
    ``transport_settings`` naming it; none means its defaults), and the security
    settings are the ``security_settings`` entry of type ``security_type`` (none
    means an empty TLS config).
    """
    where = f"{what}.streamSettings"
    if stream.HasField("socket_settings"):
        raise ApiError(f"{_CORE}{where}.sockopt: {_NOT_SUPPORTED}")
    protocol = _protocol_name(stream.protocol_name, stream.protocol)
    network = _API_NETWORKS.get(protocol)
    if network is None:
        raise ApiError(f"{_CORE}{where}: transport {protocol!r} is {_NOT_SUPPORTED}")
    out: JsonObject = {"network": network}
    settings = next(
        (
            t.settings
            for t in stream.transport_settings
            if _protocol_name(t.protocol_name, t.protocol) == protocol
        ),
        None,
    )
    if settings is not None:
        if network == "tcp":
            out["tcpSettings"] = _tcp_settings(settings, f"{where}.tcpSettings")
        else:
            out["wsSettings"] = _ws_settings(settings, f"{where}.wsSettings")
    if stream.security_type:
        if canonical_type(stream.security_type) != _TLS_TYPE:
            raise ApiError(f"{_CORE}{where}.security: {stream.security_type!r} is {_NOT_SUPPORTED}")
        out["security"] = "tls"
        typed = next((t for t in stream.security_settings if t.type == stream.security_type), None)
        if typed is not None:
            out["tlsSettings"] = _tls_settings(typed, f"{where}.tlsSettings")
    return out


def _tcp_settings(typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = tcppb.Config()
    _unpack(typed, cfg, where)
    if cfg.HasField("header_settings") and (
        canonical_type(cfg.header_settings.type) not in _NOOP_HEADERS
    ):
        raise ApiError(f"{_CORE}{where}.header: {cfg.header_settings.type!r} is {_NOT_SUPPORTED}")
    return {"acceptProxyProtocol": cfg.accept_proxy_protocol}


def _ws_settings(typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = wspb.Config()
    _unpack(typed, cfg, where)
    headers: dict[str, str] = {}
    for header in cfg.header:
        if header.key in headers:
            # 4.34 sends each; a config file's map cannot say that.
            raise ApiError(f"{_CORE}{where}.headers: {header.key!r} twice is {_NOT_SUPPORTED}")
        headers[header.key] = header.value
    out: JsonObject = {"path": cfg.path, "acceptProxyProtocol": cfg.accept_proxy_protocol}
    if headers:
        out["headers"] = headers
    return out


def _pem_lines(data: bytes, where: str) -> list[str]:
    try:
        return data.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise ApiError(f"{_CORE}{where}: not PEM text") from None


def _tls_settings(typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = tlspb.Config()
    _unpack(typed, cfg, where)
    certificates: list[JsonObject] = []
    for index, cert in enumerate(cfg.certificate):
        at = f"{where}.certificates[{index}]"
        usage = _CERT_USAGES.get(cert.usage)
        if usage is None:
            raise ApiError(f"{_CORE}{at}.usage: {cert.usage} is {_NOT_SUPPORTED}")
        entry: JsonObject = {"certificate": _pem_lines(cert.Certificate, at), "usage": usage}
        if cert.Key:
            entry["key"] = _pem_lines(cert.Key, f"{at}.key")
        certificates.append(entry)
    return {
        "serverName": cfg.server_name,
        "allowInsecure": cfg.allow_insecure,
        "alpn": list(cfg.next_protocol),
        "certificates": certificates,
        "enableSessionResumption": cfg.enable_session_resumption,
        "disableSystemRoot": cfg.disable_system_root,
    }


def _user(user: ppb.User, *, outbound: bool) -> JsonObject:
    account = vpb.Account()
    if not user.HasField("account"):
        raise ApiError("v2ray.com/core/common/protocol: Account missing")
    _unpack(user.account, account, "user.account")
    out: JsonObject = {"id": account.id, "alterId": account.alter_id, "level": user.level}
    if user.email:
        out["email"] = user.email
    if outbound:
        out["security"] = _SECURITY_NAMES.get(account.security_settings.type, "auto")
    return out


def _vmess_inbound(typed: tpb.TypedMessage) -> JsonObject:
    cfg = vipb.Config()
    _unpack(typed, cfg, "proxySettings")
    settings: JsonObject = {
        "clients": [_user(u, outbound=False) for u in cfg.user],
        "disableInsecureEncryption": cfg.secure_encryption_only,
    }
    if cfg.HasField("default"):
        settings["default"] = {"alterId": cfg.default.alter_id, "level": cfg.default.level}
    if cfg.HasField("detour") and cfg.detour.to:
        settings["detour"] = {"to": cfg.detour.to}
    return settings


def _dokodemo(typed: tpb.TypedMessage) -> JsonObject:
    cfg = dpb.Config()
    _unpack(typed, cfg, "proxySettings")
    networks = list(cfg.networks) or list(cfg.network_list.network)
    settings: JsonObject = {
        "address": _address(cfg.address),
        "port": cfg.port,
        "network": ",".join(dict.fromkeys(_NETWORKS.get(n, "tcp") for n in networks)) or "tcp",
        "followRedirect": cfg.follow_redirect,
        "userLevel": cfg.user_level,
    }
    if cfg.timeout:
        settings["timeout"] = cfg.timeout
    return settings


def _account(user: ppb.User, account: Message) -> None:
    """Decode ``user``'s account into ``account`` (4.34 ``ToMemoryUser``)."""
    if not user.HasField("account"):
        raise ApiError("v2ray.com/core/common/protocol: Account missing")
    _unpack(user.account, account, "user.account")


def _named(user: ppb.User, entry: JsonObject) -> JsonObject:
    """``entry`` with the user's level and (when set) email."""
    entry["level"] = user.level
    if user.email:
        entry["email"] = user.email
    return entry


_SS_METHODS = {
    sspb.AES_128_GCM: "aes-128-gcm",
    sspb.AES_256_GCM: "aes-256-gcm",
    sspb.CHACHA20_POLY1305: "chacha20-poly1305",
    sspb.NONE: "none",
}
_SS = "v2ray.com/core/proxy/shadowsocks: "


def _ss_account(user: ppb.User) -> JsonObject:
    account = sspb.Account()
    _account(user, account)
    method = _SS_METHODS.get(account.cipher_type)
    if method is None:
        raise ApiError(f"{_SS}failed to parse user account > {_SS}failed to get cipher > "
                       f"{_SS}Unsupported cipher.")  # fmt: skip
    return _named(user, {"method": method, "password": account.password})


def _shadowsocks_inbound(typed: tpb.TypedMessage) -> JsonObject:
    cfg = sspb.ServerConfig()
    _unpack(typed, cfg, "proxySettings")
    if not cfg.HasField("user"):
        raise ApiError(f"{_SS}user is not specified")
    settings = _ss_account(cfg.user)
    settings["udp"] = cfg.udp_enabled
    networks = [_NETWORKS.get(n, "tcp") for n in cfg.network]
    if networks:
        settings["network"] = ",".join(dict.fromkeys(networks))
    return settings


def _fallbacks(entries: Any) -> list[JsonObject]:
    """Fallbacks as 4.34's loader left them (a ``type`` set, ``dest`` resolved)."""
    return [
        {"alpn": f.alpn, "path": f.path, "type": f.type, "dest": f.dest, "xver": f.xver}
        for f in entries
    ]


def _vless_user(user: ppb.User, *, outbound: bool) -> JsonObject:
    account = vlpb.Account()
    _account(user, account)
    entry: JsonObject = {"id": account.id, "flow": account.flow}
    if outbound:
        entry["encryption"] = account.encryption
    return _named(user, entry)


def _vless_inbound(typed: tpb.TypedMessage) -> JsonObject:
    cfg = vlipb.Config()
    _unpack(typed, cfg, "proxySettings")
    return {
        "clients": [_vless_user(u, outbound=False) for u in cfg.clients],
        # 4.34's handler never looks at it (its JSON loader wants "none").
        "decryption": cfg.decryption or "none",
        "fallbacks": _fallbacks(cfg.fallbacks),
    }


def _trojan_user(user: ppb.User) -> JsonObject:
    account = tjpb.Account()
    _account(user, account)
    return _named(user, {"password": account.password})


def _trojan_inbound(typed: tpb.TypedMessage) -> JsonObject:
    cfg = tjpb.ServerConfig()
    _unpack(typed, cfg, "proxySettings")
    return {
        "clients": [_trojan_user(u) for u in cfg.users],
        "fallbacks": _fallbacks(cfg.fallbacks),
    }


_INBOUND_PROXIES: dict[str, tuple[str, Callable[[tpb.TypedMessage], JsonObject]]] = {
    "v2ray.core.proxy.vmess.inbound.Config": ("vmess", _vmess_inbound),
    "v2ray.core.proxy.dokodemo.Config": ("dokodemo-door", _dokodemo),
    "v2ray.core.proxy.shadowsocks.ServerConfig": ("shadowsocks", _shadowsocks_inbound),
    "v2ray.core.proxy.vless.inbound.Config": ("vless", _vless_inbound),
    "v2ray.core.proxy.trojan.ServerConfig": ("trojan", _trojan_inbound),
}


def inbound_config(
    handler: cpb.InboundHandlerConfig, transport: TransportConfig | None = None
) -> InboundConfig:
    """The config model of an AddInbound request; raises ApiError. ``transport``: the
    running config's top-level one (4.34's global transport settings)."""
    if not handler.HasField("receiver_settings"):
        raise ApiError(f"{_CORE}not a ReceiverConfig")  # 4.34 panics here
    if not handler.HasField("proxy_settings"):
        raise ApiError(f"{_CORE}missing proxy settings")  # 4.34 panics here too
    receiver = mpb.ReceiverConfig()
    _unpack(handler.receiver_settings, receiver, "receiverSettings")
    data: JsonObject = {"tag": handler.tag}
    if receiver.HasField("port_range"):
        first, last = receiver.port_range.From, receiver.port_range.To
        data["port"] = first if first == last else f"{first}-{last}"
    if receiver.HasField("listen"):
        data["listen"] = _address(receiver.listen)
    if receiver.HasField("stream_settings"):
        data["streamSettings"] = _stream(receiver.stream_settings, "inbound")
    if receiver.receive_original_destination or receiver.domain_override:
        raise ApiError(f"{_CORE}receiveOriginalDestination/domainOverride: {_NOT_SUPPORTED}")
    if receiver.HasField("sniffing_settings"):
        data["sniffing"] = {
            "enabled": receiver.sniffing_settings.enabled,
            "destOverride": list(receiver.sniffing_settings.destination_override),
        }
    strategy = receiver.allocation_strategy
    if receiver.HasField("allocation_strategy") and strategy.type != mpb.AllocationStrategy.Always:
        if strategy.type != mpb.AllocationStrategy.Random:
            raise ApiError(f"{_CORE}unknown allocation strategy")
        allocate: JsonObject = {"strategy": "random"}
        if strategy.HasField("refresh"):
            allocate["refresh"] = strategy.refresh.value
        if strategy.HasField("concurrency"):
            allocate["concurrency"] = strategy.concurrency.value
        data["allocate"] = allocate
    found = _INBOUND_PROXIES.get(canonical_type(handler.proxy_settings.type))
    if found is None:
        raise ApiError(f"{_CORE}inbound proxy {handler.proxy_settings.type!r} is {_NOT_SUPPORTED}")
    data["protocol"], build = found
    data["settings"] = build(handler.proxy_settings)
    try:
        return load_inbound(data, "inbound", transport)
    except ConfigError as exc:
        raise ApiError(f"{_CORE}{exc}") from None


def _freedom(typed: tpb.TypedMessage) -> JsonObject:
    cfg = fpb.Config()
    _unpack(typed, cfg, "proxySettings")
    settings: JsonObject = {
        "domainStrategy": _DOMAIN_STRATEGIES.get(cfg.domain_strategy, "AsIs"),
        "userLevel": cfg.user_level,
    }
    if cfg.HasField("destination_override"):
        server = cfg.destination_override.server
        settings["redirect"] = f"{_address(server.address)}:{server.port}"
    return settings


def _blackhole(typed: tpb.TypedMessage) -> JsonObject:
    cfg = bpb.Config()
    _unpack(typed, cfg, "proxySettings")
    kind = canonical_type(cfg.response.type)
    return {"response": {"type": "http" if kind.endswith("HTTPResponse") else "none"}}


def _vnext(
    receivers: Iterable[ppb.ServerEndpoint], user: Callable[[ppb.User], JsonObject]
) -> JsonObject:
    """VMess / VLESS ``vnext``: each server with all its users."""
    return {
        "vnext": [
            {
                "address": _address(r.address),
                "port": r.port,
                "users": [user(u) for u in r.user],
            }
            for r in receivers
        ]
    }


def _servers(
    servers: Iterable[ppb.ServerEndpoint], account: Callable[[ppb.User], JsonObject]
) -> JsonObject:
    """Shadowsocks / Trojan ``servers``: each server with its one user's account."""
    return {
        "servers": [
            {"address": _address(r.address), "port": r.port, **account(_one_user(r))}
            for r in servers
        ]
    }


def _one_user(endpoint: ppb.ServerEndpoint) -> ppb.User:
    """The user of a Shadowsocks or Trojan server (4.34's JSON gives each one user)."""
    if len(endpoint.user) != 1:
        raise ApiError(f"{_CORE}a server with {len(endpoint.user)} users is {_NOT_SUPPORTED}")
    return endpoint.user[0]


def _vmess_outbound(typed: tpb.TypedMessage) -> JsonObject:
    cfg = vopb.Config()
    _unpack(typed, cfg, "proxySettings")
    return _vnext(cfg.Receiver, lambda u: _user(u, outbound=True))


def _shadowsocks_outbound(typed: tpb.TypedMessage) -> JsonObject:
    cfg = sspb.ClientConfig()
    _unpack(typed, cfg, "proxySettings")
    return _servers(cfg.server, _ss_account)


def _vless_outbound(typed: tpb.TypedMessage) -> JsonObject:
    cfg = vlopb.Config()
    _unpack(typed, cfg, "proxySettings")
    return _vnext(cfg.vnext, lambda u: _vless_user(u, outbound=True))


def _trojan_outbound(typed: tpb.TypedMessage) -> JsonObject:
    cfg = tjpb.ClientConfig()
    _unpack(typed, cfg, "proxySettings")
    return _servers(cfg.server, _trojan_user)


def _dns_outbound(typed: tpb.TypedMessage) -> JsonObject:
    cfg = dnspb.Config()
    _unpack(typed, cfg, "proxySettings")
    settings: JsonObject = {}
    if cfg.HasField("server"):
        server = cfg.server
        network = {**_NETWORKS, npb.UNIX: "unix"}.get(server.network)
        if network is not None:  # Unknown: keep each query's own
            settings["network"] = network
        if server.HasField("address"):
            settings["address"] = _address(server.address)
        if server.port:
            settings["port"] = server.port
    return settings


_OUTBOUND_PROXIES: dict[str, tuple[str, Callable[[tpb.TypedMessage], JsonObject]]] = {
    "v2ray.core.proxy.freedom.Config": ("freedom", _freedom),
    "v2ray.core.proxy.blackhole.Config": ("blackhole", _blackhole),
    "v2ray.core.proxy.vmess.outbound.Config": ("vmess", _vmess_outbound),
    "v2ray.core.proxy.shadowsocks.ClientConfig": ("shadowsocks", _shadowsocks_outbound),
    "v2ray.core.proxy.vless.outbound.Config": ("vless", _vless_outbound),
    "v2ray.core.proxy.trojan.ClientConfig": ("trojan", _trojan_outbound),
    "v2ray.core.proxy.dns.Config": ("dns", _dns_outbound),
}


def outbound_config(
    handler: cpb.OutboundHandlerConfig, transport: TransportConfig | None = None
) -> OutboundConfig:
    """The config model of an AddOutbound request; raises ApiError. ``transport`` as
    for :func:`inbound_config`."""
    if not handler.HasField("proxy_settings"):
        raise ApiError(f"{_CORE}missing proxy settings")  # 4.34 panics here
    data: JsonObject = {"tag": handler.tag}
    if handler.HasField("sender_settings"):
        sender = mpb.SenderConfig()
        _unpack(handler.sender_settings, sender, "senderSettings")
        if sender.HasField("via") or sender.HasField("proxy_settings"):
            raise ApiError(f"{_CORE}sendThrough/proxySettings: {_NOT_SUPPORTED}")
        if sender.HasField("stream_settings"):
            data["streamSettings"] = _stream(sender.stream_settings, "outbound")
        if sender.HasField("multiplex_settings"):
            # 4.34 (app/proxyman/outbound/handler.go) checks the concurrency whenever
            # the message is present, enabled or not.
            mux = sender.multiplex_settings
            if not 1 <= mux.concurrency <= 1024:
                raise ApiError(f"{_PROXYMAN_OUTBOUND}invalid mux concurrency: {mux.concurrency}")
            if mux.enabled:
                data["mux"] = {"enabled": True, "concurrency": mux.concurrency}
    found = _OUTBOUND_PROXIES.get(canonical_type(handler.proxy_settings.type))
    if found is None:
        raise ApiError(f"{_CORE}outbound proxy {handler.proxy_settings.type!r} is {_NOT_SUPPORTED}")
    data["protocol"], build = found
    data["settings"] = build(handler.proxy_settings)
    try:
        return load_outbound(data, "outbound", transport)
    except ConfigError as exc:
        raise ApiError(f"{_CORE}{exc}") from None
