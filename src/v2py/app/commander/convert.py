"""AddInbound / AddOutbound handler configs (protobuf) -> v2py's config model.

4.34 builds handlers straight from the protobuf configs (``core.AddInboundHandler``).
v2py turns each into the JSON object a config file would hold
(:func:`v2py.config.protobuf.inbound_json` / ``outbound_json``, shared with
``-format pb`` config files) and validates it with the same loader, so a handler
added through the API means exactly what the same handler in a config file means,
and what v2py cannot do is refused with one line (as a gRPC error) instead of being
dropped.

Covered (what panels send): the receiver's port range, listen address, sniffing
and allocation strategy; stream settings over ``tcp`` (``acceptProxyProtocol``, no
header) or ``websocket`` (path, headers, ``acceptProxyProtocol``), each plain or with
TLS (every field of 4.34's ``tls.Config``; certificates inline); proxies
``vmess``, ``dokodemo-door``, ``shadowsocks``, ``vless``, ``trojan``, ``socks``,
``http`` and ``mtproto`` inbound, ``freedom``, ``blackhole``, ``vmess``,
``shadowsocks``, ``vless``, ``trojan``, ``socks``, ``http``, ``mtproto`` and ``dns``
outbound (one user per Shadowsocks / Trojan server, as 4.34's JSON writes them).
Not through the API: an outbound's ``sendThrough`` / ``proxySettings`` and an
inbound's ``receive_original_destination``. As 4.34, fields the messages do not
declare are skipped, and Xray's ``xray.*`` type names are read as 4.34's.
"""

from __future__ import annotations

from v2py.app.commander.proto import core_pb2 as cpb
from v2py.app.commander.services import ApiError, canonical_type
from v2py.config.load import load_inbound, load_outbound
from v2py.config.model import InboundConfig, OutboundConfig, TransportConfig
from v2py.config.protobuf import NOT_SUPPORTED, Decoder, ProtobufError, inbound_json, outbound_json
from v2py.errors import ConfigError

__all__ = ["inbound_config", "outbound_config"]

_CORE = "v2ray.com/core: "
_API = Decoder(strict=False, canonical=canonical_type)


def _api_error(exc: ProtobufError) -> ApiError:
    """4.34's own words where it fails alike, else the path and reason."""
    return ApiError(exc.go_text or f"{_CORE}{exc}")


def inbound_config(
    handler: cpb.InboundHandlerConfig, transport: TransportConfig | None = None
) -> InboundConfig:
    """The config model of an AddInbound request; raises ApiError. ``transport``: the
    running config's top-level one (4.34's global transport settings)."""
    try:
        data = inbound_json(_API, handler, "inbound")
    except ProtobufError as exc:
        raise _api_error(exc) from None
    # inbound_json takes receive_original_destination only with dokodemo's followRedirect.
    if data["protocol"] == "dokodemo-door" and data["settings"]["followRedirect"]:
        raise ApiError(f"{_CORE}receiveOriginalDestination: {NOT_SUPPORTED}'s API")
    try:
        return load_inbound(data, "inbound", transport)
    except ConfigError as exc:
        raise ApiError(f"{_CORE}{exc}") from None


def outbound_config(
    handler: cpb.OutboundHandlerConfig, transport: TransportConfig | None = None
) -> OutboundConfig:
    """The config model of an AddOutbound request; raises ApiError. ``transport`` as
    for :func:`inbound_config`."""
    try:
        data = outbound_json(_API, handler, "outbound")
    except ProtobufError as exc:
        raise _api_error(exc) from None
    if "sendThrough" in data or "proxySettings" in data:
        raise ApiError(f"{_CORE}sendThrough/proxySettings: {NOT_SUPPORTED}'s API")
    try:
        return load_outbound(data, "outbound", transport)
    except ConfigError as exc:
        raise ApiError(f"{_CORE}{exc}") from None
