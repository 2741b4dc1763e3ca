"""Share links: ``vmess://`` links in the v2rayN format, from and to configs (pure).

The format (v2rayN's "share link format, version 2"): ``vmess://`` followed by
the base64 of a JSON object whose values are all strings:

``v`` "2"; ``ps`` remark; ``add`` server address; ``port``; ``id`` user id;
``aid`` alterId; ``scy`` body security (``auto``, ``aes-128-gcm``,
``chacha20-poly1305``, ``none``); ``net`` transport (``tcp``, ``kcp``, ``ws``,
...); ``type`` header type (tcp ``none``/``http``, mKCP obfuscation); ``host``
(WebSocket Host header, or the HTTP header's hosts joined by ``,``); ``path``
(WebSocket path, the HTTP header's paths joined by ``,``, or the mKCP
``seed``); ``tls`` ``"tls"`` or ``""``; ``sni``; ``alpn`` (joined by ``,``).

Readers are tolerant as real clients' links are: standard or URL-safe base64,
missing padding, line breaks, and numbers written as numbers or as strings. A
link that cannot be read raises :class:`ShareLinkError` with one line saying why.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from v2py.config.model import Config, InboundConfig, StreamConfig
from v2py.config.settings import VmessInboundSettings

__all__ = [
    "SCHEME",
    "ShareLinkError",
    "VmessLink",
    "client_config",
    "decode_vmess_link",
    "encode_vmess_link",
    "StreamLinkFields",
    "client_stream",
    "server_address",
    "server_links",
    "socks_client_config",
    "split_list",
    "stream_link_fields",
]

SCHEME = "vmess://"
LINK_VERSION = "2"
DEFAULT_SOCKS_PORT = 1080
#: Networks a v2py client can be configured for from a link.
CLIENT_NETWORKS = ("tcp", "kcp", "ws")
_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


class ShareLinkError(ValueError):
    """A link that cannot be read or made; ``str()`` is one line."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VmessLink:
    """The fields of a v2rayN ``vmess://`` link (module docstring)."""

    ps: str = ""
    add: str
    port: int
    id: str
    aid: int = 0
    scy: str = "auto"
    net: str = "tcp"
    type: str = "none"
    host: str = ""
    path: str = ""
    tls: str = ""
    sni: str = ""
    alpn: str = ""

    def to_json(self) -> dict[str, str]:
        """The JSON object of the link, every value a string, in v2rayN's order."""
        return {
            "v": LINK_VERSION,
            "ps": self.ps,
            "add": self.add,
            "port": str(self.port),
            "id": self.id,
            "aid": str(self.aid),
            "scy": self.scy,
            "net": self.net,
            "type": self.type,
            "host": self.host,
            "path": self.path,
            "tls": self.tls,
            "sni": self.sni,
            "alpn": self.alpn,
        }


def encode_vmess_link(link: VmessLink) -> str:
    """``vmess://`` + standard base64 (with padding) of the link's UTF-8 JSON."""
    text = json.dumps(link.to_json(), ensure_ascii=False, separators=(",", ":"))
    return SCHEME + base64.b64encode(text.encode("utf-8")).decode("ascii")


def _b64decode(body: str) -> bytes:
    body = "".join(body.split())  # line breaks from copy and paste
    body += "=" * (-len(body) % 4)
    try:
        if "-" in body or "_" in body:
            return base64.urlsafe_b64decode(body)
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ShareLinkError("the link is not base64 after vmess://") from None


def _text(obj: Mapping[str, Any], key: str) -> str:
    value = obj.get(key, "")
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ShareLinkError(f'field "{key}" is not a string')
    return str(value).strip()


def _number(obj: Mapping[str, Any], key: str, default: int, top: int) -> int:
    value = obj.get(key)
    if value is None or value == "":
        return default
    try:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError
        number = int(value.strip(), 10) if isinstance(value, str) else value
    except ValueError:
        raise ShareLinkError(f'field "{key}" is not a number: {value!r}') from None
    if not 0 <= number <= top:
        raise ShareLinkError(f'field "{key}" is out of range: {number}')
    return number


def _user_id(text: str) -> str:
    try:
        return str(uuid.UUID(hex=text.replace("-", "")))
    except ValueError:
        # a near-miss is most of the secret: show its start only
        shown = f"{text[:4]!r}... ({len(text)} characters)" if len(text) >= 16 else repr(text)
        raise ShareLinkError(f'field "id" is not a UUID: {shown}') from None


def decode_vmess_link(text: str) -> VmessLink:
    """Read a v2rayN ``vmess://`` link. Raises ShareLinkError (one line)."""
    text = text.strip()
    if not text.lower().startswith(SCHEME):
        raise ShareLinkError("not a vmess:// link")
    body = text[len(SCHEME) :]
    if "@" in body and "?" in body:
        raise ShareLinkError(
            "this is the vmess://UUID@HOST:PORT form, not v2rayN's base64 JSON form"
        )
    raw = _b64decode(body)
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ShareLinkError("the link's base64 does not hold JSON") from None
    if not isinstance(obj, dict):
        raise ShareLinkError("the link's JSON is not an object")
    version = _text(obj, "v") or LINK_VERSION
    if version != LINK_VERSION:
        raise ShareLinkError(f'link version "{version}" is not supported (only "2")')
    add = _text(obj, "add")
    if not add:
        raise ShareLinkError('field "add" (the server address) is missing')
    if not _text(obj, "port"):
        raise ShareLinkError('field "port" is missing')
    port = _number(obj, "port", 0, 65535)
    if port == 0:
        raise ShareLinkError('field "port" is 0')
    if not _text(obj, "id"):
        raise ShareLinkError('field "id" (the user id) is missing')
    return VmessLink(
        ps=_text(obj, "ps"),
        add=add,
        port=port,
        id=_user_id(_text(obj, "id")),
        aid=_number(obj, "aid", 0, 65535),
        scy=_text(obj, "scy") or "auto",
        net=(_text(obj, "net") or "tcp").lower(),
        type=(_text(obj, "type") or "none").lower(),
        host=_text(obj, "host"),
        path=_text(obj, "path"),
        tls=_text(obj, "tls").lower(),
        sni=_text(obj, "sni"),
        alpn=_text(obj, "alpn"),
    )


# -- server config -> links -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamLinkFields:
    """What a share link says of an inbound's stream (every link format says the same
    things: transport, header type, host, path, mKCP seed, TLS with SNI and ALPN)."""

    network: str
    header_type: str = "none"
    host: str = ""
    path: str = ""
    seed: str = ""
    tls: bool = False
    sni: str = ""
    alpn: tuple[str, ...] = ()


def stream_link_fields(stream: StreamConfig) -> StreamLinkFields:
    """The link fields of ``stream`` (an inbound's, as loaded)."""
    kind, host, path, seed = "none", "", "", ""
    if stream.network == "tcp" and stream.tcp is not None and stream.tcp.header.type == "http":
        request = stream.tcp.header.request
        hosts = next((v for k, v in request.headers.items() if k.lower() == "host"), ())
        kind = "http"
        host = ",".join([hosts] if isinstance(hosts, str) else hosts)
        path = ",".join(request.path)
    elif stream.network == "kcp" and stream.kcp is not None:
        kind, seed = stream.kcp.header.type, stream.kcp.seed or ""
    elif stream.network == "ws" and stream.ws is not None:
        host = next((v for k, v in stream.ws.headers.items() if k.lower() == "host"), "")
        path = stream.ws.path
    tls = stream.security == "tls"
    return StreamLinkFields(
        network=stream.network,
        header_type=kind,
        host=host,
        path=path,
        seed=seed,
        tls=tls,
        sni=stream.tls.server_name if tls and stream.tls is not None else "",
        alpn=tuple(stream.tls.alpn) if tls and stream.tls is not None else (),
    )


def _stream_fields(stream: StreamConfig) -> dict[str, str]:
    fields = stream_link_fields(stream)
    out = {
        "net": fields.network,
        "type": fields.header_type,
        "host": fields.host,
        # a v2rayN link carries the mKCP seed as its path
        "path": fields.seed if fields.network == "kcp" else fields.path,
    }
    if fields.tls:
        out.update(tls="tls", sni=fields.sni, alpn=",".join(fields.alpn))
    return out


def server_address(inbound: InboundConfig, address: str | None) -> str:
    """What clients dial: ``address``, else the inbound's specific listen address."""
    if address:
        return address
    if inbound.listen in _WILDCARDS:
        where = inbound.path or "inbound"
        raise ShareLinkError(
            f"{where} listens on every address: give the address clients use (--address)"
        )
    return inbound.listen


def server_links(config: Config, address: str | None = None) -> list[VmessLink]:
    """One link per user of every VMess inbound with fixed ports (dynamic-port
    inbounds hand out their users by SwitchAccount and get none). ``address`` is
    what clients dial; without it the inbound's listen address, which must then be
    a specific one. Raises ShareLinkError."""
    links: list[VmessLink] = []
    for index, inbound in enumerate(config.inbounds):
        settings = inbound.settings
        if not isinstance(settings, VmessInboundSettings) or inbound.allocate is not None:
            continue
        add = server_address(inbound, address)
        stream = _stream_fields(inbound.stream)
        for number, client in enumerate(settings.clients):
            links.append(
                VmessLink(
                    ps=client.email or f"{inbound.tag or f'inbound{index}'}-{number}",
                    add=add,
                    port=inbound.port.first,
                    id=_user_id(client.id),
                    aid=client.alter_id,
                    **stream,
                )
            )
    return links


# -- link -> client config ----------------------------------------------------------------------


def split_list(text: str) -> list[str]:
    """A link's comma-separated list."""
    return [part.strip() for part in text.split(",") if part.strip()]


def client_stream(fields: StreamLinkFields, *, allow_insecure: bool = False) -> dict[str, Any]:
    """The client's ``streamSettings`` for a link's stream fields. Raises ShareLinkError."""
    if fields.network not in CLIENT_NETWORKS:
        raise ShareLinkError(f'transport "{fields.network}" is not supported by v2py yet')
    stream: dict[str, Any] = {"network": fields.network}
    if fields.network == "tcp" and fields.header_type == "http":
        request: dict[str, Any] = {"path": split_list(fields.path) or ["/"]}
        if fields.host:
            request["headers"] = {"Host": split_list(fields.host)}
        stream["tcpSettings"] = {"header": {"type": "http", "request": request}}
    elif fields.network == "tcp" and fields.header_type not in ("", "none"):
        raise ShareLinkError(f'tcp header type "{fields.header_type}" is not one of none, http')
    elif fields.network == "kcp":
        kcp: dict[str, Any] = {"header": {"type": fields.header_type or "none"}}
        if fields.seed:
            kcp["seed"] = fields.seed
        stream["kcpSettings"] = kcp
    elif fields.network == "ws":
        ws: dict[str, Any] = {"path": fields.path or "/"}
        if fields.host:
            ws["headers"] = {"Host": fields.host}
        stream["wsSettings"] = ws
    if fields.tls:
        tls: dict[str, Any] = {}
        server_name = fields.sni or (split_list(fields.host)[0] if fields.host else "")
        if server_name:
            tls["serverName"] = server_name
        if fields.alpn:
            tls["alpn"] = list(fields.alpn)
        if allow_insecure:
            tls["allowInsecure"] = True
        stream["security"] = "tls"
        stream["tlsSettings"] = tls
    return stream


def _client_stream(link: VmessLink) -> dict[str, Any]:
    if link.tls not in ("", "none", "tls"):
        raise ShareLinkError(f'"tls" is "{link.tls}"; only "tls" or "" are known')
    kcp = link.net == "kcp"
    fields = StreamLinkFields(
        network=link.net,
        header_type=link.type,
        host=link.host,
        path="" if kcp else link.path,
        seed=link.path if kcp else "",
        tls=link.tls == "tls",
        sni=link.sni,
        alpn=tuple(split_list(link.alpn)),
    )
    return client_stream(fields)


def client_config(link: VmessLink, socks_port: int = DEFAULT_SOCKS_PORT) -> dict[str, Any]:
    """A V2Ray JSON client config: socks on 127.0.0.1:``socks_port`` (sniffing, UDP)
    going out by VMess to the link's server. Raises ShareLinkError."""
    user: dict[str, Any] = {"id": link.id, "alterId": link.aid, "security": link.scy}
    return socks_client_config(
        {
            "tag": "proxy",
            "protocol": "vmess",
            "settings": {"vnext": [{"address": link.add, "port": link.port, "users": [user]}]},
            "streamSettings": _client_stream(link),
        },
        socks_port,
    )


def socks_client_config(outbound: dict[str, Any], socks_port: int) -> dict[str, Any]:
    """A client config: socks on 127.0.0.1:``socks_port`` (sniffing, UDP) -> ``outbound``."""
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {
                "tag": "socks-in",
                "protocol": "socks",
                "listen": "127.0.0.1",
                "port": socks_port,
                "sniffing": {"enabled": True, "destOverride": ["http", "tls"]},
                "settings": {"auth": "noauth", "udp": True},
            }
        ],
        "outbounds": [outbound],
    }
