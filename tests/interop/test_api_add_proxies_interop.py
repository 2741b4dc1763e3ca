"""AddInbound through the API with Shadowsocks, VLESS and Trojan inbounds (plain TCP, as
panels add them, and over TLS / WebSocket+TLS): the same requests to v2ray 4.34 and to
v2py give inbounds that serve the same clients; and AddOutbound of each becomes the
outbound a config file makes, stream settings included."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest

from tests.support.forward import echo_server
from tests.support.socks import socks5_connect
from tests.support.tls_certs import TestCA
from tests.support.v2py import run_side, run_v2py
from tests.support.v2ray import free_ports, require_v2ray
from v2py.app.commander.convert import inbound_config, outbound_config
from v2py.app.commander.proto import core_pb2 as cpb
from v2py.app.commander.proto import handler_command_pb2 as hpb
from v2py.app.commander.proto import internet_pb2 as ipb
from v2py.app.commander.proto import kcp_pb2 as kcppb
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
from v2py.app.commander.proto import websocket_pb2 as wspb
from v2py.app.commander.services import ApiError, typed
from v2py.config.load import load_config

pytestmark = pytest.mark.interop

ID = str(uuid.UUID(int=0x5EC7E7))
PASSWORD = "added-by-api"
LOOPBACK = bytes([127, 0, 0, 1])
ADD_INBOUND = "/v2ray.core.app.proxyman.command.HandlerService/AddInbound"


def api_config(api_port: int) -> dict[str, Any]:
    return {
        "log": {"loglevel": "warning"},
        "api": {"tag": "api", "services": ["HandlerService"]},
        "inbounds": [
            {"tag": "api", "listen": "127.0.0.1", "port": api_port,
             "protocol": "dokodemo-door", "settings": {"address": "127.0.0.1"}},
        ],
        "outbounds": [{"tag": "direct", "protocol": "freedom"}],
        "routing": {"rules": [{"type": "field", "inboundTag": ["api"], "outboundTag": "api"}]},
    }  # fmt: skip


def proxy_settings(protocol: str) -> Any:
    if protocol == "shadowsocks":
        account = sspb.Account(password=PASSWORD, cipher_type=sspb.AES_128_GCM)
        return sspb.ServerConfig(user=ppb.User(email="ss@x", account=typed(account)))
    if protocol == "vless":
        user = ppb.User(email="vl@x", account=typed(vlpb.Account(id=ID)))
        return vlipb.Config(clients=[user], decryption="none")
    user = ppb.User(email="tj@x", account=typed(tjpb.Account(password=PASSWORD)))
    return tjpb.ServerConfig(users=[user])


CA = TestCA()
LEAF = CA.issue("added.test")


def stream_settings(kind: str, *, server: bool) -> ipb.StreamConfig:
    """``tls`` (TCP), ``ws+tls`` or ``kcp`` (a header and a seed) as 4.34's JSON loader
    encodes them."""
    if kind == "kcp":
        kcp = kcppb.Config(
            header_config=tpb.TypedMessage(type="v2ray.core.transport.internet.headers.utp.Config"),
            seed=kcppb.EncryptionSeed(seed="added"),
        )
        return ipb.StreamConfig(
            protocol_name="mkcp",
            transport_settings=[ipb.TransportConfig(protocol_name="mkcp", settings=typed(kcp))],
        )
    if server:
        cert = tlspb.Certificate(Certificate=LEAF.cert_pem.encode(), Key=LEAF.key_pem.encode())
        tls = tlspb.Config(certificate=[cert])
    else:
        tls = tlspb.Config(server_name="added.test", allow_insecure=True)
    stream = ipb.StreamConfig(
        security_type=tlspb.Config.DESCRIPTOR.full_name, security_settings=[typed(tls)]
    )
    if kind == "ws+tls":
        ws = wspb.Config(path="/added", header=[wspb.Header(key="X-Panel", value="yes")])
        stream.protocol_name = "websocket"
        stream.transport_settings.append(
            ipb.TransportConfig(protocol_name="websocket", settings=typed(ws))
        )
    else:
        stream.protocol_name = "tcp"
    return stream


def add_inbound(protocol: str, port: int, stream: str | None = None) -> bytes:
    receiver = mpb.ReceiverConfig(
        port_range=npb.PortRange(From=port, To=port), listen=npb.IPOrDomain(ip=LOOPBACK)
    )
    if stream is not None:
        receiver.stream_settings.CopyFrom(stream_settings(stream, server=True))
    return hpb.AddInboundRequest(
        inbound=cpb.InboundHandlerConfig(
            tag=f"added-{protocol}",
            receiver_settings=typed(receiver),
            proxy_settings=typed(proxy_settings(protocol)),
        )
    ).SerializeToString()


def client_outbound(protocol: str, port: int, stream: str | None = None) -> dict[str, Any]:
    server: dict[str, Any] = {"address": "127.0.0.1", "port": port}
    if protocol == "shadowsocks":
        settings = {"servers": [{**server, "method": "aes-128-gcm", "password": PASSWORD}]}
    elif protocol == "vless":
        settings = {"vnext": [{**server, "users": [{"id": ID, "encryption": "none"}]}]}
    else:
        settings = {"servers": [{**server, "password": PASSWORD}]}
    outbound: dict[str, Any] = {"protocol": protocol, "settings": settings}
    if stream == "kcp":
        kcp = {"header": {"type": "utp"}, "seed": "added"}
        outbound["streamSettings"] = {"network": "kcp", "kcpSettings": kcp}
    elif stream is not None:
        tls = {"serverName": "added.test", "allowInsecure": True}
        outbound["streamSettings"] = {"network": "tcp", "security": "tls", "tlsSettings": tls}
        if stream == "ws+tls":
            outbound["streamSettings"].update(network="ws", wsSettings={"path": "/added"})
    return outbound


@pytest.mark.parametrize(
    ("protocol", "stream"),
    [
        ("shadowsocks", None),
        ("vless", None),
        ("trojan", None),
        ("vless", "ws+tls"),
        ("trojan", "tls"),
        ("shadowsocks", "ws+tls"),
        ("vless", "kcp"),
    ],
)
async def test_added_inbounds_serve_as_4_34s(protocol: str, stream: str | None) -> None:
    require_v2ray()
    async with echo_server() as echo:
        for kind in ("v2ray", "v2py"):
            api_port, proxy_port, socks_port = free_ports(3)
            client = {
                "inbounds": [{"listen": "127.0.0.1", "port": socks_port, "protocol": "socks"}],
                "outbounds": [client_outbound(protocol, proxy_port, stream)],
            }
            async with (
                run_side(kind, api_config(api_port), api_port),
                grpc.aio.insecure_channel(f"127.0.0.1:{api_port}") as channel,
                run_v2py(client),
                asyncio.timeout(30),
            ):
                call = channel.unary_unary(ADD_INBOUND)
                await call(add_inbound(protocol, proxy_port, stream))
                reader, writer = await socks5_connect(socks_port, "127.0.0.1", echo)
                try:
                    writer.write(b"ping")
                    await writer.drain()
                    assert await reader.readexactly(4) == b"ping", kind
                finally:
                    writer.close()


def _endpoint(account: Any) -> ppb.ServerEndpoint:
    return ppb.ServerEndpoint(
        address=npb.IPOrDomain(ip=LOOPBACK), port=8388, user=[ppb.User(account=typed(account))]
    )


def test_added_outbounds_mean_what_a_config_file_means() -> None:
    def converted(settings: Any) -> Any:
        handler = cpb.OutboundHandlerConfig(tag="o", proxy_settings=typed(settings))
        return outbound_config(handler).settings

    ss = converted(
        sspb.ClientConfig(
            server=[_endpoint(sspb.Account(password="p", cipher_type=sspb.CHACHA20_POLY1305))]
        )
    )
    assert (ss.servers[0].method, ss.servers[0].password, ss.servers[0].port) == (
        "chacha20-poly1305",
        "p",
        8388,
    )
    vless = converted(vlopb.Config(vnext=[_endpoint(vlpb.Account(id=ID, encryption="none"))]))
    assert vless.vnext[0].users[0].id == ID
    trojan = converted(tjpb.ClientConfig(server=[_endpoint(tjpb.Account(password="t"))]))
    assert trojan.servers[0].password == "t"


def test_added_outbound_stream_settings_mean_what_a_config_file_means() -> None:
    sender = mpb.SenderConfig(stream_settings=stream_settings("ws+tls", server=False))
    handler = cpb.OutboundHandlerConfig(
        tag="o",
        sender_settings=typed(sender),
        proxy_settings=typed(
            vlopb.Config(vnext=[_endpoint(vlpb.Account(id=ID, encryption="none"))])
        ),
    )
    stream = outbound_config(handler).stream
    assert stream.network == "ws" and stream.security == "tls"
    assert stream.ws is not None and stream.ws.normalized_path == "/added"
    assert dict(stream.ws.headers) == {"X-Panel": "yes"}
    assert stream.tls is not None
    assert (stream.tls.server_name, stream.tls.allow_insecure) == ("added.test", True)


def _refused(stream: ipb.StreamConfig) -> str:
    receiver = mpb.ReceiverConfig(port_range=npb.PortRange(From=1, To=1), stream_settings=stream)
    handler = cpb.InboundHandlerConfig(
        receiver_settings=typed(receiver), proxy_settings=typed(proxy_settings("vless"))
    )
    with pytest.raises(ApiError) as info:
        inbound_config(handler)
    return str(info.value)


def test_stream_settings_v2py_cannot_mean_are_refused() -> None:
    assert "transport 'grpc'" in _refused(ipb.StreamConfig(protocol_name="grpc"))
    assert "bind_address" in _refused(
        ipb.StreamConfig(socket_settings=ipb.SocketConfig(bind_address=bytes(4)))
    )
    reality = ipb.StreamConfig(security_type="xray.transport.internet.reality.Config")
    assert "streamSettings.security" in _refused(reality)
    http_header = tcppb.Config()
    http_header.header_settings.type = "v2ray.core.transport.internet.headers.http.Config"
    tcp = ipb.StreamConfig(
        transport_settings=[ipb.TransportConfig(protocol_name="tcp", settings=typed(http_header))]
    )
    assert "request: a missing template" in _refused(tcp)
    twice = wspb.Config(header=[wspb.Header(key="A", value="1"), wspb.Header(key="A", value="2")])
    ws = ipb.StreamConfig(
        protocol_name="websocket",
        transport_settings=[ipb.TransportConfig(protocol_name="websocket", settings=typed(twice))],
    )
    assert "wsSettings.headers" in _refused(ws)


def test_added_handlers_take_what_they_lack_from_the_top_level_transport() -> None:
    # 4.34's global transport settings: a protocol without settings of its own uses them.
    transport = load_config(
        [("t.json", '{"transport": {"wsSettings": {"path": "/global"}}}')], {}
    ).config.transport
    receiver = mpb.ReceiverConfig(
        port_range=npb.PortRange(From=1, To=1),
        stream_settings=ipb.StreamConfig(protocol_name="websocket"),
    )
    handler = cpb.InboundHandlerConfig(
        receiver_settings=typed(receiver), proxy_settings=typed(proxy_settings("vless"))
    )
    ws = inbound_config(handler, transport).stream.ws
    assert ws is not None and ws.normalized_path == "/global"
    ws = inbound_config(handler).stream.ws
    assert ws is not None and ws.normalized_path == "/"


def test_added_dns_outbound_means_what_a_config_file_means() -> None:
    from v2py.app.commander.proto import dns_outbound_pb2 as dnspb

    def converted(cfg: Any) -> Any:
        return outbound_config(cpb.OutboundHandlerConfig(tag="d", proxy_settings=typed(cfg)))

    server = npb.Endpoint(network=npb.TCP, address=npb.IPOrDomain(ip=LOOPBACK), port=5353)
    settings = converted(dnspb.Config(server=server)).settings
    assert (settings.network, settings.address, settings.port) == ("tcp", "127.0.0.1", 5353)
    kept = converted(dnspb.Config()).settings  # no override: each query keeps its own
    assert (kept.network, kept.port) == ("", 0)
    with pytest.raises(ApiError, match="unix"):
        converted(dnspb.Config(server=npb.Endpoint(network=npb.UNIX)))
