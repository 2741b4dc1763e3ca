"""The typed, validated, frozen config model (v2ray-core 4.34 ``infra/conf/v2ray.go``,
``transport_internet.go``, ``policy.go``, ``log.go``).

Each ``<Thing>Config`` mirrors one JSON object. Defaults and range checks sit
on the field. Objects are built by :func:`v2py.config.load.load_config`;
``settings`` of inbounds/outbounds are parsed there in a second step by the
model that ``config/registry.py`` names for the protocol.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from pydantic import BeforeValidator, Field, SkipValidation, ValidationInfo, model_validator

from v2py.config.base import (
    Bool,
    ConfigModel,
    Int16,
    Str,
    Uint16,
    Uint32,
    describe,
    fail,
    int_in,
    ip_address,
    one_of,
    string_list,
)
from v2py.config.registry import (
    INBOUND_SETTINGS,
    OUTBOUND_SETTINGS,
    UNSUPPORTED_INBOUNDS,
    UNSUPPORTED_OUTBOUNDS,
)
from v2py.config.reverse import ReverseConfig
from v2py.config.routing import DnsConfig, RoutingConfig
from v2py.config.settings import InboundSettings, OutboundSettings
from v2py.config.stream import HttpRequestConfig, HttpResponseConfig, TlsConfig, WsConfig
from v2py.config.transport_extra import DsConfig, HttpConfig, QuicConfig

__all__ = [
    "AllocateConfig",
    "ApiConfig",
    "Config",
    "EnvSwitches",
    "InboundConfig",
    "KcpConfig",
    "KcpHeaderConfig",
    "LevelPolicy",
    "LogConfig",
    "MuxConfig",
    "OutboundConfig",
    "PolicyConfig",
    "PortRange",
    "ProxyConfig",
    "RootConfig",
    "SniffingConfig",
    "StatsConfig",
    "StreamConfig",
    "SystemPolicy",
    "TcpConfig",
    "TcpHeaderConfig",
    "TransportConfig",
    "env_flag",
]

PORT_MAX = 0xFFFF
PORT_HINT = 'use 0-65535, "A-B" or "env:NAME"'

DEFAULT_HANDSHAKE_S = 60
DEFAULT_CONN_IDLE_S = 300
DEFAULT_UPLINK_ONLY_S = 1
DEFAULT_DOWNLINK_ONLY_S = 1
DEFAULT_BUFFER_SIZE_KIB = 512

DEFAULT_KCP_MTU = 1350
DEFAULT_KCP_TTI_MS = 50
DEFAULT_KCP_UPLINK_MBPS = 5
DEFAULT_KCP_DOWNLINK_MBPS = 20
DEFAULT_KCP_BUFFER_MB = 2
KCP_MTU_RANGE = (576, 1460)
KCP_TTI_RANGE_MS = (10, 100)

DEFAULT_REFRESH_MIN = 5
DEFAULT_CONCURRENCY = 3


@dataclass(frozen=True, slots=True)
class PortRange:
    """An inclusive port range; a single port has ``first == last``."""

    first: int
    last: int

    @property
    def is_range(self) -> bool:
        """True when more than one port is covered."""
        return self.last > self.first

    @property
    def size(self) -> int:
        """Number of ports covered."""
        return self.last - self.first + 1

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def __str__(self) -> str:
        return f"{self.first}-{self.last}" if self.is_range else str(self.first)


def _port_number(text: str) -> int | None:
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        return None
    return int(text)


def _parse_port_text(text: str, shown: str) -> PortRange:
    """Parse ``"N"`` or ``"A-B"`` (4.34 ``parseStringPort``)."""
    first_text, dash, last_text = text.partition("-")
    first = _port_number(first_text)
    last = _port_number(last_text) if dash else first
    if first is None or last is None:
        raise fail(f"{shown} is not a port; {PORT_HINT}")
    for number in (first, last):
        if number > PORT_MAX:
            raise fail(f"{shown} is out of range; {PORT_HINT}")
    if first > last:
        raise fail(
            f'{shown} is not a valid range: {first} is greater than {last}; use "A-B" with A <= B'
        )
    return PortRange(first, last)


def _parse_port(value: object, info: ValidationInfo) -> PortRange:
    """The ``port`` of an inbound: number, ``"N"``, ``"A-B"`` or ``"env:NAME"``."""
    if isinstance(value, PortRange):
        return value
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise fail(f"{describe(value)} is not a port; {PORT_HINT}")
    if isinstance(value, int):
        if not 0 <= value <= PORT_MAX:
            raise fail(f"{value} is out of range; {PORT_HINT}")
        return PortRange(value, value)
    if value.startswith("env:"):
        name = value[len("env:") :]
        env: Mapping[str, str] = (info.context or {}).get("env", {})
        if name not in env:
            raise fail(f"{describe(value)}: environment variable {name} is not set")
        resolved = env[name]
        if not resolved.strip():
            raise fail(f"{describe(value)}: environment variable {name} is empty")
        return _parse_port_text(resolved, f"{describe(value)} (= {describe(resolved)})")
    return _parse_port_text(value, describe(value))


InboundPort = Annotated[PortRange, BeforeValidator(_parse_port)]


def is_unix_listen(listen: str) -> bool:
    """Whether an inbound's ``listen`` is a Unix socket (4.34: a path starting with
    ``/``, or ``@`` / ``@@`` for an abstract name)."""
    return listen.startswith(("/", "@"))


def _check_listen(value: object) -> str:
    """An IP address, ``"localhost"``, or a Unix socket path (``/...``, ``@...``)."""
    if not isinstance(value, str):
        raise fail(f"{describe(value)} is not an IP address string")
    if is_unix_listen(value):
        if value in ("/", "@", "@@") or "\0" in value:
            raise fail(f"{describe(value)} is not a Unix socket path")
        return value
    text = value.strip()
    if text == "localhost":
        return "127.0.0.1"
    address = ip_address(text)
    if address is not None:
        return address
    raise fail(f'{describe(value)} is not an IP address; use an IP, "localhost" or a path')


def _check_send_through(value: object) -> str:
    """An outbound's ``sendThrough``: the local IP its connections bind (4.34 refuses
    a domain: "unable to send through")."""
    if not isinstance(value, str):
        raise fail(f"{describe(value)} is not an IP address string")
    address = ip_address(value)
    if address is None:
        raise fail(f"unable to send through: {describe(value)}; sendThrough takes a local IP")
    return address


# --------------------------------------------------------------------------
# log, policy


class LogConfig(ConfigModel):
    """``log``: level and optional access/error log file paths."""

    loglevel: Annotated[
        str,
        BeforeValidator(
            one_of(
                {
                    "": "warning",
                    "debug": "debug",
                    "info": "info",
                    "warning": "warning",
                    "error": "error",
                    "none": "none",
                },
                shown=("debug", "info", "warning", "error", "none"),
            )
        ),
    ] = "warning"
    access: Str = ""
    error: Str = ""


class LevelPolicy(ConfigModel):
    """One ``policy.levels`` entry; times are seconds, ``buffer_size`` KiB."""

    handshake: Uint32 = DEFAULT_HANDSHAKE_S
    conn_idle: Uint32 = DEFAULT_CONN_IDLE_S
    uplink_only: Uint32 = DEFAULT_UPLINK_ONLY_S
    downlink_only: Uint32 = DEFAULT_DOWNLINK_ONLY_S
    buffer_size: Annotated[int, BeforeValidator(int_in(0, 0x7FFF_FFFF // 1024))] = (
        DEFAULT_BUFFER_SIZE_KIB
    )
    stats_user_uplink: Bool = False
    stats_user_downlink: Bool = False


class SystemPolicy(ConfigModel):
    """``policy.system`` statistics switches."""

    stats_inbound_uplink: Bool = False
    stats_inbound_downlink: Bool = False
    stats_outbound_uplink: Bool = False
    stats_outbound_downlink: Bool = False


def _check_level_key(value: object) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit() and int(value) <= 0xFFFF_FFFF:
        return int(value)
    raise fail(f'{describe(value)} is not a user level; use "0" to "4294967295"')


LevelKey = Annotated[int, BeforeValidator(_check_level_key)]


class PolicyConfig(ConfigModel):
    """``policy``: per-level timeouts and buffer sizes, and system statistics."""

    levels: Mapping[LevelKey, LevelPolicy] = Field(default_factory=dict)
    system: SystemPolicy = Field(default_factory=lambda: SystemPolicy.trusted())

    def level(self, n: int) -> LevelPolicy:
        """The policy of user level ``n``: configured values, else 4.34 defaults."""
        found = self.levels.get(n)
        return found if found is not None else LevelPolicy()


# --------------------------------------------------------------------------
# transport


class TcpHeaderConfig(ConfigModel):
    """``tcpSettings.header``: ``none`` or ``http`` (whose templates are
    ``request``/``response``, always built with 4.34's defaults; see config/stream.py)."""

    type: Annotated[str, BeforeValidator(one_of({"none": "none", "http": "http"}))]
    request: HttpRequestConfig = Field(default_factory=lambda: HttpRequestConfig.trusted())
    response: HttpResponseConfig = Field(default_factory=lambda: HttpResponseConfig.trusted())


class TcpConfig(ConfigModel):
    """``tcpSettings``; ``acceptProxyProtocol`` requires a PROXY v1/v2 header (inbound)."""

    header: TcpHeaderConfig = Field(default_factory=lambda: TcpHeaderConfig.trusted(type="none"))
    accept_proxy_protocol: Bool = False


_KCP_HEADERS = {name: name for name in ("none", "srtp", "utp", "wechat-video", "dtls", "wireguard")}


class KcpHeaderConfig(ConfigModel):
    """``kcpSettings.header``: the packet obfuscator; ``type`` is required."""

    type: Annotated[str, BeforeValidator(one_of(_KCP_HEADERS))]


class KcpConfig(ConfigModel):
    """``kcpSettings`` (docs/spec/mkcp.md section 6). Capacities MB/s, buffers MB, tti ms."""

    mtu: Annotated[int, BeforeValidator(int_in(*KCP_MTU_RANGE))] = DEFAULT_KCP_MTU
    tti: Annotated[int, BeforeValidator(int_in(*KCP_TTI_RANGE_MS))] = DEFAULT_KCP_TTI_MS
    uplink_capacity: Uint32 = DEFAULT_KCP_UPLINK_MBPS
    downlink_capacity: Uint32 = DEFAULT_KCP_DOWNLINK_MBPS
    congestion: Bool = False
    read_buffer_size: Uint32 = DEFAULT_KCP_BUFFER_MB
    write_buffer_size: Uint32 = DEFAULT_KCP_BUFFER_MB
    header: KcpHeaderConfig = Field(default_factory=lambda: KcpHeaderConfig.trusted(type="none"))
    # None: simple authenticator. Any string, even "", switches to AES-GCM as in 4.34.
    seed: Str | None = None

    @property
    def header_type(self) -> str:
        """The obfuscator name, lower-case (``"none"``, ``"srtp"``, ...)."""
        return self.header.type


_NETWORKS = {
    "tcp": "tcp",
    "kcp": "kcp",
    "mkcp": "kcp",
    "ws": "ws",
    "websocket": "ws",
    "ds": "ds",
    "domainsocket": "ds",
    "h2": "h2",
    "http": "h2",
    "quic": "quic",
}
# 4.34 treats any other string (even "xtls" or a typo) as no TLS; v2py refuses it.
_SECURITIES = {"": "none", "none": "none", "tls": "tls"}
_NOT_USED = "not used by v2py, ignored"
NOT_SUPPORTED_YET = "not supported by v2py yet"
#: ``sendThrough`` values that bind nothing.
ANY_ADDRESSES = frozenset({"0.0.0.0", "::"})


_TPROXY_MODES = {"": "off", "off": "off", "tproxy": "tproxy", "redirect": "redirect"}


class SocketConfig(ConfigModel):
    """``streamSettings.sockopt`` (4.34 ``SocketConfig.Build``; applied by
    ``transport/sockopt.py``). ``tcp_fast_open`` None leaves the kernel default;
    ``tproxy`` is "off", "tproxy" or "redirect" (4.34 maps any other string to off:
    v2py refuses it, as other unknown enum strings)."""

    mark: Annotated[int, BeforeValidator(int_in(-0x8000_0000, 0x7FFF_FFFF))] = 0
    tcp_fast_open: Bool | None = None
    tproxy: Annotated[
        str, BeforeValidator(one_of(_TPROXY_MODES, shown=("off", "tproxy", "redirect")))
    ] = "off"
    #: Only an h2 listener requires the PROXY header for it: 4.34's tcp and ws
    #: listeners overwrite it with their own ``acceptProxyProtocol`` (false unless set
    #: there), and the ds, mKCP and QUIC listeners never read it (verified with the
    #: binary: a plain client works at such a tcp or ws port, an h2 one needs the header).
    accept_proxy_protocol: Bool = False

    @property
    def is_default(self) -> bool:
        """True when no option changes anything."""
        return not self.mark and self.tcp_fast_open is None and self.tproxy == "off"


class StreamConfig(ConfigModel):
    """``streamSettings``.

    After loading, ``kcp`` is set exactly when ``network == "kcp"`` (from
    ``kcpSettings``, else top-level ``transport.kcpSettings``, else defaults),
    ``tcp``, ``ws``, ``http``, ``ds`` and ``quic`` exactly when ``network`` is theirs
    (``quic`` absent altogether: 4.34's AES-128-GCM with key ""). ``tls`` is set
    exactly when ``security == "tls"`` (``tlsSettings``, else an empty one, as 4.34
    reads it).
    """

    network: Annotated[
        str,
        BeforeValidator(one_of(_NETWORKS, shown=("tcp", "kcp", "ws", "h2", "quic", "ds"))),
    ] = "tcp"
    security: Annotated[str, BeforeValidator(one_of(_SECURITIES, shown=("none", "tls")))] = "none"
    tcp: TcpConfig | None = Field(default=None, alias="tcpSettings")
    kcp: KcpConfig | None = Field(default=None, alias="kcpSettings")
    ws: WsConfig | None = Field(default=None, alias="wsSettings")
    http: HttpConfig | None = Field(default=None, alias="httpSettings")
    ds: DsConfig | None = Field(default=None, alias="dsSettings")
    quic: QuicConfig | None = Field(default=None, alias="quicSettings")
    tls: TlsConfig | None = Field(default=None, alias="tlsSettings")
    sockopt: SocketConfig | None = None

    @model_validator(mode="after")
    def _tls_when_secured(self) -> StreamConfig:
        # 4.34 reads tlsSettings only with security "tls", and then uses an empty one
        # when it is absent.
        if self.security != "tls":
            object.__setattr__(self, "tls", None)
        elif self.tls is None:
            object.__setattr__(self, "tls", TlsConfig())
        return self


class TransportConfig(ConfigModel):
    """Top-level ``transport``: defaults for every ``streamSettings`` lacking them."""

    tcp: TcpConfig | None = Field(default=None, alias="tcpSettings")
    kcp: KcpConfig | None = Field(default=None, alias="kcpSettings")
    ws: WsConfig | None = Field(default=None, alias="wsSettings")
    http: HttpConfig | None = Field(default=None, alias="httpSettings")
    ds: DsConfig | None = Field(default=None, alias="dsSettings")
    quic: QuicConfig | None = Field(default=None, alias="quicSettings")


# --------------------------------------------------------------------------
# inbound pieces

_SNIFFERS = {"http": "http", "tls": "tls", "https": "tls", "ssl": "tls"}


def _sniffer_name(entry: str) -> str:
    name = _SNIFFERS.get(entry.strip().lower())
    if name is None:
        raise fail(f'{describe(entry)} is not a sniffer; use "http" or "tls"')
    return name


Sniffers = Annotated[
    tuple[str, ...], BeforeValidator(string_list(_sniffer_name, what='"http"/"tls"'))
]


class SniffingConfig(ConfigModel):
    """``sniffing``: which sniffed protocols may override the destination address."""

    enabled: Bool = False
    dest_override: Sniffers = ()


class AllocateConfig(ConfigModel):
    """``allocate`` (docs/spec/dynamic-port.md section 1.1). ``refresh`` is in minutes."""

    strategy: Annotated[
        str,
        BeforeValidator(
            one_of(
                {"always": "always", "random": "random"},
                refused={"external": "not supported by v2py"},
            )
        ),
    ]
    refresh: Annotated[int, BeforeValidator(int_in(1, 0xFFFF_FFFF))] = DEFAULT_REFRESH_MIN
    concurrency: Annotated[int, BeforeValidator(int_in(1, 0xFFFF_FFFF))] = DEFAULT_CONCURRENCY


def _check_inbound_protocol(value: object) -> str:
    return _check_protocol(value, INBOUND_SETTINGS, UNSUPPORTED_INBOUNDS)


def _check_outbound_protocol(value: object) -> str:
    return _check_protocol(value, OUTBOUND_SETTINGS, UNSUPPORTED_OUTBOUNDS)


def _check_protocol(
    value: object, known: Mapping[str, type[ConfigModel]], unsupported: frozenset[str]
) -> str:
    allowed = ", ".join(known)
    if not isinstance(value, str):
        raise fail(f"{describe(value)} is not a protocol name; use one of: {allowed}")
    name = value.lower()
    if name in known:
        return name
    if name in unsupported:
        raise fail(f"{describe(value)} is not supported by v2py; use one of: {allowed}")
    raise fail(f"{describe(value)} is not a known protocol; use one of: {allowed}")


class InboundConfig(ConfigModel):
    """One inbound (``inbounds[]``, legacy ``inbound`` / ``inboundDetour[]``).

    ``port`` is always set after loading (a missing port is an error).
    ``path`` is where the object sits in the JSON, e.g. ``"inbounds[1]"``,
    prefixed ``"<file>: "`` when several files were merged.
    """

    INTERNAL_FIELDS: ClassVar[frozenset[str]] = frozenset({"path"})

    protocol: Annotated[str, BeforeValidator(_check_inbound_protocol)]
    tag: Str = ""
    listen: Annotated[str, BeforeValidator(_check_listen)] = "0.0.0.0"
    # port and settings are None only between the two parsing steps of the
    # loader, which fills both (or raises) before returning.
    port: InboundPort = Field(default=None)  # type: ignore[assignment]
    settings: Annotated[InboundSettings, SkipValidation] = Field(default=None)  # type: ignore[assignment]
    stream: StreamConfig = Field(
        default_factory=lambda: StreamConfig.trusted(), alias="streamSettings"
    )
    domain_override: Sniffers | None = None
    sniffing: SniffingConfig = Field(default_factory=lambda: SniffingConfig.trusted())
    allocate: AllocateConfig | None = None
    path: str = ""

    @classmethod
    def normalize(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Legacy ``domainOverride`` enables sniffing when ``sniffing`` is absent."""
        if "sniffing" not in data and "domainOverride" in data:
            data = {**data, "sniffing": {"enabled": True, "destOverride": data["domainOverride"]}}
        return data


#: Sessions per mux connection when ``concurrency`` is 0, and the most 4.34 starts with
#: (``infra/conf/v2ray.go`` MuxConfig, ``app/proxyman/outbound/handler.go``).
DEFAULT_MUX_CONCURRENCY = 8
MAX_MUX_CONCURRENCY = 1024


class MuxConfig(ConfigModel):
    """``mux``: Mux.Cool on this outbound. ``concurrency`` below 0 turns mux off
    entirely, 0 means 8, and above 1024 4.34 refuses to start."""

    enabled: Bool = False
    concurrency: Int16 = DEFAULT_MUX_CONCURRENCY

    @model_validator(mode="after")
    def _check_concurrency(self) -> MuxConfig:
        if self.concurrency > MAX_MUX_CONCURRENCY:
            raise fail(f"invalid mux concurrency: {self.concurrency}", "concurrency")
        return self

    @property
    def active(self) -> bool:
        """Whether the outbound's traffic goes through Mux.Cool."""
        return self.enabled and self.concurrency >= 0

    @property
    def configured(self) -> bool:
        """Whether 4.34 gives the outbound a mux client at all (enabled or not): then
        sessions that prefer mux (dispatched DoH) use it even when it is disabled."""
        return self.concurrency >= 0

    @property
    def sessions_per_connection(self) -> int:
        """The concurrency in effect (0 becomes 8)."""
        return self.concurrency or DEFAULT_MUX_CONCURRENCY


class ProxyConfig(ConfigModel):
    """``proxySettings`` (4.34 ``infra/conf/transport_internet.go`` ``ProxyConfig``): the
    outbound's connections are opened through the outbound tagged ``tag``. 4.34.0 knows
    no other key (``transportLayer`` came later and only warns here)."""

    tag: Str = ""

    @model_validator(mode="after")
    def _tag_given(self) -> ProxyConfig:
        if not self.tag:
            raise fail("Proxy tag is not set.", "tag")
        return self


class OutboundConfig(ConfigModel):
    """One outbound (``outbounds[]``, legacy ``outbound`` / ``outboundDetour[]``)."""

    INTERNAL_FIELDS: ClassVar[frozenset[str]] = frozenset({"path"})

    protocol: Annotated[str, BeforeValidator(_check_outbound_protocol)]
    tag: Str = ""
    send_through: Annotated[str, BeforeValidator(_check_send_through)] | None = None
    settings: Annotated[OutboundSettings, SkipValidation] = Field(default=None)  # type: ignore[assignment]
    stream: StreamConfig = Field(
        default_factory=lambda: StreamConfig.trusted(), alias="streamSettings"
    )
    mux: MuxConfig | None = None
    proxy_settings: ProxyConfig | None = None
    path: str = ""

    @property
    def source_address(self) -> str | None:
        """The IP dialled connections bind (``sendThrough``), None for any."""
        if self.send_through is None or self.send_through in ANY_ADDRESSES:
            return None
        return self.send_through


# --------------------------------------------------------------------------
# top level

#: ``api.services`` names 4.34 knows (matched case-insensitively); others are ignored,
#: as 4.34 ignores them.
API_SERVICES: dict[str, str] = {
    "handlerservice": "HandlerService",
    "loggerservice": "LoggerService",
    "statsservice": "StatsService",
}


def _check_api_tag(value: object) -> str:
    if not isinstance(value, str):
        raise fail(f"{describe(value)} is not a string")
    if not value:
        raise fail("API tag can't be empty.")
    return value


def _check_api_services(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise fail(f"{describe(value)} is not a list of service names")
    found: dict[str, None] = {}
    for item in value:
        if not isinstance(item, str):
            raise fail(f"{describe(item)} is not a service name")
        if item.lower() == "reflectionservice":
            raise fail(f"{NOT_SUPPORTED_YET}: ReflectionService (gRPC server reflection)")
        name = API_SERVICES.get(item.lower())
        if name is not None:
            found[name] = None
    return tuple(found)


class ApiConfig(ConfigModel):
    """``api``: the gRPC commander, reached through the outbound tagged ``tag``
    (4.34 ``infra/conf/api.go``). ``services`` holds the canonical names of the
    known services asked for."""

    tag: Annotated[str, BeforeValidator(_check_api_tag)] = ""
    services: Annotated[tuple[str, ...], BeforeValidator(_check_api_services)] = ()

    @model_validator(mode="after")
    def _tag_given(self) -> ApiConfig:
        if not self.tag:
            raise fail("API tag can't be empty.", "tag")
        return self


class StatsConfig(ConfigModel):
    """``stats``: an (empty) object that turns the traffic counters on."""


class RootConfig(ConfigModel):
    """One config file as written, before merging files and legacy keys."""

    port: Uint16 | None = None
    log: LogConfig | None = None
    policy: PolicyConfig | None = None
    transport: TransportConfig | None = None
    inbound: InboundConfig | None = None
    inbound_detour: tuple[InboundConfig, ...] | None = None
    inbounds: tuple[InboundConfig, ...] | None = None
    outbound: OutboundConfig | None = None
    outbound_detour: tuple[OutboundConfig, ...] | None = None
    outbounds: tuple[OutboundConfig, ...] | None = None
    api: ApiConfig | None = None
    stats: StatsConfig | None = None
    routing: RoutingConfig | None = None
    dns: DnsConfig | None = None
    reverse: ReverseConfig | None = None


def env_flag(env: Mapping[str, str], name: str) -> str | None:
    """Look up a V2Ray switch: the dotted name first, then ``V2RAY_...`` form.

    Mirrors 4.34 ``common/platform`` ``EnvFlag``: ``v2ray.vmess.padding`` is
    also found as ``V2RAY_VMESS_PADDING``.
    """
    if name in env:
        return env[name]
    return env.get(name.upper().replace(".", "_"))


class EnvSwitches(ConfigModel):
    """Environment switches of 4.34 that change protocol behaviour.

    ``vmess_aead_disabled``: ``v2ray.vmess.aead.disabled`` is exactly
    ``"true"``; a client then sends legacy headers even with alterId 0.
    ``vmess_padding``: ``v2ray.vmess.padding`` is set (any value); a client then
    adds GlobalPadding (docs/spec/vmess.md sections 2 and 8.5).
    ``vmess_aead_experiment``: ``VMESSAEADEXPERIMENT`` of 4.24-4.27 as the user's
    guide describes it (y/yes/true/1 forces AEAD headers, n/no/false/0 legacy
    ones; None: unset). 4.34 no longer reads it; v2py honours it.
    """

    vmess_aead_disabled: bool = False
    vmess_padding: bool = False
    vmess_aead_experiment: bool | None = None

    @property
    def vmess_aead_forced(self) -> bool | None:
        """What the switches force: True (AEAD), False (legacy) or None (by alterId)."""
        if self.vmess_aead_disabled:
            return False
        return self.vmess_aead_experiment

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EnvSwitches:
        """Read the switches from an environment mapping."""
        experiment = env.get("VMESSAEADEXPERIMENT", "").lower()
        return cls(
            vmess_aead_disabled=env_flag(env, "v2ray.vmess.aead.disabled") == "true",
            vmess_padding=env_flag(env, "v2ray.vmess.padding") is not None,
            vmess_aead_experiment=True
            if experiment in ("y", "yes", "true", "1")
            else False
            if experiment in ("n", "no", "false", "0")
            else None,
        )


class Config(ConfigModel):
    """The whole, merged configuration.

    ``inbounds`` is legacy ``inbound``, then ``inboundDetour[]``, then
    ``inbounds[]``; ``outbounds`` likewise, and its first entry is the default
    outbound. ``switches`` come from the environment, not from JSON.
    """

    INTERNAL_FIELDS: ClassVar[frozenset[str]] = frozenset({"switches"})

    log: LogConfig = Field(default_factory=lambda: LogConfig())
    policy: PolicyConfig = Field(default_factory=lambda: PolicyConfig())
    inbounds: tuple[InboundConfig, ...] = ()
    outbounds: tuple[OutboundConfig, ...] = ()
    api: ApiConfig | None = None
    stats: StatsConfig | None = None
    routing: RoutingConfig = Field(default_factory=lambda: RoutingConfig())
    # None: no ``dns`` object (the system resolver answers, as in 4.34).
    dns: DnsConfig | None = None
    reverse: ReverseConfig | None = None
    #: The top-level ``transport`` (already applied to every stream above); kept for
    #: handlers the API adds later, as 4.34 keeps its global transport settings.
    transport: TransportConfig | None = None
    switches: EnvSwitches = Field(default_factory=lambda: EnvSwitches())

    def inbound(self, tag: str) -> InboundConfig | None:
        """The inbound with ``tag`` (non-empty), or None."""
        return next((i for i in self.inbounds if tag and i.tag == tag), None)

    def outbound(self, tag: str) -> OutboundConfig | None:
        """The outbound with ``tag`` (non-empty), or None."""
        return next((o for o in self.outbounds if tag and o.tag == tag), None)
