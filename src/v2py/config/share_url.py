"""Share links for VLESS, Trojan and Shadowsocks users, from and to configs (pure).

``vless://`` and ``trojan://`` links follow the URL form the clients share
(``SCHEME://SECRET@HOST:PORT?QUERY#NAME``, the query naming the transport as the
V2Ray community's share-link proposal does): ``type`` (``tcp``, ``kcp``, ``ws``),
``security`` (``none`` / ``tls``; a Trojan link without it means ``tls``),
``headerType`` (tcp ``none``/``http``, mKCP obfuscation), ``host`` (WebSocket Host, or
the HTTP header's hosts joined by ``,``), ``path`` (WebSocket path, the HTTP header's
paths), ``seed`` (mKCP), ``sni``, ``alpn`` (joined by ``,``), VLESS ``encryption``
(``none``, the only one). ``ss://`` links are SIP002: the URL-safe base64 of
``METHOD:PASSWORD``, ``@HOST:PORT``, ``#NAME``; the legacy all-base64 form is read too.

What a 4.34 client cannot do is refused with one line (:class:`ShareLinkError`):
another transport, XTLS/REALITY, a VLESS ``flow``, a uTLS fingerprint, Shadowsocks
plugins. Shadowsocks links exist only for plain TCP inbounds (a SIP002 plugin is not
V2Ray's transport).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from v2py.config.model import Config, StreamConfig
from v2py.config.settings import (
    SHADOWSOCKS_METHODS,
    ShadowsocksInboundSettings,
    VlessInboundSettings,
)
from v2py.config.share import (
    ShareLinkError,
    StreamLinkFields,
    client_stream,
    server_address,
    stream_link_fields,
)
from v2py.config.trojan import TrojanInboundSettings

__all__ = [
    "URL_SCHEMES",
    "UrlLink",
    "decode_url_link",
    "encode_url_link",
    "url_client_outbound",
    "url_server_links",
]

URL_SCHEMES = ("vless", "trojan", "ss")
#: Transports a link can name for a v2py client.
_NETWORKS = ("tcp", "kcp", "ws")
#: v2py's method names -> the names SIP002 links carry.
_SIP002_METHODS = {
    "aes-128-gcm": "aes-128-gcm",
    "aes-256-gcm": "aes-256-gcm",
    "chacha20-poly1305": "chacha20-ietf-poly1305",
    "none": "none",
}
#: Query keys whose non-empty value asks for what 4.34 has not.
_REFUSED_KEYS = {
    "flow": "a VLESS flow (XTLS)",
    "fp": "a uTLS fingerprint",
    "pbk": "REALITY",
    "sid": "REALITY",
    "spx": "REALITY",
    "serviceName": "gRPC",
    "plugin": "a Shadowsocks plugin",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class UrlLink:
    """One user of one server. ``secret`` is the VLESS id or the Trojan / Shadowsocks
    password; ``method`` is the Shadowsocks cipher (v2py's name)."""

    scheme: str
    name: str = ""
    address: str
    port: int
    secret: str
    method: str = ""
    network: str = "tcp"
    header_type: str = "none"
    host: str = ""
    path: str = ""
    seed: str = ""
    security: str = "none"
    sni: str = ""
    alpn: tuple[str, ...] = ()
    allow_insecure: bool = False


def _netloc(address: str, port: int) -> str:
    try:
        if ipaddress.ip_address(address).version == 6:
            return f"[{address}]:{port}"
    except ValueError:
        pass
    return f"{address}:{port}"


def encode_url_link(link: UrlLink) -> str:
    """The link as text (module docstring)."""
    name = "#" + quote(link.name, safe="") if link.name else ""
    where = _netloc(link.address, link.port)
    if link.scheme == "ss":
        user = f"{_SIP002_METHODS[link.method]}:{link.secret}".encode()
        info = base64.urlsafe_b64encode(user).decode("ascii").rstrip("=")
        return f"ss://{info}@{where}{name}"
    query: dict[str, str] = {}
    if link.scheme == "vless":
        query["encryption"] = "none"
    query["security"] = link.security
    if link.security == "tls":
        if link.sni:
            query["sni"] = link.sni
        if link.alpn:
            query["alpn"] = ",".join(link.alpn)
    query["type"] = link.network
    if link.header_type != "none":
        query["headerType"] = link.header_type
    for key, value in (("host", link.host), ("path", link.path), ("seed", link.seed)):
        if value:
            query[key] = value
    secret = quote(link.secret, safe="")
    return f"{link.scheme}://{secret}@{where}?{urlencode(query, quote_via=quote)}{name}"


def _port(text: str | None) -> int:
    if text is None or not text.isascii() or not text.isdigit() or not 0 < int(text) < 65536:
        raise ShareLinkError(f"the port {text!r} is not 1-65535")
    return int(text)


def _split_host(netloc: str) -> tuple[str, int]:
    host, sep, port = netloc.rpartition(":")
    if not sep or not host:
        raise ShareLinkError("the link names no HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, _port(port)


def _b64(text: str) -> bytes:
    text = "".join(unquote(text).split())
    text += "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError):
        raise ShareLinkError("the ss:// link's user part is not base64") from None


def _ss_user(user: bytes) -> tuple[str, str]:
    method, sep, password = user.decode("utf-8", "replace").partition(":")
    canonical = SHADOWSOCKS_METHODS.get(method.lower())
    if not sep or canonical is None:
        raise ShareLinkError(f"the cipher {method!r} is not one 4.34 has")
    if not password:
        raise ShareLinkError("the ss:// link has no password")
    return canonical, password


def _decode_ss(rest: str, name: str) -> UrlLink:
    body, _, query = rest.partition("?")
    body = body.rstrip("/")
    if query and parse_qs(query).get("plugin", [""])[0]:
        raise ShareLinkError(
            "a Shadowsocks plugin is not supported by 4.34 (V2Ray's own transports are)"
        )
    if "@" in body:
        info, _, netloc = body.rpartition("@")
        user = unquote(info)
        method, password = _ss_user(user.encode() if ":" in user else _b64(info))
    else:  # legacy: base64 of METHOD:PASSWORD@HOST:PORT
        decoded = _b64(body).decode("utf-8", "replace")
        user_text, _, netloc = decoded.rpartition("@")
        method, password = _ss_user(user_text.encode())
    address, port = _split_host(netloc)
    return UrlLink(
        scheme="ss", name=name, address=address, port=port, secret=password, method=method
    )


def decode_url_link(text: str) -> UrlLink:
    """Read a ``vless://``, ``trojan://`` or ``ss://`` link. Raises ShareLinkError."""
    text = text.strip()
    scheme, sep, rest = text.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in URL_SCHEMES:
        raise ShareLinkError("not a vless://, trojan:// or ss:// link")
    rest, _, fragment = rest.partition("#")
    name = unquote(fragment)
    if scheme == "ss":
        return _decode_ss(rest, name)
    try:
        parts = urlsplit(f"{scheme}://{rest}")
    except ValueError as exc:  # e.g. "Invalid IPv6 URL"
        raise ShareLinkError(f"the {scheme}:// link is not a URL: {exc}") from None
    if parts.username is None:
        raise ShareLinkError(f"the {scheme}:// link has no user part before @")
    secret = unquote(parts.username)
    if parts.password is not None:
        secret += ":" + unquote(parts.password)
    address, port = _split_host(parts.netloc.rpartition("@")[2])
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    for key, what in _REFUSED_KEYS.items():
        if query.get(key):
            raise ShareLinkError(f"{key}={query[key]!r} asks for {what}, which 4.34 has not")
    if scheme == "vless":
        try:
            secret = str(uuid.UUID(secret))
        except ValueError:
            raise ShareLinkError("the VLESS id is not a UUID") from None
        if query.get("encryption", "none") != "none":
            raise ShareLinkError(f"encryption {query['encryption']!r}: VLESS has only none")
    elif not secret:
        raise ShareLinkError("the Trojan password is empty")
    security = query.get("security") or ("tls" if scheme == "trojan" else "none")
    if security not in ("none", "tls"):
        raise ShareLinkError(f"security {security!r} is not none or tls")
    network = (query.get("type") or "tcp").lower()
    if network not in _NETWORKS:
        raise ShareLinkError(f'transport "{network}" is not supported by v2py links')
    return UrlLink(
        scheme=scheme,
        name=name,
        address=address,
        port=port,
        secret=secret,
        network=network,
        header_type=(query.get("headerType") or "none").lower(),
        host=query.get("host", ""),
        path=query.get("path", ""),
        seed=query.get("seed", ""),
        security=security,
        sni=query.get("sni") or query.get("peer", ""),
        alpn=tuple(p.strip() for p in query.get("alpn", "").split(",") if p.strip()),
        allow_insecure=query.get("allowInsecure", "").lower() in ("1", "true"),
    )


# -- server config -> links -----------------------------------------------------------------


def _stream_fields(stream: StreamConfig) -> dict[str, Any] | None:
    """The link fields of an inbound's stream; None when a link cannot say it."""
    if stream.network not in _NETWORKS:
        return None
    fields = stream_link_fields(stream)
    return {
        "network": fields.network,
        "header_type": fields.header_type,
        "host": fields.host,
        "path": fields.path,
        "seed": fields.seed,
        "security": "tls" if fields.tls else "none",
        "sni": fields.sni,
        "alpn": fields.alpn,
    }


def url_server_links(config: Config, address: str | None = None) -> list[UrlLink]:
    """One link per user of every VLESS, Trojan and (plain TCP) Shadowsocks inbound;
    ``address`` as for ``share.server_links``. Raises ShareLinkError."""
    links: list[UrlLink] = []
    for index, inbound in enumerate(config.inbounds):
        settings = inbound.settings
        fields = _stream_fields(inbound.stream)
        if fields is None or inbound.allocate is not None:
            continue
        base = f"{inbound.tag or f'inbound{index}'}"
        port = inbound.port.first
        users: list[tuple[str, str, str]] = []  # (scheme, secret, email)
        if isinstance(settings, VlessInboundSettings):
            users = [("vless", str(c.id), c.email) for c in settings.clients]
        elif isinstance(settings, TrojanInboundSettings):
            users = [("trojan", c.password, c.email) for c in settings.clients]
        if users:
            add = server_address(inbound, address)
            for number, (scheme, secret, email) in enumerate(users):
                links.append(
                    UrlLink(
                        scheme=scheme,
                        name=email or f"{base}-{number}",
                        address=add,
                        port=port,
                        secret=secret,
                        **fields,
                    )
                )
        elif isinstance(settings, ShadowsocksInboundSettings):
            plain = (fields["network"], fields["header_type"], fields["security"]) == (
                "tcp",
                "none",
                "none",
            )
            if not plain or (settings.network and "tcp" not in settings.network):
                continue  # SIP002 has no V2Ray transports
            links.append(
                UrlLink(
                    scheme="ss",
                    name=settings.email or base,
                    address=server_address(inbound, address),
                    port=port,
                    secret=settings.password,
                    method=settings.method,
                )
            )
    return links


# -- link -> client outbound -----------------------------------------------------------------


def url_client_outbound(link: UrlLink) -> dict[str, Any]:
    """The outbound (tag ``proxy``) of a client of the link's server."""
    server: dict[str, Any] = {"address": link.address, "port": link.port}
    if link.scheme == "vless":
        settings: dict[str, Any] = {
            "vnext": [{**server, "users": [{"id": link.secret, "encryption": "none"}]}]
        }
    elif link.scheme == "trojan":
        settings = {"servers": [{**server, "password": link.secret}]}
    else:
        settings = {"servers": [{**server, "method": link.method, "password": link.secret}]}
    outbound: dict[str, Any] = {"tag": "proxy", "protocol": link.scheme, "settings": settings}
    if link.scheme == "ss":
        outbound["protocol"] = "shadowsocks"
    else:
        fields = StreamLinkFields(
            network=link.network,
            header_type=link.header_type,
            host=link.host,
            path=link.path,
            seed=link.seed,
            tls=link.security == "tls",
            sni=link.sni,
            alpn=link.alpn,
        )
        outbound["streamSettings"] = client_stream(fields, allow_insecure=link.allow_insecure)
    return outbound
