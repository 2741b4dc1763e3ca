"""Stacking the stream layers of one ``streamSettings`` on its base transport, in 4.34's
order (docs/spec/transports.md "How the layers nest"):

* tcp: TCP, PROXY header (inbound), TLS, HTTP header;
* ws: TCP, PROXY header (inbound), TLS, WebSocket;
* kcp: mKCP, TLS;
* h2: TCP, PROXY header (inbound, from ``sockopt``), TLS (then the HTTP/2 transport on
  top, ``transport/h2.py``);
* ds: Unix socket, TLS.

The layer modules (and ``ssl``, ``websockets``) are imported only when a config uses them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from v2py.config.model import StreamConfig
    from v2py.transport import Transport

__all__ = ["WS_PROXY_HEADER_TIMEOUT_S", "layered"]

#: Under WebSocket and HTTP/2 the PROXY header is read within Go's HTTP server's 4 s
#: deadlines.
WS_PROXY_HEADER_TIMEOUT_S = 4.0


def layered(stream: StreamConfig, base: Transport) -> Transport:
    """``base`` (TCP or mKCP) with the layers ``stream`` asks for; ``base`` itself
    when there are none."""
    transport: Transport = base
    tcp = stream.tcp
    ws = stream.ws
    # 4.34's tcp and ws listeners replace sockopt.acceptProxyProtocol with their own
    # setting; only the h2 listener reads the sockopt one (config/model.py SocketConfig).
    if stream.network == "h2":
        proxy_header = stream.sockopt is not None and stream.sockopt.accept_proxy_protocol
    else:
        proxy_header = (tcp is not None and tcp.accept_proxy_protocol) or (
            ws is not None and ws.accept_proxy_protocol
        )
    if proxy_header and stream.network in ("tcp", "ws", "h2"):
        from v2py.transport.proxy_protocol import PROXY_HEADER_TIMEOUT_S, ProxyProtocolTransport

        reply = b""
        if stream.network in ("ws", "h2") and stream.tls is None:
            from v2py.protocol.http_head import go_error_reply

            reply = go_error_reply("400 Bad Request")
        timeout = PROXY_HEADER_TIMEOUT_S if stream.network == "tcp" else WS_PROXY_HEADER_TIMEOUT_S
        transport = ProxyProtocolTransport(transport, timeout=timeout, error_reply=reply)
    if stream.tls is not None:
        from v2py.transport.tls import TlsSecurity, TlsTransport

        security = TlsSecurity(stream.tls, network=stream.network)
        # Go's HTTP server (ws, h2) answers plain HTTP at its TLS port.
        http_reply = stream.network in ("ws", "h2")
        transport = TlsTransport(transport, security, http_reply=http_reply)
    if stream.network == "tcp" and tcp is not None and tcp.header.type == "http":
        from v2py.transport.http_header import HttpHeaderTransport

        transport = HttpHeaderTransport(transport, tcp.header.request, tcp.header.response)
    if stream.network == "ws":
        from v2py.config.stream import WsConfig
        from v2py.transport.ws import WsTransport

        transport = WsTransport(transport, ws or WsConfig(), tls=stream.tls is not None)
    return transport
