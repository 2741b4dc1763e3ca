"""AddInbound through the API with Shadowsocks, VLESS and Trojan inbounds (plain TCP, as
panels add them): the same requests to v2ray 4.34 and to v2py give inbounds that serve
the same clients; and AddOutbound of each becomes the outbound a config file makes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
import pytest

from tests.support.forward import echo_server
from tests.support.socks import socks5_connect
from tests.support.v2py import run_side, run_v2py
from tests.support.v2ray import free_ports, require_v2ray
from v2py.app.commander.convert import outbound_config
from v2py.app.commander.proto import core_pb2 as cpb
from v2py.app.commander.proto import handler_command_pb2 as hpb
from v2py.app.commander.proto import net_pb2 as npb
from v2py.app.commander.proto import protocol_pb2 as ppb
from v2py.app.commander.proto import proxyman_pb2 as mpb
from v2py.app.commander.proto import shadowsocks_pb2 as sspb
from v2py.app.commander.proto import trojan_pb2 as tjpb
from v2py.app.commander.proto import vless_inbound_pb2 as vlipb
from v2py.app.commander.proto import vless_outbound_pb2 as vlopb
from v2py.app.commander.proto import vless_pb2 as vlpb
from v2py.app.commander.services import typed

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


def add_inbound(protocol: str, port: int) -> bytes:
    receiver = mpb.ReceiverConfig(
        port_range=npb.PortRange(From=port, To=port), listen=npb.IPOrDomain(ip=LOOPBACK)
    )
    return hpb.AddInboundRequest(
        inbound=cpb.InboundHandlerConfig(
            tag=f"added-{protocol}",
            receiver_settings=typed(receiver),
            proxy_settings=typed(proxy_settings(protocol)),
        )
    ).SerializeToString()


def client_outbound(protocol: str, port: int) -> dict[str, Any]:
    server: dict[str, Any] = {"address": "127.0.0.1", "port": port}
    if protocol == "shadowsocks":
        settings = {"servers": [{**server, "method": "aes-128-gcm", "password": PASSWORD}]}
    elif protocol == "vless":
        settings = {"vnext": [{**server, "users": [{"id": ID, "encryption": "none"}]}]}
    else:
        settings = {"servers": [{**server, "password": PASSWORD}]}
    return {"protocol": protocol, "settings": settings}


@pytest.mark.parametrize("protocol", ["shadowsocks", "vless", "trojan"])
async def test_added_inbounds_serve_as_4_34s(protocol: str) -> None:
    require_v2ray()
    async with echo_server() as echo:
        for kind in ("v2ray", "v2py"):
            api_port, proxy_port, socks_port = free_ports(3)
            client = {
                "inbounds": [{"listen": "127.0.0.1", "port": socks_port, "protocol": "socks"}],
                "outbounds": [client_outbound(protocol, proxy_port)],
            }
            async with (
                run_side(kind, api_config(api_port), api_port),
                grpc.aio.insecure_channel(f"127.0.0.1:{api_port}") as channel,
                run_v2py(client),
                asyncio.timeout(30),
            ):
                call = channel.unary_unary(ADD_INBOUND)
                await call(add_inbound(protocol, proxy_port))
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
