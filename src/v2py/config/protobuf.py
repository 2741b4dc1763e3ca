"""Protobuf configs (``v2ray -format pb``): a serialized 4.34 ``v2ray.core.Config``
-> the JSON object a config file would hold.

4.34 (``config.go`` ``loadProtobufConfig``) reads the bytes ``v2ctl config a.json``
writes: the handlers (``core.InboundHandlerConfig`` / ``OutboundHandlerConfig``) and
the apps as TypedMessages. v2py turns them back into 4.34's JSON format and loads
that with the JSON loader, so a pb config means exactly what its JSON means and is
checked the same way. The handler part is shared with the gRPC API (AddInbound /
AddOutbound, ``v2py.app.commander.convert``).

What ``v2ctl config`` cannot have written from JSON, or what the JSON format cannot
say, is refused with one :class:`~v2py.errors.ConfigError` naming the protobuf path
(``app[4] (v2ray.core.app.router.Config).rule[0].port_list``), never dropped. In a
config file a field v2py's messages do not declare is refused too (4.34 skips
unknown fields; an unknown field here could be a 4.34 field v2py forgot).

Pure: bytes in, JSON object out. The generated message modules live beside the gRPC
API (``v2py/app/commander/proto``); they are data, no shell code.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from v2py.app.commander.proto import app_log_pb2 as logpb
from v2py.app.commander.proto import blackhole_pb2 as bpb
from v2py.app.commander.proto import commander_pb2 as cmdpb
from v2py.app.commander.proto import common_log_pb2 as clogpb
from v2py.app.commander.proto import core_config_pb2 as ccpb
from v2py.app.commander.proto import core_pb2 as cpb
from v2py.app.commander.proto import dispatcher_pb2 as disppb
from v2py.app.commander.proto import dns_app_pb2 as dnsapb
from v2py.app.commander.proto import dns_outbound_pb2 as dnspb
from v2py.app.commander.proto import dokodemo_pb2 as dpb
from v2py.app.commander.proto import domainsocket_pb2 as dspb
from v2py.app.commander.proto import freedom_pb2 as fpb
from v2py.app.commander.proto import http_header_pb2 as hhpb
from v2py.app.commander.proto import http_pb2 as httppb
from v2py.app.commander.proto import http_transport_pb2 as h2pb
from v2py.app.commander.proto import internet_pb2 as ipb
from v2py.app.commander.proto import kcp_pb2 as kcppb
from v2py.app.commander.proto import mtproto_pb2 as mtpb
from v2py.app.commander.proto import net_pb2 as npb
from v2py.app.commander.proto import policy_pb2 as polpb
from v2py.app.commander.proto import port_list_pb2 as plpb
from v2py.app.commander.proto import protocol_pb2 as ppb
from v2py.app.commander.proto import proxyman_apps_pb2 as mapb
from v2py.app.commander.proto import proxyman_pb2 as mpb
from v2py.app.commander.proto import quic_transport_pb2 as quicpb
from v2py.app.commander.proto import reverse_pb2 as revpb
from v2py.app.commander.proto import router_pb2 as rpb
from v2py.app.commander.proto import shadowsocks_pb2 as sspb
from v2py.app.commander.proto import socks_pb2 as sockspb
from v2py.app.commander.proto import stats_pb2 as statspb
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
from v2py.app.geo_proto import geodata_pb2 as gpb
from v2py.errors import ConfigError

__all__ = [
    "NOT_SUPPORTED",
    "Decoder",
    "ProtobufError",
    "config_json",
    "inbound_json",
    "outbound_json",
]

JsonObject = dict[str, Any]
NOT_SUPPORTED = "not supported by v2py"
_IN_PB = "not supported in protobuf configs"


class ProtobufError(ConfigError):
    """A :class:`ConfigError` that may carry 4.34's own error text (``go_text``), which
    the gRPC API answers with where 4.34 fails the same way."""

    def __init__(self, path: str, message: str, go_text: str | None = None) -> None:
        super().__init__(path, message)
        self.go_text = go_text


def _same(name: str) -> str:
    return name


@dataclass(frozen=True, slots=True)
class Decoder:
    """How TypedMessages are read.

    ``strict``: refuse fields the messages do not declare (config files); the API is
    lenient there, as 4.34. ``canonical`` maps a type name to 4.34's (the API also
    takes Xray's ``xray.*`` names).
    """

    strict: bool = True
    canonical: Callable[[str], str] = field(default=_same)

    def unpack(self, typed: tpb.TypedMessage, message: Message, where: str) -> str:
        """Decode ``typed`` into ``message``; returns the path of its fields
        (``where (full.Name)``). Raises ProtobufError."""
        name = message.DESCRIPTOR.full_name
        if self.canonical(typed.type) != name:
            raise ProtobufError(where, f"{typed.type!r} is {NOT_SUPPORTED} here")
        at = f"{where} ({name})"
        try:
            message.ParseFromString(typed.value)
        except DecodeError:
            raise ProtobufError(at, "invalid protobuf message") from None
        self.check(message, at)
        return at

    def check(self, message: Message, at: str) -> None:
        """In strict mode, refuse a field ``message`` (or a message in it) does not
        declare."""
        if self.strict:
            _check_known(message, at)


def _check_known(message: Message, at: str) -> None:
    unknown = UnknownFieldSet(message)
    if len(unknown):
        number = unknown[0].field_number
        raise ProtobufError(
            at, f"field {number} is unknown to v2py (not in 4.34's {message.DESCRIPTOR.full_name})"
        )
    for desc, value in message.ListFields():
        if desc.message_type is None:
            continue
        if desc.message_type.GetOptions().map_entry:
            value_desc = desc.message_type.fields_by_name["value"]
            if value_desc.message_type is not None:
                for key, item in value.items():
                    _check_known(item, f"{at}.{desc.name}[{key!r}]")
        elif desc.is_repeated:
            for index, item in enumerate(value):
                _check_known(item, f"{at}.{desc.name}[{index}]")
        else:
            _check_known(value, f"{at}.{desc.name}")


def _ip_text(data: bytes, where: str) -> str:
    if len(data) not in (4, 16):
        raise ProtobufError(where, f"invalid IP address of {len(data)} bytes")
    return str(ipaddress.ip_address(data))


def _address(addr: npb.IPOrDomain, where: str) -> str:
    kind = addr.WhichOneof("address")
    if kind == "ip":
        return _ip_text(addr.ip, f"{where}.ip")
    return addr.domain if kind == "domain" else ""


# -- stream settings -------------------------------------------------------------------

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
#: The transports read from protobuf: 4.34's protocol name -> JSON ``network``.
_NETWORK_NAMES = {
    "tcp": "tcp",
    "websocket": "ws",
    "mkcp": "kcp",
    "quic": "quic",
    "domainsocket": "domainsocket",
    "http": "http",
}
#: The mKCP / QUIC packet headers (4.34 ``kcpHeaderLoader``): message -> JSON ``type``.
#: 4.34's JSON makes each with no field set, so only such a message has a JSON form.
_PACKET_HEADERS = {
    "v2ray.core.transport.internet.headers.noop.Config": "none",
    "v2ray.core.transport.internet.headers.srtp.Config": "srtp",
    "v2ray.core.transport.internet.headers.utp.Config": "utp",
    "v2ray.core.transport.internet.headers.wechat.VideoConfig": "wechat-video",
    "v2ray.core.transport.internet.headers.tls.PacketConfig": "dtls",
    "v2ray.core.transport.internet.headers.wireguard.WireguardConfig": "wireguard",
}
_MIB = 1024 * 1024
#: mKCP buffer size 4.34's JSON gives ``readBufferSize`` / ``writeBufferSize`` 0.
_KCP_ZERO_BUFFER = 512 * 1024
_QUIC_SECURITIES = {
    ppb.AES128_GCM: "aes-128-gcm",
    ppb.CHACHA20_POLY1305: "chacha20-poly1305",
    ppb.NONE: "none",
}
_TLS_TYPE = tlspb.Config.DESCRIPTOR.full_name
_NOOP_HEADERS = frozenset(
    {
        "v2ray.core.transport.internet.headers.noop.Config",
        "v2ray.core.transport.internet.headers.noop.ConnectionConfig",
    }
)
_CERT_USAGES: dict[int, str] = {
    tlspb.Certificate.ENCIPHERMENT: "encipherment",
    tlspb.Certificate.AUTHORITY_VERIFY: "verify",
    tlspb.Certificate.AUTHORITY_ISSUE: "issue",
}


def _protocol_name(name: str, protocol: int) -> str:
    """4.34 ``GetEffectiveProtocol`` / ``TransportConfig.GetProtocolName``."""
    return name or _TRANSPORT_NAMES.get(protocol, "")


def stream_json(dec: Decoder, stream: ipb.StreamConfig, where: str) -> JsonObject:
    """``streamSettings`` as a config file writes them.

    As 4.34, only the settings of the effective protocol count (the first entry of
    ``transport_settings`` naming it; none means its defaults), and the security
    settings are the ``security_settings`` entry of type ``security_type`` (none
    means an empty TLS config). Raises ProtobufError.
    """
    protocol = _protocol_name(stream.protocol_name, stream.protocol)
    network = _NETWORK_NAMES.get(protocol)
    if network is None:
        raise ProtobufError(
            f"{where}.protocol_name", f"transport {protocol!r} is {NOT_SUPPORTED} here"
        )
    out: JsonObject = {"network": network}
    if stream.HasField("socket_settings"):
        out["sockopt"] = _sockopt(stream.socket_settings, f"{where}.socket_settings")
    found = next(
        (
            (index, t.settings)
            for index, t in enumerate(stream.transport_settings)
            if _protocol_name(t.protocol_name, t.protocol) == protocol
        ),
        None,
    )
    if found is not None:
        index, settings = found
        at = f"{where}.transport_settings[{index}].settings"
        key, build = _TRANSPORT_SETTINGS[network]
        out[key] = build(dec, settings, at)
    if stream.security_type:
        if dec.canonical(stream.security_type) != _TLS_TYPE:
            raise ProtobufError(
                f"{where}.security_type",
                f"{stream.security_type!r} (streamSettings.security) is {NOT_SUPPORTED}",
            )
        out["security"] = "tls"
        typed = next(
            (
                (index, t)
                for index, t in enumerate(stream.security_settings)
                if t.type == stream.security_type
            ),
            None,
        )
        if typed is not None:
            at = f"{where}.security_settings[{typed[0]}]"
            out["tlsSettings"] = _tls_settings(dec, typed[1], at)
    return out


def _tcp_settings(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = tcppb.Config()
    at = dec.unpack(typed, cfg, where)
    out: JsonObject = {"acceptProxyProtocol": cfg.accept_proxy_protocol}
    if not cfg.HasField("header_settings"):
        return out
    header = cfg.header_settings
    kind = dec.canonical(header.type)
    if kind == _HTTP_HEADER_TYPE:
        out["header"] = _http_header(dec, header, f"{at}.header_settings")
    elif kind not in _NOOP_HEADERS:
        raise ProtobufError(
            f"{at}.header_settings",
            f"header {header.type!r} (tcpSettings.header) is {NOT_SUPPORTED} here",
        )
    return out


_HTTP_HEADER_TYPE = hhpb.Config.DESCRIPTOR.full_name


def _http_header(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    """The TCP ``http`` header (4.34 ``Authenticator.Build``): both templates, each
    with what 4.34's JSON can write (a set value is never empty; headers either its
    defaults or sorted by name, as it writes a JSON map)."""
    from v2py.config.stream import DEFAULT_REQUEST_HEADERS, DEFAULT_RESPONSE_HEADERS

    cfg = hhpb.Config()
    at = dec.unpack(typed, cfg, where)
    for part in ("request", "response"):
        if not cfg.HasField(part):
            raise ProtobufError(f"{at}.{part}", f"a missing template is {_IN_PB}")
    req, resp = cfg.request, cfg.response
    request: JsonObject = {}
    response: JsonObject = {}
    for out, part, name, key, sub in (
        (request, "request", "version", "version", "value"),
        (request, "request", "method", "method", "value"),
        (response, "response", "version", "version", "value"),
        (response, "response", "status", "status", "code"),
        (response, "response", "status", "reason", "reason"),
    ):
        message = req if part == "request" else resp
        if message.HasField(name):
            value = getattr(getattr(message, name), sub)
            if not value:
                raise ProtobufError(f"{at}.{part}.{name}.{sub}", f"an empty value is {_IN_PB}")
            out[key] = value
    if not req.uri:
        raise ProtobufError(f"{at}.request.uri", f"no URI is {_IN_PB}")
    if list(req.uri) != ["/"]:  # ["/"]: what 4.34 writes when the JSON has no path
        request["path"] = list(req.uri)
    for out, headers, defaults, where_headers in (
        (request, req.header, DEFAULT_REQUEST_HEADERS, "request.header"),
        (response, resp.header, DEFAULT_RESPONSE_HEADERS, "response.header"),
    ):
        pairs = tuple((h.name, tuple(h.value)) for h in headers)
        if pairs == defaults:
            continue  # what 4.34 writes when the JSON has no headers
        names = [n.encode() for n, _ in pairs]
        if not pairs or names != sorted(set(names)):
            raise ProtobufError(
                f"{at}.{where_headers}",
                f"headers not in name order (a JSON map's) are {_IN_PB}",
            )
        for index, (_, values) in enumerate(pairs):
            if not values:
                raise ProtobufError(f"{at}.{where_headers}[{index}].value", f"no value is {_IN_PB}")
        out["headers"] = {n: list(v) for n, v in pairs}
    return {"type": "http", "request": request, "response": response}


def _ws_settings(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = wspb.Config()
    at = dec.unpack(typed, cfg, where)
    headers: dict[str, str] = {}
    for index, header in enumerate(cfg.header):
        if header.key in headers:
            # 4.34 sends each; a config file's map cannot say that.
            raise ProtobufError(
                f"{at}.header[{index}]",
                f"{header.key!r} twice (wsSettings.headers) is {NOT_SUPPORTED}",
            )
        headers[header.key] = header.value
    out: JsonObject = {"path": cfg.path, "acceptProxyProtocol": cfg.accept_proxy_protocol}
    if headers:
        out["headers"] = headers
    return out


_TFO = {ipb.SocketConfig.Enable: True, ipb.SocketConfig.Disable: False}
_TPROXY = {
    ipb.SocketConfig.Off: "off",
    ipb.SocketConfig.TProxy: "tproxy",
    ipb.SocketConfig.Redirect: "redirect",
}


def _sockopt(cfg: ipb.SocketConfig, where: str) -> JsonObject:
    """``sockopt`` as 4.34's JSON builds it (``mark``, ``tcpFastOpen``, ``tproxy``,
    ``acceptProxyProtocol``); what 4.34 sets only at run time is refused."""
    for name in ("receive_original_dest_address", "bind_address", "bind_port"):
        if getattr(cfg, name):
            raise ProtobufError(f"{where}.{name}", f"a value is {_IN_PB}")
    tproxy = _TPROXY.get(cfg.tproxy)
    if tproxy is None:
        raise ProtobufError(f"{where}.tproxy", f"{cfg.tproxy} is unknown")
    out: JsonObject = {"tproxy": tproxy}
    if cfg.mark:
        out["mark"] = cfg.mark
    tfo = _TFO.get(cfg.tfo)
    if tfo is not None:
        out["tcpFastOpen"] = tfo
    if cfg.accept_proxy_protocol:
        out["acceptProxyProtocol"] = True
    return out


def _packet_header(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    name = _PACKET_HEADERS.get(dec.canonical(typed.type))
    if name is None:
        raise ProtobufError(f"{where}.type", f"header {typed.type!r} is {NOT_SUPPORTED}")
    if typed.value:
        raise ProtobufError(f"{where}.value", f"a {name} header with fields set is {_IN_PB}")
    return {"type": name}


def _kcp_settings(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = kcppb.Config()
    at = dec.unpack(typed, cfg, where)
    out: JsonObject = {"congestion": cfg.congestion}
    for name, key in (
        ("mtu", "mtu"),
        ("tti", "tti"),
        ("uplink_capacity", "uplinkCapacity"),
        ("downlink_capacity", "downlinkCapacity"),
    ):
        if cfg.HasField(name):
            out[key] = getattr(cfg, name).value
    for name, key in (("read_buffer", "readBufferSize"), ("write_buffer", "writeBufferSize")):
        if cfg.HasField(name):
            size = getattr(cfg, name).size
            if size == _KCP_ZERO_BUFFER:
                out[key] = 0
            elif size > 0 and size % _MIB == 0:
                out[key] = size // _MIB
            else:
                raise ProtobufError(
                    f"{at}.{name}.size", f"{size} bytes (not whole MiB) is {_IN_PB}"
                )
    if cfg.HasField("header_config"):
        out["header"] = _packet_header(dec, cfg.header_config, f"{at}.header_config")
    if cfg.HasField("seed"):
        out["seed"] = cfg.seed.seed
    return out


def _quic_settings(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = quicpb.Config()
    at = dec.unpack(typed, cfg, where)
    security = _QUIC_SECURITIES.get(cfg.security.type) if cfg.HasField("security") else None
    if security is None:
        # AUTO (or none given) picks by CPU in 4.34; the JSON form has no such spelling.
        raise ProtobufError(f"{at}.security", f"a security other than {_IN_PB_QUIC}")
    out: JsonObject = {"security": security, "key": cfg.key}
    if cfg.HasField("header"):
        out["header"] = _packet_header(dec, cfg.header, f"{at}.header")
    return out


def _ds_settings(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = dspb.Config()
    dec.unpack(typed, cfg, where)
    return {"path": cfg.path, "abstract": cfg.abstract, "padding": cfg.padding}


def _http_settings(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = h2pb.Config()
    dec.unpack(typed, cfg, where)
    out: JsonObject = {"path": cfg.path}
    if cfg.host:
        out["host"] = list(cfg.host)
    return out


_TRANSPORT_SETTINGS: dict[
    str, tuple[str, Callable[[Decoder, tpb.TypedMessage, str], JsonObject]]
] = {
    "tcp": ("tcpSettings", _tcp_settings),
    "ws": ("wsSettings", _ws_settings),
    "kcp": ("kcpSettings", _kcp_settings),
    "quic": ("quicSettings", _quic_settings),
    "domainsocket": ("dsSettings", _ds_settings),
    "http": ("httpSettings", _http_settings),
}
_IN_PB_QUIC = "aes-128-gcm, chacha20-poly1305 or none is not supported"


def _pem_lines(data: bytes, where: str) -> list[str]:
    try:
        return data.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise ProtobufError(where, "not PEM text") from None


def _tls_settings(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = tlspb.Config()
    at = dec.unpack(typed, cfg, where)
    certificates: list[JsonObject] = []
    for index, cert in enumerate(cfg.certificate):
        cat = f"{at}.certificate[{index}]"
        usage = _CERT_USAGES.get(cert.usage)
        if usage is None:
            raise ProtobufError(f"{cat}.usage", f"{cert.usage} is {NOT_SUPPORTED}")
        entry: JsonObject = {"certificate": _pem_lines(cert.Certificate, cat), "usage": usage}
        if cert.Key:
            entry["key"] = _pem_lines(cert.Key, f"{cat}.Key")
        certificates.append(entry)
    out: JsonObject = {
        "serverName": cfg.server_name,
        "allowInsecure": cfg.allow_insecure,
        "certificates": certificates,
        "enableSessionResumption": cfg.enable_session_resumption,
        "disableSystemRoot": cfg.disable_system_root,
    }
    if cfg.next_protocol:  # none: 4.34's defaults, as when a file has no "alpn"
        out["alpn"] = list(cfg.next_protocol)
    return out


# -- proxies ---------------------------------------------------------------------------

_SECURITY_NAMES: dict[int, str] = {
    ppb.UNKNOWN: "auto",
    ppb.AUTO: "auto",
    ppb.LEGACY: "aes-128-cfb",
    ppb.AES128_GCM: "aes-128-gcm",
    ppb.CHACHA20_POLY1305: "chacha20-poly1305",
    ppb.NONE: "none",
}
_DOMAIN_STRATEGIES: dict[int, str] = {
    fpb.Config.AS_IS: "AsIs",
    fpb.Config.USE_IP: "UseIP",
    fpb.Config.USE_IP4: "UseIPv4",
    fpb.Config.USE_IP6: "UseIPv6",
}
_NETWORKS: dict[int, str] = {npb.TCP: "tcp", npb.RawTCP: "tcp", npb.UDP: "udp"}
_PROTOCOL = "v2ray.com/core/common/protocol: "

_CORE = "v2ray.com/core: "
_MISSING_PROXY = f"{_CORE}missing proxy settings"

ProxyBuilder = Callable[[Decoder, tpb.TypedMessage, str], JsonObject]


def _account(dec: Decoder, user: ppb.User, account: Message, where: str) -> None:
    """Decode ``user``'s account into ``account`` (4.34 ``ToMemoryUser``)."""
    if not user.HasField("account"):
        raise ProtobufError(where, "Account missing", f"{_PROTOCOL}Account missing")
    dec.unpack(user.account, account, f"{where}.account")


def _named(user: ppb.User, entry: JsonObject) -> JsonObject:
    """``entry`` with the user's level and (when set) email."""
    entry["level"] = user.level
    if user.email:
        entry["email"] = user.email
    return entry


def _vmess_user(dec: Decoder, user: ppb.User, where: str, *, outbound: bool) -> JsonObject:
    account = vpb.Account()
    _account(dec, user, account, where)
    out = _named(user, {"id": account.id, "alterId": account.alter_id})
    if outbound:
        security = account.security_settings.type
        name = _SECURITY_NAMES.get(security)
        if name is None:
            raise ProtobufError(f"{where}.account.security_settings.type", f"{security} is unknown")
        out["security"] = name
    return out


def _vmess_inbound(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = vipb.Config()
    at = dec.unpack(typed, cfg, where)
    settings: JsonObject = {
        "clients": [
            _vmess_user(dec, u, f"{at}.user[{i}]", outbound=False) for i, u in enumerate(cfg.user)
        ],
        "disableInsecureEncryption": cfg.secure_encryption_only,
    }
    if cfg.HasField("default"):
        settings["default"] = {"alterId": cfg.default.alter_id, "level": cfg.default.level}
    if cfg.HasField("detour") and cfg.detour.to:
        settings["detour"] = {"to": cfg.detour.to}
    return settings


def _network_names(networks: Iterable[int], where: str) -> list[str]:
    names = []
    for index, network in enumerate(networks):
        name = _NETWORKS.get(network)
        if name is None:
            raise ProtobufError(f"{where}[{index}]", f"network {network} is {NOT_SUPPORTED}")
        names.append(name)
    return list(dict.fromkeys(names))


def _dokodemo(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = dpb.Config()
    at = dec.unpack(typed, cfg, where)
    if cfg.networks:
        networks = _network_names(cfg.networks, f"{at}.networks")
    else:
        networks = _network_names(cfg.network_list.network, f"{at}.network_list.network")
    settings: JsonObject = {
        "port": cfg.port,
        "network": ",".join(networks) or "tcp",
        "followRedirect": cfg.follow_redirect,
        "userLevel": cfg.user_level,
    }
    if cfg.HasField("address"):  # absent: none, as a config file without it (4.34)
        settings["address"] = _address(cfg.address, f"{at}.address")
    if cfg.timeout:
        settings["timeout"] = cfg.timeout
    return settings


_SS_METHODS: dict[int, str] = {
    sspb.AES_128_GCM: "aes-128-gcm",
    sspb.AES_256_GCM: "aes-256-gcm",
    sspb.CHACHA20_POLY1305: "chacha20-poly1305",
    sspb.NONE: "none",
}
_SS = "v2ray.com/core/proxy/shadowsocks: "


def _ss_account(dec: Decoder, user: ppb.User, where: str) -> JsonObject:
    account = sspb.Account()
    _account(dec, user, account, where)
    method = _SS_METHODS.get(account.cipher_type)
    if method is None:
        raise ProtobufError(
            f"{where}.account.cipher_type",
            f"cipher {account.cipher_type} is {NOT_SUPPORTED}",
            f"{_SS}failed to parse user account > {_SS}failed to get cipher > "
            f"{_SS}Unsupported cipher.",
        )
    return _named(user, {"method": method, "password": account.password})


def _shadowsocks_inbound(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = sspb.ServerConfig()
    at = dec.unpack(typed, cfg, where)
    if not cfg.HasField("user"):
        raise ProtobufError(f"{at}.user", "user is not specified", f"{_SS}user is not specified")
    settings = _ss_account(dec, cfg.user, f"{at}.user")
    settings["udp"] = cfg.udp_enabled
    networks = _network_names(cfg.network, f"{at}.network")
    if networks:
        settings["network"] = ",".join(networks)
    return settings


def _fallbacks(entries: Any) -> list[JsonObject]:
    """Fallbacks as 4.34's loader left them (a ``type`` set, ``dest`` resolved)."""
    return [
        {"alpn": f.alpn, "path": f.path, "type": f.type, "dest": f.dest, "xver": f.xver}
        for f in entries
    ]


def _vless_user(dec: Decoder, user: ppb.User, where: str, *, outbound: bool) -> JsonObject:
    account = vlpb.Account()
    _account(dec, user, account, where)
    entry: JsonObject = {"id": account.id, "flow": account.flow}
    if outbound:
        entry["encryption"] = account.encryption
    return _named(user, entry)


def _vless_inbound(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = vlipb.Config()
    at = dec.unpack(typed, cfg, where)
    return {
        "clients": [
            _vless_user(dec, u, f"{at}.clients[{i}]", outbound=False)
            for i, u in enumerate(cfg.clients)
        ],
        # 4.34's handler never looks at it (its JSON loader wants "none").
        "decryption": cfg.decryption or "none",
        "fallbacks": _fallbacks(cfg.fallbacks),
    }


def _trojan_user(dec: Decoder, user: ppb.User, where: str) -> JsonObject:
    account = tjpb.Account()
    _account(dec, user, account, where)
    return _named(user, {"password": account.password})


def _trojan_inbound(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = tjpb.ServerConfig()
    at = dec.unpack(typed, cfg, where)
    return {
        "clients": [_trojan_user(dec, u, f"{at}.users[{i}]") for i, u in enumerate(cfg.users)],
        "fallbacks": _fallbacks(cfg.fallbacks),
    }


def _accounts(accounts: Any) -> list[JsonObject]:
    """A SOCKS / HTTP inbound's ``user -> password`` map as the JSON list."""
    return [{"user": name, "pass": accounts[name]} for name in sorted(accounts)]


_SOCKS_AUTH: dict[int, str] = {sockspb.NO_AUTH: "noauth", sockspb.PASSWORD: "password"}


def _socks_inbound(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = sockspb.ServerConfig()
    at = dec.unpack(typed, cfg, where)
    auth = _SOCKS_AUTH.get(cfg.auth_type)
    if auth is None:
        raise ProtobufError(f"{at}.auth_type", f"{cfg.auth_type} is unknown")
    settings: JsonObject = {
        "auth": auth,
        "accounts": _accounts(cfg.accounts),
        "udp": cfg.udp_enabled,
        "userLevel": cfg.user_level,
        "timeout": cfg.timeout,
    }
    if cfg.HasField("address"):
        settings["ip"] = _address(cfg.address, f"{at}.address")
    return settings


def _http_inbound(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = httppb.ServerConfig()
    dec.unpack(typed, cfg, where)
    return {
        "accounts": _accounts(cfg.accounts),
        "allowTransparent": cfg.allow_transparent,
        "userLevel": cfg.user_level,
        "timeout": cfg.timeout,
    }


def _mtproto_inbound(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = mtpb.ServerConfig()
    at = dec.unpack(typed, cfg, where)
    users = []
    for index, user in enumerate(cfg.user):
        account = mtpb.Account()
        uat = f"{at}.user[{index}]"
        _account(dec, user, account, uat)
        users.append(_named(user, {"secret": account.secret.hex()}))
    return {"users": users}


INBOUND_PROXIES: dict[str, tuple[str, ProxyBuilder]] = {
    "v2ray.core.proxy.vmess.inbound.Config": ("vmess", _vmess_inbound),
    "v2ray.core.proxy.dokodemo.Config": ("dokodemo-door", _dokodemo),
    "v2ray.core.proxy.shadowsocks.ServerConfig": ("shadowsocks", _shadowsocks_inbound),
    "v2ray.core.proxy.vless.inbound.Config": ("vless", _vless_inbound),
    "v2ray.core.proxy.trojan.ServerConfig": ("trojan", _trojan_inbound),
    "v2ray.core.proxy.socks.ServerConfig": ("socks", _socks_inbound),
    "v2ray.core.proxy.http.ServerConfig": ("http", _http_inbound),
    "v2ray.core.proxy.mtproto.ServerConfig": ("mtproto", _mtproto_inbound),
}


def inbound_json(dec: Decoder, handler: cpb.InboundHandlerConfig, where: str) -> JsonObject:
    """The ``inbounds[]`` entry of an inbound handler config; raises ProtobufError."""
    if not handler.HasField("receiver_settings"):
        # 4.34 panics here (the API answers with its words)
        raise ProtobufError(where, "not a ReceiverConfig", f"{_CORE}not a ReceiverConfig")
    if not handler.HasField("proxy_settings"):
        raise ProtobufError(where, "missing proxy settings", _MISSING_PROXY)
    receiver = mpb.ReceiverConfig()
    rat = dec.unpack(handler.receiver_settings, receiver, f"{where}.receiver_settings")
    data: JsonObject = {"tag": handler.tag}
    if receiver.HasField("port_range"):
        first, last = receiver.port_range.From, receiver.port_range.To
        data["port"] = first if first == last else f"{first}-{last}"
    if receiver.HasField("listen"):
        data["listen"] = _address(receiver.listen, f"{rat}.listen")
    if receiver.HasField("stream_settings"):
        data["streamSettings"] = stream_json(
            dec, receiver.stream_settings, f"{rat}.stream_settings"
        )
    if receiver.domain_override:
        raise ProtobufError(f"{rat}.domain_override", f"domainOverride is {NOT_SUPPORTED}")
    if receiver.HasField("sniffing_settings"):
        data["sniffing"] = {
            "enabled": receiver.sniffing_settings.enabled,
            "destOverride": list(receiver.sniffing_settings.destination_override),
        }
    strategy = receiver.allocation_strategy
    if receiver.HasField("allocation_strategy") and strategy.type != mpb.AllocationStrategy.Always:
        if strategy.type != mpb.AllocationStrategy.Random:
            raise ProtobufError(f"{rat}.allocation_strategy.type", "unknown allocation strategy")
        allocate: JsonObject = {"strategy": "random"}
        if strategy.HasField("refresh"):
            allocate["refresh"] = strategy.refresh.value
        if strategy.HasField("concurrency"):
            allocate["concurrency"] = strategy.concurrency.value
        data["allocate"] = allocate
    proxy_type = dec.canonical(handler.proxy_settings.type)
    found = INBOUND_PROXIES.get(proxy_type)
    if found is None:
        raise ProtobufError(
            f"{where}.proxy_settings",
            f"inbound proxy {handler.proxy_settings.type!r} is {NOT_SUPPORTED}",
        )
    data["protocol"], build = found
    data["settings"] = build(dec, handler.proxy_settings, f"{where}.proxy_settings")
    # 4.34's JSON sets receive_original_destination from dokodemo's followRedirect
    # (infra/conf/v2ray.go); only the two together have a JSON spelling. Apart, they
    # mean something else in 4.34 (the socket is not asked for the original
    # destination, or the proxy does not use it).
    follow = data["protocol"] == "dokodemo-door" and bool(data["settings"]["followRedirect"])
    if receiver.receive_original_destination and not follow:
        raise ProtobufError(
            f"{rat}.receive_original_destination",
            f"{NOT_SUPPORTED} without a dokodemo-door followRedirect",
        )
    if follow and not receiver.receive_original_destination:
        raise ProtobufError(
            f"{where}.proxy_settings.follow_redirect",
            f"{NOT_SUPPORTED} without the receiver's receive_original_destination",
        )
    return data


def _freedom(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = fpb.Config()
    at = dec.unpack(typed, cfg, where)
    strategy = _DOMAIN_STRATEGIES.get(cfg.domain_strategy)
    if strategy is None:
        raise ProtobufError(f"{at}.domain_strategy", f"{cfg.domain_strategy} is unknown")
    settings: JsonObject = {"domainStrategy": strategy, "userLevel": cfg.user_level}
    if cfg.timeout:
        settings["timeout"] = cfg.timeout
    if cfg.HasField("destination_override"):
        server = cfg.destination_override.server
        host = _address(server.address, f"{at}.destination_override.server.address")
        settings["redirect"] = f"[{host}]:{server.port}" if ":" in host else f"{host}:{server.port}"
    return settings


def _blackhole(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = bpb.Config()
    at = dec.unpack(typed, cfg, where)
    kind = dec.canonical(cfg.response.type) if cfg.HasField("response") else ""
    if kind == bpb.HTTPResponse.DESCRIPTOR.full_name:
        return {"response": {"type": "http"}}
    if kind in ("", bpb.NoneResponse.DESCRIPTOR.full_name):
        return {"response": {"type": "none"}}
    raise ProtobufError(f"{at}.response", f"{cfg.response.type!r} is {NOT_SUPPORTED}")


def _endpoints(
    receivers: Iterable[ppb.ServerEndpoint], where: str
) -> Iterable[tuple[str, ppb.ServerEndpoint, JsonObject]]:
    for index, r in enumerate(receivers):
        at = f"{where}[{index}]"
        yield at, r, {"address": _address(r.address, f"{at}.address"), "port": r.port}


def _vnext(
    receivers: Iterable[ppb.ServerEndpoint],
    where: str,
    user: Callable[[ppb.User, str], JsonObject],
) -> JsonObject:
    """VMess / VLESS ``vnext``: each server with all its users."""
    return {
        "vnext": [
            {**entry, "users": [user(u, f"{at}.user[{i}]") for i, u in enumerate(r.user)]}
            for at, r, entry in _endpoints(receivers, where)
        ]
    }


def _servers(
    servers: Iterable[ppb.ServerEndpoint],
    where: str,
    account: Callable[[ppb.User, str], JsonObject],
) -> JsonObject:
    """Shadowsocks / Trojan ``servers``: each server with its one user's account."""
    out = []
    for at, r, entry in _endpoints(servers, where):
        if len(r.user) != 1:
            raise ProtobufError(f"{at}.user", f"{len(r.user)} users on a server is {NOT_SUPPORTED}")
        out.append({**entry, **account(r.user[0], f"{at}.user[0]")})
    return {"servers": out}


def _vmess_outbound(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = vopb.Config()
    at = dec.unpack(typed, cfg, where)
    return _vnext(
        cfg.Receiver, f"{at}.Receiver", lambda u, w: _vmess_user(dec, u, w, outbound=True)
    )


def _shadowsocks_outbound(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = sspb.ClientConfig()
    at = dec.unpack(typed, cfg, where)
    return _servers(cfg.server, f"{at}.server", lambda u, w: _ss_account(dec, u, w))


def _vless_outbound(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = vlopb.Config()
    at = dec.unpack(typed, cfg, where)
    return _vnext(cfg.vnext, f"{at}.vnext", lambda u, w: _vless_user(dec, u, w, outbound=True))


def _trojan_outbound(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = tjpb.ClientConfig()
    at = dec.unpack(typed, cfg, where)
    return _servers(cfg.server, f"{at}.server", lambda u, w: _trojan_user(dec, u, w))


def _user_pass(
    dec: Decoder, account: sockspb.Account | httppb.Account, user: ppb.User, where: str
) -> JsonObject:
    """A SOCKS / HTTP outbound user: ``user``, ``pass``, level, email."""
    _account(dec, user, account, where)
    return _named(user, {"user": account.username, "pass": account.password})


def _user_pass_servers(
    dec: Decoder,
    servers: Any,
    account: Callable[[], sockspb.Account | httppb.Account],
    where: str,
) -> JsonObject:
    """socks / http outbound ``servers`` with their user-and-password accounts."""
    return {
        "servers": [
            {
                **entry,
                "users": [
                    _user_pass(dec, account(), u, f"{sat}.user[{i}]") for i, u in enumerate(r.user)
                ],
            }
            for sat, r, entry in _endpoints(servers, where)
        ]
    }


def _socks_outbound(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = sockspb.ClientConfig()
    at = dec.unpack(typed, cfg, where)
    return _user_pass_servers(dec, cfg.server, sockspb.Account, f"{at}.server")


def _http_outbound(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = httppb.ClientConfig()
    at = dec.unpack(typed, cfg, where)
    return _user_pass_servers(dec, cfg.server, httppb.Account, f"{at}.server")


def _mtproto_outbound(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    dec.unpack(typed, mtpb.ClientConfig(), where)
    return {}


def _dns_outbound(dec: Decoder, typed: tpb.TypedMessage, where: str) -> JsonObject:
    cfg = dnspb.Config()
    at = dec.unpack(typed, cfg, where)
    settings: JsonObject = {}
    if cfg.HasField("server"):
        server = cfg.server
        if server.network != npb.Unknown:  # Unknown: keep each query's own
            network = {**_NETWORKS, npb.UNIX: "unix"}.get(server.network)
            if network is None:
                raise ProtobufError(f"{at}.server.network", f"{server.network} is unknown")
            settings["network"] = network
        if server.HasField("address"):
            settings["address"] = _address(server.address, f"{at}.server.address")
        if server.port:
            settings["port"] = server.port
    return settings


OUTBOUND_PROXIES: dict[str, tuple[str, ProxyBuilder]] = {
    "v2ray.core.proxy.freedom.Config": ("freedom", _freedom),
    "v2ray.core.proxy.blackhole.Config": ("blackhole", _blackhole),
    "v2ray.core.proxy.vmess.outbound.Config": ("vmess", _vmess_outbound),
    "v2ray.core.proxy.shadowsocks.ClientConfig": ("shadowsocks", _shadowsocks_outbound),
    "v2ray.core.proxy.vless.outbound.Config": ("vless", _vless_outbound),
    "v2ray.core.proxy.trojan.ClientConfig": ("trojan", _trojan_outbound),
    "v2ray.core.proxy.dns.Config": ("dns", _dns_outbound),
    "v2ray.core.proxy.socks.ClientConfig": ("socks", _socks_outbound),
    "v2ray.core.proxy.http.ClientConfig": ("http", _http_outbound),
    "v2ray.core.proxy.mtproto.ClientConfig": ("mtproto", _mtproto_outbound),
}
_PROXYMAN_OUTBOUND = "v2ray.com/core/app/proxyman/outbound: "
MUX_MAX_CONCURRENCY = 1024


def outbound_json(dec: Decoder, handler: cpb.OutboundHandlerConfig, where: str) -> JsonObject:
    """The ``outbounds[]`` entry of an outbound handler config; raises ProtobufError.
    (``expire`` and ``comment`` are not read: 4.34 never reads them.)"""
    if not handler.HasField("proxy_settings"):
        raise ProtobufError(where, "missing proxy settings", _MISSING_PROXY)  # 4.34 panics
    data: JsonObject = {"tag": handler.tag}
    if handler.HasField("sender_settings"):
        sender = mpb.SenderConfig()
        sat = dec.unpack(handler.sender_settings, sender, f"{where}.sender_settings")
        if sender.HasField("via"):
            via = _address(sender.via, f"{sat}.via")
            if sender.via.WhichOneof("address") != "ip":
                raise ProtobufError(f"{sat}.via", "sendThrough must be an IP address")
            data["sendThrough"] = via
        if sender.HasField("proxy_settings") and sender.proxy_settings.tag:
            # An empty tag means no chain in 4.34 (ProxyConfig.HasTag).
            data["proxySettings"] = {"tag": sender.proxy_settings.tag}
        if sender.HasField("stream_settings"):
            data["streamSettings"] = stream_json(
                dec, sender.stream_settings, f"{sat}.stream_settings"
            )
        if sender.HasField("multiplex_settings"):
            # 4.34 (app/proxyman/outbound/handler.go) checks the concurrency whenever
            # the message is present, enabled or not.
            mux = sender.multiplex_settings
            if not 1 <= mux.concurrency <= MUX_MAX_CONCURRENCY:
                text = f"invalid mux concurrency: {mux.concurrency}"
                raise ProtobufError(
                    f"{sat}.multiplex_settings.concurrency", text, _PROXYMAN_OUTBOUND + text
                )
            if mux.enabled:
                data["mux"] = {"enabled": True, "concurrency": mux.concurrency}
    found = OUTBOUND_PROXIES.get(dec.canonical(handler.proxy_settings.type))
    if found is None:
        raise ProtobufError(
            f"{where}.proxy_settings",
            f"outbound proxy {handler.proxy_settings.type!r} is {NOT_SUPPORTED}",
        )
    data["protocol"], build = found
    data["settings"] = build(dec, handler.proxy_settings, f"{where}.proxy_settings")
    return data


# -- apps ------------------------------------------------------------------------------

_LOG_LEVELS: dict[int, str] = {
    clogpb.Error: "error",
    clogpb.Warning: "warning",
    clogpb.Info: "info",
    clogpb.Debug: "debug",
}


_LOG_NONE = logpb.LogType.Value("None")  # "None" is no Python attribute name


def _log_target(kind: int, path: str, where: str) -> str:
    """``log.access`` / ``log.error``: "none", "" (console) or a file path."""
    if kind == _LOG_NONE:
        return "none"
    if kind == logpb.Console:
        if path:
            raise ProtobufError(f"{where}_path", "a path with a console log is " + _IN_PB)
        return ""
    if kind == logpb.File:
        if not path:
            raise ProtobufError(f"{where}_path", "a file log without a path is " + _IN_PB)
        if path == "none":
            raise ProtobufError(f"{where}_path", "a file named 'none' is " + _IN_PB)
        return path
    raise ProtobufError(f"{where}_type", f"log type {kind} is {_IN_PB}")


def _log(dec: Decoder, typed: tpb.TypedMessage, where: str, out: JsonObject) -> None:
    cfg = logpb.Config()
    at = dec.unpack(typed, cfg, where)
    access = _log_target(cfg.access_log_type, cfg.access_log_path, f"{at}.access_log")
    error = _log_target(cfg.error_log_type, cfg.error_log_path, f"{at}.error_log")
    log: JsonObject = {}
    if error == "none":
        log["loglevel"] = "none" if access == "none" else "warning"
        if access != "none":
            log["error"] = "none"
            log["access"] = access
    else:
        level = _LOG_LEVELS.get(cfg.error_log_level)
        if level is None:
            raise ProtobufError(
                f"{at}.error_log_level", f"severity {cfg.error_log_level} is {_IN_PB}"
            )
        log.update(loglevel=level, access=access, error=error)
    out["log"] = log


def _empty(message: Message) -> Callable[[Decoder, tpb.TypedMessage, str, JsonObject], None]:
    """An app without settings (the dispatcher, the handler managers)."""

    def read(dec: Decoder, typed: tpb.TypedMessage, where: str, out: JsonObject) -> None:
        dec.unpack(typed, type(message)(), where)

    return read


KIB = 1024


def _level_policy(policy: polpb.Policy, where: str) -> JsonObject:
    out: JsonObject = {}
    timeout = policy.timeout
    for key, name in (
        ("handshake", "handshake"),
        ("connIdle", "connection_idle"),
        ("uplinkOnly", "uplink_only"),
        ("downlinkOnly", "downlink_only"),
    ):
        if timeout.HasField(name):  # absent: 4.34's default, as a missing JSON key
            out[key] = getattr(timeout, name).value
    out["statsUserUplink"] = policy.stats.user_uplink
    out["statsUserDownlink"] = policy.stats.user_downlink
    if policy.HasField("buffer"):
        size = policy.buffer.connection
        if size < 0 or size % KIB:
            raise ProtobufError(
                f"{where}.buffer.connection", f"{size} is not a whole number of KiB; {_IN_PB}"
            )
        out["bufferSize"] = size // KIB
    return out


def _policy(dec: Decoder, typed: tpb.TypedMessage, where: str, out: JsonObject) -> None:
    cfg = polpb.Config()
    at = dec.unpack(typed, cfg, where)
    policy: JsonObject = {
        "levels": {
            str(level): _level_policy(cfg.level[level], f"{at}.level[{level}]")
            for level in sorted(cfg.level)
        }
    }
    if cfg.HasField("system"):
        stats = cfg.system.stats
        policy["system"] = {
            "statsInboundUplink": stats.inbound_uplink,
            "statsInboundDownlink": stats.inbound_downlink,
            "statsOutboundUplink": stats.outbound_uplink,
            "statsOutboundDownlink": stats.outbound_downlink,
        }
    out["policy"] = policy


def _stats(dec: Decoder, typed: tpb.TypedMessage, where: str, out: JsonObject) -> None:
    dec.unpack(typed, statspb.Config(), where)
    out["stats"] = {}


_SERVICES = {
    "v2ray.core.app.proxyman.command.Config": "HandlerService",
    "v2ray.core.app.stats.command.Config": "StatsService",
    "v2ray.core.app.log.command.Config": "LoggerService",
    "v2ray.core.app.commander.ReflectionConfig": "ReflectionService",
}


def _commander(dec: Decoder, typed: tpb.TypedMessage, where: str, out: JsonObject) -> None:
    cfg = cmdpb.Config()
    at = dec.unpack(typed, cfg, where)
    services = []
    for index, service in enumerate(cfg.service):
        name = _SERVICES.get(service.type)
        if name is None:
            raise ProtobufError(f"{at}.service[{index}]", f"{service.type!r} is {NOT_SUPPORTED}")
        if service.value:  # each is an empty message
            raise ProtobufError(f"{at}.service[{index}]", "settings of a service are " + _IN_PB)
        services.append(name)
    out["api"] = {"tag": cfg.tag, "services": services}


def _reverse(dec: Decoder, typed: tpb.TypedMessage, where: str, out: JsonObject) -> None:
    cfg = revpb.Config()
    dec.unpack(typed, cfg, where)
    reverse: JsonObject = {}
    if cfg.bridge_config:
        reverse["bridges"] = [{"tag": b.tag, "domain": b.domain} for b in cfg.bridge_config]
    if cfg.portal_config:
        reverse["portals"] = [{"tag": p.tag, "domain": p.domain} for p in cfg.portal_config]
    out["reverse"] = reverse


# router

_ROUTER_STRATEGIES: dict[int, str] = {
    rpb.Config.AsIs: "AsIs",
    rpb.Config.UseIp: "AlwaysIP",
    rpb.Config.IpIfNonMatch: "IPIfNonMatch",
    rpb.Config.IpOnDemand: "IPOnDemand",
}
_DOMAIN_PREFIXES: dict[int, str] = {
    gpb.Domain.Plain: "keyword:",
    gpb.Domain.Regex: "regexp:",
    gpb.Domain.Domain: "domain:",
    gpb.Domain.Full: "full:",
}
_RULE_NETWORKS: dict[int, str] = {npb.TCP: "tcp", npb.UDP: "udp"}


def _domain(domain: gpb.Domain, where: str) -> str:
    """One domain condition in JSON syntax. Attributes only choose geosite entries
    in v2ctl (``geosite:cn@ads``); the router never reads them."""
    prefix = _DOMAIN_PREFIXES.get(domain.type)
    if prefix is None:
        raise ProtobufError(f"{where}.type", f"domain type {domain.type} is unknown")
    return prefix + domain.value


def _cidr(cidr: gpb.CIDR, where: str) -> str:
    if len(cidr.ip) not in (4, 16):
        raise ProtobufError(f"{where}.ip", f"an IP of {len(cidr.ip)} bytes is {_IN_PB}")
    ip = ipaddress.ip_address(cidr.ip)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        # 4.34 matches it as IPv6; its JSON spelling would be read as IPv4.
        raise ProtobufError(f"{where}.ip", f"an IPv4-mapped IPv6 network is {_IN_PB}")
    return f"{ip}/{cidr.prefix}"


def _geoips(entries: Iterable[gpb.GeoIP], where: str) -> list[str]:
    """The CIDRs of geoip lists, inlined as v2ctl inlined them (the country code is
    only a name)."""
    out: list[str] = []
    for index, entry in enumerate(entries):
        out.extend(_cidr(c, f"{where}[{index}].cidr[{ci}]") for ci, c in enumerate(entry.cidr))
    return out


def _ports(ports: plpb.PortList, where: str) -> str:
    if not ports.range:
        # 4.34 keeps a condition that matches nothing; JSON has no spelling for it.
        raise ProtobufError(where, "an empty port list is " + _IN_PB)
    return ",".join(str(r.From) if r.From == r.To else f"{r.From}-{r.To}" for r in ports.range)


def _rule(rule: rpb.RoutingRule, where: str) -> JsonObject:
    out: JsonObject = {"type": "field"}
    target = rule.WhichOneof("target_tag")
    if target == "tag" and rule.tag:
        out["outboundTag"] = rule.tag
    elif target == "balancing_tag" and rule.balancing_tag:
        out["balancerTag"] = rule.balancing_tag
    else:
        raise ProtobufError(where, "neither tag nor balancing_tag is set; " + _IN_PB)
    if rule.domain:
        out["domain"] = [_domain(d, f"{where}.domain[{i}]") for i, d in enumerate(rule.domain)]
    # As 4.34's BuildCondition: geoip wins over the deprecated cidr, port_list over
    # port_range, networks over network_list, source_geoip over source_cidr.
    if rule.geoip:
        out["ip"] = _geoips(rule.geoip, f"{where}.geoip")
    elif rule.cidr:
        out["ip"] = [_cidr(c, f"{where}.cidr[{i}]") for i, c in enumerate(rule.cidr)]
    if rule.HasField("port_list"):
        out["port"] = _ports(rule.port_list, f"{where}.port_list")
    elif rule.HasField("port_range"):
        r = rule.port_range
        out["port"] = str(r.From) if r.From == r.To else f"{r.From}-{r.To}"
    networks = list(rule.networks) or (
        list(rule.network_list.network) if rule.HasField("network_list") else []
    )
    field_name = "networks" if rule.networks else "network_list.network"
    if networks:
        names = []
        for index, network in enumerate(networks):
            name = _RULE_NETWORKS.get(network)
            if name is None:
                raise ProtobufError(
                    f"{where}.{field_name}[{index}]", f"network {network} is {_IN_PB}"
                )
            names.append(name)
        out["network"] = ",".join(names)
    elif rule.HasField("network_list"):
        raise ProtobufError(f"{where}.network_list", "an empty network list is " + _IN_PB)
    if rule.source_geoip:
        out["source"] = _geoips(rule.source_geoip, f"{where}.source_geoip")
    elif rule.source_cidr:
        out["source"] = [
            _cidr(c, f"{where}.source_cidr[{i}]") for i, c in enumerate(rule.source_cidr)
        ]
    if rule.HasField("source_port_list"):
        out["sourcePort"] = _ports(rule.source_port_list, f"{where}.source_port_list")
    if rule.user_email:
        out["user"] = list(rule.user_email)
    if rule.inbound_tag:
        out["inboundTag"] = list(rule.inbound_tag)
    if rule.protocol:
        out["protocol"] = list(rule.protocol)
    if rule.attributes:
        out["attrs"] = rule.attributes
    return out


def _router(dec: Decoder, typed: tpb.TypedMessage, where: str, out: JsonObject) -> None:
    cfg = rpb.Config()
    at = dec.unpack(typed, cfg, where)
    strategy = _ROUTER_STRATEGIES.get(cfg.domain_strategy)
    if strategy is None:
        raise ProtobufError(f"{at}.domain_strategy", f"{cfg.domain_strategy} is unknown")
    routing: JsonObject = {"rules": [_rule(r, f"{at}.rule[{i}]") for i, r in enumerate(cfg.rule)]}
    if cfg.domain_strategy != rpb.Config.AsIs:  # AsIs: as when a file has none
        routing["domainStrategy"] = strategy
    if cfg.balancing_rule:
        routing["balancers"] = [
            {"tag": b.tag, "selector": list(b.outbound_selector)} for b in cfg.balancing_rule
        ]
    out["routing"] = routing


# dns

_DNS_PREFIXES: dict[int, str] = {
    dnsapb.Full: "full:",
    dnsapb.Subdomain: "domain:",
    dnsapb.Keyword: "keyword:",
    dnsapb.Regex: "regexp:",
}


def _dns_domain(kind: int, value: str, where: str) -> str:
    prefix = _DNS_PREFIXES.get(kind)
    if prefix is None:
        raise ProtobufError(f"{where}.type", f"domain type {kind} is unknown")
    return prefix + value


def _client_ip(data: bytes, where: str) -> str | None:
    return None if not data else _ip_text(data, where)


def _name_server(server: dnsapb.NameServer, where: str) -> JsonObject:
    endpoint = server.address
    if endpoint.network not in (npb.Unknown, npb.UDP):
        raise ProtobufError(f"{where}.address.network", f"network {endpoint.network} is {_IN_PB}")
    out: JsonObject = {
        "address": _address(endpoint.address, f"{where}.address.address"),
        "port": endpoint.port,
    }
    # original_rules only name the rules in 4.34's debug log.
    if server.prioritized_domain:
        out["domains"] = [
            _dns_domain(d.type, d.domain, f"{where}.prioritized_domain[{i}]")
            for i, d in enumerate(server.prioritized_domain)
        ]
    if server.geoip:
        out["expectIps"] = _geoips(server.geoip, f"{where}.geoip")
    client_ip = _client_ip(server.client_ip, f"{where}.client_ip")
    if client_ip is not None:
        out["clientIp"] = client_ip
    return out


def _host_value(mapping: dnsapb.Config.HostMapping, where: str) -> str:
    if mapping.ip and mapping.proxied_domain:
        raise ProtobufError(where, "both ip and proxied_domain are set; " + _IN_PB)
    if mapping.proxied_domain:
        return mapping.proxied_domain
    if len(mapping.ip) != 1:
        # A JSON host maps to one address (4.34 adds ::1 to 127.0.0.1 itself).
        raise ProtobufError(f"{where}.ip", f"{len(mapping.ip)} addresses for a host is {_IN_PB}")
    return _ip_text(mapping.ip[0], f"{where}.ip[0]")


def _dns(dec: Decoder, typed: tpb.TypedMessage, where: str, out: JsonObject) -> None:
    cfg = dnsapb.Config()
    at = dec.unpack(typed, cfg, where)
    if cfg.NameServers:
        raise ProtobufError(f"{at}.NameServers", "the deprecated list is " + _IN_PB)
    if cfg.Hosts:
        raise ProtobufError(f"{at}.Hosts", "the deprecated map is " + _IN_PB)
    dns: JsonObject = {
        "servers": [
            _name_server(s, f"{at}.name_server[{i}]") for i, s in enumerate(cfg.name_server)
        ]
    }
    hosts: dict[str, str] = {}
    ordered: list[str] = []
    for index, mapping in enumerate(cfg.static_hosts):
        hat = f"{at}.static_hosts[{index}]"
        key = _dns_domain(mapping.type, mapping.domain, hat)
        # A JSON object's keys are unique, and 4.34 builds the hosts in their sorted
        # order. That order counts among keyword and regexp hosts only (full and
        # domain matches come first, by the name), so only theirs must agree.
        if key in hosts:
            raise ProtobufError(hat, f"a host twice is {_IN_PB}")
        if mapping.type in (dnsapb.Keyword, dnsapb.Regex):
            if ordered and key < ordered[-1]:
                raise ProtobufError(
                    hat, f"keyword and regexp hosts out of sorted order are {_IN_PB}"
                )
            ordered.append(key)
        hosts[key] = _host_value(mapping, hat)
    if hosts:
        dns["hosts"] = hosts
    client_ip = _client_ip(cfg.client_ip, f"{at}.client_ip")
    if client_ip is not None:
        dns["clientIp"] = client_ip
    if cfg.tag:
        dns["tag"] = cfg.tag
    out["dns"] = dns


AppReader = Callable[[Decoder, tpb.TypedMessage, str, JsonObject], None]

_DISPATCHER = disppb.Config.DESCRIPTOR.full_name
_INBOUND_MANAGER = mapb.InboundConfig.DESCRIPTOR.full_name
_OUTBOUND_MANAGER = mapb.OutboundConfig.DESCRIPTOR.full_name
_LOG = logpb.Config.DESCRIPTOR.full_name

#: The apps read, by type: each fills its JSON key.
APPS: dict[str, AppReader] = {
    _LOG: _log,
    _DISPATCHER: _empty(disppb.Config()),
    _INBOUND_MANAGER: _empty(mapb.InboundConfig()),
    _OUTBOUND_MANAGER: _empty(mapb.OutboundConfig()),
    polpb.Config.DESCRIPTOR.full_name: _policy,
    statspb.Config.DESCRIPTOR.full_name: _stats,
    cmdpb.Config.DESCRIPTOR.full_name: _commander,
    rpb.Config.DESCRIPTOR.full_name: _router,
    dnsapb.Config.DESCRIPTOR.full_name: _dns,
    revpb.Config.DESCRIPTOR.full_name: _reverse,
}
#: Written by every ``v2ctl config``; 4.34 cannot run handlers without them.
_REQUIRED_APPS = (_LOG, _DISPATCHER, _INBOUND_MANAGER, _OUTBOUND_MANAGER)


def config_json(data: bytes | bytearray | memoryview) -> JsonObject:
    """The JSON config object of a serialized ``v2ray.core.Config``.

    Raises:
        ProtobufError: not a protobuf message, or a part v2py cannot express in 4.34's
            JSON format (one line naming the protobuf path).
    """
    cfg = ccpb.Config()
    try:
        cfg.ParseFromString(bytes(data))
    except DecodeError as exc:
        raise ProtobufError("", f"not a protobuf v2ray.core.Config: {exc}") from None
    dec = Decoder(strict=True)
    dec.check(cfg, "")
    if cfg.extension:
        raise ProtobufError("extension[0]", f"extensions are {_IN_PB}")
    if cfg.HasField("transport") and cfg.transport.transport_settings:
        raise ProtobufError(
            "transport.transport_settings[0]", f"the deprecated global transport is {_IN_PB}"
        )
    out: JsonObject = {}
    seen: set[str] = set()
    for index, app in enumerate(cfg.app):
        where = f"app[{index}]"
        reader = APPS.get(app.type)
        if reader is None:
            raise ProtobufError(where, f"app {app.type!r} is {NOT_SUPPORTED}")
        if app.type in seen:
            raise ProtobufError(where, f"a second {app.type} is {_IN_PB}")
        seen.add(app.type)
        reader(dec, app, where, out)
    for required in _REQUIRED_APPS:
        if required not in seen:
            raise ProtobufError("app", f"no {required} (v2ctl always writes it); {_IN_PB}")
    out["inbounds"] = [inbound_json(dec, h, f"inbound[{i}]") for i, h in enumerate(cfg.inbound)]
    out["outbounds"] = [outbound_json(dec, h, f"outbound[{i}]") for i, h in enumerate(cfg.outbound)]
    return out
