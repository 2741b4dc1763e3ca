"""Protocol ``settings`` objects (v2ray-core 4.34 ``infra/conf/<protocol>.go``).

Each class mirrors one JSON object; field names are snake_case and the JSON
names camelCase. Unlike 4.34, unknown enum strings are errors rather than a
silent default (docs/style.md section 5): VMess ``security`` is not mapped to auto,
SOCKS ``auth`` is not mapped to noauth, freedom ``domainStrategy`` is not mapped
to AsIs.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator

from v2py.common.net import normalize_address
from v2py.config.base import (
    Bool,
    Byte,
    ConfigModel,
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
from v2py.config.fallback import FallbackInboundSettings
from v2py.config.trojan import TrojanInboundSettings, TrojanOutboundSettings

__all__ = [
    "AccountConfig",
    "BlackholeResponseConfig",
    "BlackholeSettings",
    "DEFAULT_ALTER_ID",
    "DnsOutboundSettings",
    "DokodemoSettings",
    "FreedomSettings",
    "HttpInboundSettings",
    "HttpOutboundSettings",
    "HttpServerConfig",
    "HttpUserConfig",
    "InboundSettings",
    "OutboundSettings",
    "SocksInboundSettings",
    "SocksOutboundSettings",
    "SocksServerConfig",
    "SocksUserConfig",
    "MtprotoInboundSettings",
    "MtprotoOutboundSettings",
    "MtprotoUserConfig",
    "ShadowsocksInboundSettings",
    "ShadowsocksOutboundSettings",
    "ShadowsocksServerConfig",
    "VmessClientConfig",
    "VmessDefaultConfig",
    "VmessDetourConfig",
    "VmessFeaturesConfig",
    "VmessInboundSettings",
    "VmessOutboundSettings",
    "VmessServerConfig",
    "VmessUserConfig",
    "VlessClientConfig",
    "VlessInboundSettings",
    "VlessOutboundSettings",
    "VlessServerConfig",
    "VlessUserConfig",
]

# The user's VMess reference says a missing ``default.alterId`` means 64.
# (The 4.34 code reads it as 0; see docs/spec/dynamic-port.md item 19.)
DEFAULT_ALTER_ID = 64

_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)


#: An id this long that is not a UUID is shown by its first characters only.
_UUID_REDACT_FROM = 16
_UUID_SHOWN_CHARS = 4


def _check_uuid(value: object) -> str:
    """Accept what 4.34's ``uuid.ParseString`` accepts for well-formed input.

    32 hex digits in 8-4-4-4-12 groups, dashes optional. Unlike 4.34, trailing
    text is refused. The result is the canonical lower-case dashed form.
    """
    if not isinstance(value, str):
        raise fail(f"{describe(value)} is not a UUID string")
    if not _UUID_RE.fullmatch(value):
        # A near-miss is most of a user's secret: never print it whole (4.34 prints none).
        shown = (
            f"{describe(value[:_UUID_SHOWN_CHARS] + '...')} ({len(value)} characters)"
            if len(value) >= _UUID_REDACT_FROM
            else describe(value)
        )
        raise fail(
            f"{shown} is not a UUID; use 32 hex digits as 8-4-4-4-12, "
            'e.g. "d17a1af7-efa5-42ca-b7e9-6a35282d737f"'
        )
    digits = value.replace("-", "").lower()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


Uuid = Annotated[str, BeforeValidator(_check_uuid)]
Port = Annotated[int, BeforeValidator(int_in(1, 0xFFFF))]


def _check_address(value: object) -> str:
    if not isinstance(value, str):
        raise fail(f"{describe(value)} is not an address string")
    text = value.strip()
    if not text:
        raise fail('"" is empty; use an IP address or a domain name')
    return ip_address(text) or text


Address = Annotated[str, BeforeValidator(_check_address)]


class AccountConfig(ConfigModel):
    """A ``{user, pass}`` account of the SOCKS and HTTP inbounds."""

    user: Str = ""
    password: Str = Field("", alias="pass")


# --------------------------------------------------------------------------
# Inbounds


class SocksInboundSettings(ConfigModel):
    """SOCKS inbound ``settings``.

    ``auth`` is exactly ``"noauth"`` or ``"password"``: 4.34 compares it
    case-sensitively and falls back to noauth, which would silently open a
    proxy meant to be protected, so anything else is an error here.
    """

    auth: Annotated[
        str,
        BeforeValidator(
            one_of(
                {"": "noauth", "noauth": "noauth", "password": "password"},
                shown=("noauth", "password"),
                case_sensitive=True,
            )
        ),
    ] = "noauth"
    accounts: tuple[AccountConfig, ...] = ()
    udp: Bool = False
    ip: Address | None = None
    user_level: Uint32 = 0
    timeout: Uint32 = 0

    @model_validator(mode="after")
    def _accounts_for_password(self) -> SocksInboundSettings:
        if self.auth == "password" and not self.accounts:
            raise fail('auth "password" needs at least one {"user", "pass"} entry', "accounts")
        return self


class HttpInboundSettings(ConfigModel):
    """HTTP proxy inbound ``settings``."""

    accounts: tuple[AccountConfig, ...] = ()
    allow_transparent: Bool = False
    user_level: Uint32 = 0
    timeout: Uint32 = 0


def _network_name(entry: str) -> str:
    name = entry.strip().lower()
    if name not in ("tcp", "udp"):
        raise fail(f'{describe(entry)} is not a network; use "tcp", "udp" or "tcp,udp"')
    return name


class DokodemoSettings(ConfigModel):
    """``dokodemo-door`` inbound ``settings``. ``follow_redirect``: each connection goes
    to its original destination (iptables REDIRECT or TPROXY, ``proxy/dokodemo.py``)."""

    address: Address | None = None
    port: Uint16 = 0
    network: Annotated[
        tuple[str, ...], BeforeValidator(string_list(_network_name, what='"tcp"/"udp"'))
    ] = ("tcp",)
    follow_redirect: Bool = False
    user_level: Uint32 = 0
    timeout: Uint32 = 0


class VmessClientConfig(ConfigModel):
    """One entry of VMess inbound ``clients``. ``security`` is read and ignored, as in 4.34."""

    id: Uuid
    level: Byte = 0
    alter_id: Uint16 = 0
    email: Str = ""
    security: Str = ""


class VmessDefaultConfig(ConfigModel):
    """VMess inbound ``default``: level and alterId of users created for a detour."""

    level: Byte = 0
    alter_id: Uint16 = DEFAULT_ALTER_ID


class VmessDetourConfig(ConfigModel):
    """VMess inbound ``detour``: the tag of the (dynamic) VMess inbound to send clients to."""

    to: Str

    @model_validator(mode="after")
    def _not_empty(self) -> VmessDetourConfig:
        if not self.to:
            raise fail('"" is empty; name the tag of a VMess inbound', "to")
        return self


class VmessFeaturesConfig(ConfigModel):
    """Legacy VMess inbound ``features`` holding ``detour``."""

    detour: VmessDetourConfig | None = None


class VmessInboundSettings(ConfigModel):
    """VMess inbound ``settings``."""

    clients: tuple[VmessClientConfig, ...] = ()
    default: VmessDefaultConfig = Field(default_factory=lambda: VmessDefaultConfig())
    detour: VmessDetourConfig | None = None
    features: VmessFeaturesConfig | None = None
    disable_insecure_encryption: Bool = False

    @property
    def detour_to(self) -> str | None:
        """The detour target tag; ``detour`` wins over legacy ``features.detour``."""
        if self.detour is not None:
            return self.detour.to
        if self.features is not None and self.features.detour is not None:
            return self.features.detour.to
        return None

    @property
    def detour_key(self) -> str:
        """JSON sub-path of the effective detour target, for messages."""
        return "detour.to" if self.detour is not None else "features.detour.to"

    @model_validator(mode="after")
    def _unique_emails(self) -> VmessInboundSettings:
        seen: dict[str, int] = {}
        for index, client in enumerate(self.clients):
            email = client.email.lower()
            if not email:
                continue
            if email in seen:
                raise fail(
                    f"{describe(client.email)} is already used by clients[{seen[email]}]; "
                    "emails must be unique (case-insensitive)",
                    f"clients[{index}].email",
                )
            seen[email] = index
        return self


_VMESS_SECURITY = {
    "aes-128-gcm": "aes-128-gcm",
    "chacha20-poly1305": "chacha20-poly1305",
    "auto": "auto",
    "none": "none",
    "aes-128-cfb": "aes-128-cfb",
}


class VmessUserConfig(ConfigModel):
    """One user of a VMess outbound server."""

    id: Uuid
    alter_id: Uint16 = 0
    security: Annotated[
        str,
        BeforeValidator(one_of(_VMESS_SECURITY, refused={"zero": "not supported by V2Ray 4.34"})),
    ] = "auto"
    level: Byte = 0
    email: Str = ""
    tests_enabled: Annotated[
        str,
        BeforeValidator(
            one_of(
                {"vmessaead": "VMessAEAD", "none": "none", "": ""}, shown=("VMessAEAD", "none", "")
            )
        ),
    ] = ""


class VmessServerConfig(ConfigModel):
    """One ``vnext`` entry: a VMess server and its users."""

    address: Address
    port: Port
    users: tuple[VmessUserConfig, ...] = ()

    @model_validator(mode="after")
    def _has_users(self) -> VmessServerConfig:
        if not self.users:
            raise fail('no users; add at least one {"id": ...} user', "users")
        return self


class VmessOutboundSettings(ConfigModel):
    """VMess outbound ``settings``."""

    vnext: tuple[VmessServerConfig, ...] = ()

    @model_validator(mode="after")
    def _has_servers(self) -> VmessOutboundSettings:
        if not self.vnext:
            raise fail('no servers; add at least one {"address", "port", "users"} entry', "vnext")
        return self


def _vless_encryption(value: object) -> str:
    if value != "none":
        # 4.34's own words (infra/conf/vless.go).
        raise fail('please add/set "encryption":"none" for every user')
    return "none"


def _vless_flow(value: object) -> str:
    if value != "":
        raise fail(f"{describe(value)} is not supported by v2py (4.34 never sends a flow)")
    return ""


class VlessUserConfig(ConfigModel):
    """One user of a VLESS outbound server (4.34 ``infra/conf/vless.go``)."""

    id: Uuid
    encryption: Annotated[str, BeforeValidator(_vless_encryption)] = Field(
        default="", validate_default=True
    )
    level: Byte = 0
    email: Str = ""
    flow: Annotated[str, BeforeValidator(_vless_flow)] = ""


def _vless_decryption(value: object) -> str:
    if value != "none":
        # 4.34's own words (infra/conf/vless.go).
        raise fail('please add/set "decryption":"none" to every settings')
    return "none"


class VlessClientConfig(ConfigModel):
    """One entry of VLESS inbound ``clients``."""

    id: Uuid
    level: Byte = 0
    email: Str = ""
    flow: Annotated[str, BeforeValidator(_vless_flow)] = ""


class VlessInboundSettings(FallbackInboundSettings):
    """VLESS inbound ``settings`` (4.34 ``infra/conf/vless.go``)."""

    protocol_name = "VLESS"
    clients: tuple[VlessClientConfig, ...] = ()
    decryption: Annotated[str, BeforeValidator(_vless_decryption)] = Field(
        default="", validate_default=True
    )


class VlessServerConfig(ConfigModel):
    """One ``vnext`` entry of a VLESS outbound."""

    address: Address
    port: Port
    users: tuple[VlessUserConfig, ...] = ()

    @model_validator(mode="after")
    def _has_users(self) -> VlessServerConfig:
        if not self.users:
            raise fail('"users" is empty', "users")
        return self


class VlessOutboundSettings(ConfigModel):
    """VLESS outbound ``settings``."""

    vnext: tuple[VlessServerConfig, ...] = ()

    @model_validator(mode="after")
    def _has_servers(self) -> VlessOutboundSettings:
        if not self.vnext:
            raise fail('no servers; add at least one {"address", "port", "users"} entry', "vnext")
        return self


#: 4.34's Shadowsocks ``method`` spellings (``cipherFromString``, any case) and the
#: cipher each names; 4.34 has no stream ciphers.
SHADOWSOCKS_METHODS = {
    "aes-128-gcm": "aes-128-gcm",
    "aead_aes_128_gcm": "aes-128-gcm",
    "aes-256-gcm": "aes-256-gcm",
    "aead_aes_256_gcm": "aes-256-gcm",
    "chacha20-poly1305": "chacha20-poly1305",
    "aead_chacha20_poly1305": "chacha20-poly1305",
    "chacha20-ietf-poly1305": "chacha20-poly1305",
    "none": "none",
    "plain": "none",
}


def _shadowsocks_method(value: object) -> str:
    if not isinstance(value, str):
        raise fail(f"{describe(value)} is not a cipher method string")
    method = SHADOWSOCKS_METHODS.get(value.lower())
    if method is None:
        # 4.34's own words (infra/conf/shadowsocks.go), then what it accepts.
        shown = ", ".join(sorted({v for v in SHADOWSOCKS_METHODS.values()}))
        raise fail(f"unknown cipher method: {value} (4.34 has {shown})")
    return method


def _shadowsocks_password(value: object) -> str:
    if not isinstance(value, str):
        raise fail(f"{describe(value)} is not a password string")
    if not value:
        raise fail("Shadowsocks password is not specified.")  # 4.34's words
    return value


ShadowsocksMethod = Annotated[str, BeforeValidator(_shadowsocks_method)]
ShadowsocksPassword = Annotated[str, BeforeValidator(_shadowsocks_password)]


class ShadowsocksInboundSettings(ConfigModel):
    """Shadowsocks inbound ``settings`` (4.34 ``ShadowsocksServerConfig``): one user.
    ``network`` empty means TCP; ``udp`` adds UDP."""

    method: ShadowsocksMethod = Field(default="", validate_default=True)
    password: ShadowsocksPassword = Field(default="", validate_default=True)
    udp: Bool = False
    level: Byte = 0
    email: Str = ""
    network: Annotated[
        tuple[str, ...], BeforeValidator(string_list(_network_name, what='"tcp"/"udp"'))
    ] = ()


class ShadowsocksServerConfig(ConfigModel):
    """One ``servers`` entry of a Shadowsocks outbound. ``ota`` is read and ignored,
    as in 4.34 (which has no one-time auth)."""

    address: Address
    port: Port
    method: ShadowsocksMethod = Field(default="", validate_default=True)
    password: ShadowsocksPassword = Field(default="", validate_default=True)
    email: Str = ""
    ota: Bool = False
    level: Byte = 0


class ShadowsocksOutboundSettings(ConfigModel):
    """Shadowsocks outbound ``settings``."""

    servers: tuple[ShadowsocksServerConfig, ...] = ()

    @model_validator(mode="after")
    def _has_servers(self) -> ShadowsocksOutboundSettings:
        if not self.servers:
            # 4.34's own words.
            raise fail("0 Shadowsocks server configured.", "servers")
        return self


def _mtproto_secret(value: object) -> str:
    if not isinstance(value, str):
        raise fail(f"{describe(value)} is not a secret string")
    if len(value) != 32:
        raise fail("MTProto secret must have 32 chars")  # 4.34's words
    try:
        bytes.fromhex(value)
    except ValueError:
        raise fail(f"failed to decode secret: {value}") from None  # 4.34's words
    return value.lower()


class MtprotoUserConfig(ConfigModel):
    """One ``users`` entry of an MTProto inbound: a 32-hex-digit ``secret``."""

    secret: Annotated[str, BeforeValidator(_mtproto_secret)] = Field(
        default="", validate_default=True
    )
    email: Str = ""
    level: Byte = 0


class MtprotoInboundSettings(ConfigModel):
    """MTProto inbound ``settings`` (4.34 ``infra/conf/mtproto.go``); 4.34 serves the
    first user only."""

    users: tuple[MtprotoUserConfig, ...] = ()

    @model_validator(mode="after")
    def _has_users(self) -> MtprotoInboundSettings:
        if not self.users:
            raise fail("zero MTProto users configured.", "users")  # 4.34's words
        return self


class MtprotoOutboundSettings(ConfigModel):
    """MTProto outbound ``settings``: 4.34 reads none."""


# --------------------------------------------------------------------------
# Outbounds

_V4 = "UseIPv4"
_V6 = "UseIPv6"
_DOMAIN_STRATEGIES = {
    "": "AsIs",
    "asis": "AsIs",
    "useip": "UseIP",
    "use_ip": "UseIP",
    "useipv4": _V4,
    "useip4": _V4,
    "use_ipv4": _V4,
    "use_ip_v4": _V4,
    "use_ip4": _V4,
    "useipv6": _V6,
    "useip6": _V6,
    "use_ipv6": _V6,
    "use_ip_v6": _V6,
    "use_ip6": _V6,
}


def _check_redirect(value: object) -> str:
    if not isinstance(value, str):
        raise fail(f'{describe(value)} is not a string; use "host:port" or ":port"')
    if value and _split_host_port(value) is None:
        raise fail(f'{describe(value)} is not "host:port" or ":port"')
    return value


def _split_host_port(text: str) -> tuple[str, int] | None:
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            return None
    if not sep or not port.isdigit() or int(port) > 0xFFFF:
        return None
    return host, int(port)


class FreedomSettings(ConfigModel):
    """``freedom`` outbound ``settings``."""

    domain_strategy: Annotated[
        str,
        BeforeValidator(one_of(_DOMAIN_STRATEGIES, shown=("AsIs", "UseIP", "UseIPv4", "UseIPv6"))),
    ] = "AsIs"
    redirect: Annotated[str, BeforeValidator(_check_redirect)] = ""
    user_level: Uint32 = 0
    timeout: Uint32 | None = None

    @property
    def redirect_target(self) -> tuple[str, int] | None:
        """``(host, port)`` of ``redirect``; host ``""`` or port 0 means "keep"."""
        return _split_host_port(self.redirect) if self.redirect else None

    @property
    def redirect_override(self) -> tuple[str | None, int | None]:
        """What ``redirect`` replaces in every destination: (address, port), None for
        "keep" — an empty address or 4.34's IPv4 any-address 0.0.0.0, and port 0
        (proxy/freedom/freedom.go)."""
        target = self.redirect_target
        if target is None:
            return None, None
        host, port = target
        address = normalize_address(host) if host else None
        return (None if address == "0.0.0.0" else address), (port or None)


class BlackholeResponseConfig(ConfigModel):
    """``response`` of blackhole: ``none`` closes at once, ``http`` sends a 403 first."""

    type: Annotated[str, BeforeValidator(one_of({"none": "none", "http": "http"}))] = "none"


class BlackholeSettings(ConfigModel):
    """``blackhole`` outbound ``settings``."""

    response: BlackholeResponseConfig = Field(default_factory=lambda: BlackholeResponseConfig())


class DnsOutboundSettings(ConfigModel):
    """``dns`` outbound ``settings`` (4.34 ``infra/conf/dns_proxy.go``): where the
    queries it does not answer itself are forwarded instead of their destination's
    network / address / port (empty or 0: keep)."""

    network: Annotated[
        str,
        BeforeValidator(
            one_of(
                {"": "", "tcp": "tcp", "udp": "udp"},
                shown=("tcp", "udp"),
                refused={"unix": "not supported by v2py"},
            )
        ),
    ] = ""
    address: Address | None = None
    port: Uint16 = 0


#: RFC 1929 sends the user name and the password with one length byte each.
_RFC1929_MAX_BYTES = 0xFF


def _rfc1929_field(value: object) -> str:
    if not isinstance(value, str):
        raise fail(f"{describe(value)} is not a string")
    if len(value.encode()) > _RFC1929_MAX_BYTES:
        # 4.34 would write a wrong length byte and a handshake no server can read.
        raise fail(f"{describe(value)} is longer than 255 bytes, which SOCKS5 cannot send")
    return value


class SocksUserConfig(ConfigModel):
    """A user of a SOCKS outbound server (4.34 ``protocol.User`` + ``SocksAccount``):
    its level picks the policy of the connection, the email is only a name."""

    user: Annotated[str, BeforeValidator(_rfc1929_field)] = ""
    password: Annotated[str, BeforeValidator(_rfc1929_field)] = Field("", alias="pass")
    level: Uint32 = 0
    email: Str = ""


class SocksServerConfig(ConfigModel):
    """One ``servers`` entry of a SOCKS outbound."""

    address: Address
    port: Port
    users: tuple[SocksUserConfig, ...] = ()


class SocksOutboundSettings(ConfigModel):
    """SOCKS outbound ``settings`` (4.34 ``infra/conf/socks.go`` ``SocksClientConfig``)."""

    servers: tuple[SocksServerConfig, ...] = ()

    @model_validator(mode="after")
    def _has_servers(self) -> SocksOutboundSettings:
        if not self.servers:
            raise fail('no servers; add at least one {"address", "port"} entry', "servers")
        return self


class HttpUserConfig(ConfigModel):
    """A user of an HTTP outbound server (4.34 ``protocol.User`` + ``HTTPAccount``)."""

    user: Str = ""
    password: Str = Field("", alias="pass")
    level: Uint32 = 0
    email: Str = ""


class HttpServerConfig(ConfigModel):
    """One ``servers`` entry of an HTTP outbound."""

    address: Address
    port: Port
    users: tuple[HttpUserConfig, ...] = ()


class HttpOutboundSettings(ConfigModel):
    """HTTP outbound ``settings`` (4.34 ``infra/conf/http.go`` ``HTTPClientConfig``)."""

    servers: tuple[HttpServerConfig, ...] = ()

    @model_validator(mode="after")
    def _has_servers(self) -> HttpOutboundSettings:
        if not self.servers:
            raise fail('no servers; add at least one {"address", "port"} entry', "servers")
        return self


InboundSettings = (
    SocksInboundSettings
    | HttpInboundSettings
    | DokodemoSettings
    | VmessInboundSettings
    | VlessInboundSettings
    | TrojanInboundSettings
    | ShadowsocksInboundSettings
    | MtprotoInboundSettings
)
OutboundSettings = (
    FreedomSettings
    | BlackholeSettings
    | DnsOutboundSettings
    | VmessOutboundSettings
    | VlessOutboundSettings
    | TrojanOutboundSettings
    | ShadowsocksOutboundSettings
    | MtprotoOutboundSettings
    | SocksOutboundSettings
    | HttpOutboundSettings
)
