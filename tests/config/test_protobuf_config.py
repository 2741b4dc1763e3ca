"""Protobuf configs (``-format pb``): ``v2ray.core.Config`` messages -> 4.34's JSON
format, or one ConfigError line naming the protobuf path."""

from __future__ import annotations

import json
from typing import Any

import pytest
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from v2py.app.commander.proto import app_log_pb2 as logpb
from v2py.app.commander.proto import commander_pb2 as cmdpb
from v2py.app.commander.proto import common_log_pb2 as clogpb
from v2py.app.commander.proto import core_config_pb2 as ccpb
from v2py.app.commander.proto import core_pb2 as cpb
from v2py.app.commander.proto import dispatcher_pb2 as disppb
from v2py.app.commander.proto import dns_app_pb2 as dnsapb
from v2py.app.commander.proto import dokodemo_pb2 as dpb
from v2py.app.commander.proto import freedom_pb2 as fpb
from v2py.app.commander.proto import http_header_pb2 as hhpb
from v2py.app.commander.proto import internet_pb2 as ipb
from v2py.app.commander.proto import kcp_pb2 as kcppb
from v2py.app.commander.proto import net_pb2 as npb
from v2py.app.commander.proto import policy_pb2 as polpb
from v2py.app.commander.proto import port_list_pb2 as plpb
from v2py.app.commander.proto import protocol_pb2 as ppb
from v2py.app.commander.proto import proxyman_apps_pb2 as mapb
from v2py.app.commander.proto import proxyman_pb2 as mpb
from v2py.app.commander.proto import quic_transport_pb2 as quicpb
from v2py.app.commander.proto import router_pb2 as rpb
from v2py.app.commander.proto import socks_pb2 as sockspb
from v2py.app.commander.proto import stats_command_pb2 as scpb
from v2py.app.commander.proto import stats_pb2 as statspb
from v2py.app.commander.proto import tcp_pb2 as tcppb
from v2py.app.commander.proto import typed_message_pb2 as tpb
from v2py.app.commander.proto import vmess_outbound_pb2 as vopb
from v2py.app.commander.proto import vmess_pb2 as vpb
from v2py.app.commander.proto import websocket_pb2 as wspb
from v2py.app.geo_proto import geodata_pb2 as gpb
from v2py.config.load import load_config
from v2py.config.protobuf import config_json
from v2py.errors import ConfigError

UUID = "b831381d-6324-4d53-ad4f-8cda48b30811"
LOOPBACK = bytes([127, 0, 0, 1])


def typed(message: Message) -> tpb.TypedMessage:
    return tpb.TypedMessage(type=message.DESCRIPTOR.full_name, value=message.SerializeToString())


def base_apps() -> list[tpb.TypedMessage]:
    """What every ``v2ctl config`` writes (no ``log`` key: 4.34's default log)."""
    return [
        typed(
            logpb.Config(
                error_log_type=logpb.Console,
                error_log_level=clogpb.Warning,
                access_log_type=logpb.LogType.Value("None"),
            )
        ),
        typed(disppb.Config()),
        typed(mapb.InboundConfig()),
        typed(mapb.OutboundConfig()),
    ]


def socks_inbound(port: int = 1080) -> cpb.InboundHandlerConfig:
    return cpb.InboundHandlerConfig(
        tag="in",
        receiver_settings=typed(
            mpb.ReceiverConfig(
                port_range=npb.PortRange(From=port, To=port), listen=npb.IPOrDomain(ip=LOOPBACK)
            )
        ),
        proxy_settings=typed(sockspb.ServerConfig(udp_enabled=True)),
    )


def freedom(tag: str = "direct") -> cpb.OutboundHandlerConfig:
    return cpb.OutboundHandlerConfig(tag=tag, proxy_settings=typed(fpb.Config()))


def core(*apps: Message, **fields: Any) -> bytes:
    fields.setdefault("inbound", [socks_inbound()])
    fields.setdefault("outbound", [freedom()])
    cfg = ccpb.Config(app=[*base_apps(), *(typed(a) for a in apps)], **fields)
    return cfg.SerializeToString()


def refusal(data: bytes) -> str:
    with pytest.raises(ConfigError) as info:
        config_json(data)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_minimal_config() -> None:
    out = config_json(core())
    assert out["log"] == {"loglevel": "warning", "access": "none", "error": ""}
    assert out["inbounds"] == [
        {
            "tag": "in",
            "port": 1080,
            "listen": "127.0.0.1",
            "protocol": "socks",
            "settings": {
                "auth": "noauth",
                "accounts": [],
                "udp": True,
                "userLevel": 0,
                "timeout": 0,
            },
        }
    ]
    assert out["outbounds"] == [
        {
            "tag": "direct",
            "protocol": "freedom",
            "settings": {"domainStrategy": "AsIs", "userLevel": 0},
        }
    ]
    # and the loader takes it
    load_config([("x.pb", json.dumps(out))], {})


def test_router_rule_fields() -> None:
    rule = rpb.RoutingRule(
        tag="direct",
        domain=[
            gpb.Domain(type=gpb.Domain.Plain, value="kw"),
            gpb.Domain(type=gpb.Domain.Regex, value="^re"),
            gpb.Domain(type=gpb.Domain.Domain, value="sub.example"),
            gpb.Domain(type=gpb.Domain.Full, value="full.example"),
        ],
        geoip=[
            gpb.GeoIP(country_code="CN", cidr=[gpb.CIDR(ip=bytes([1, 2, 0, 0]), prefix=16)]),
            gpb.GeoIP(cidr=[gpb.CIDR(ip=bytes(16), prefix=0)]),
        ],
        port_list=plpb.PortList(range=[npb.PortRange(From=80, To=80), npb.PortRange(From=1, To=9)]),
        networks=[npb.TCP, npb.UDP],
        source_geoip=[gpb.GeoIP(cidr=[gpb.CIDR(ip=LOOPBACK, prefix=8)])],
        source_port_list=plpb.PortList(range=[npb.PortRange(From=53, To=53)]),
        user_email=["a@b"],
        inbound_tag=["in"],
        protocol=["http"],
    )
    balanced = rpb.RoutingRule(balancing_tag="bal", cidr=[gpb.CIDR(ip=LOOPBACK, prefix=32)])
    router = rpb.Config(
        domain_strategy=rpb.Config.IpIfNonMatch,
        rule=[rule, balanced],
        balancing_rule=[rpb.BalancingRule(tag="bal", outbound_selector=["dir"])],
    )
    out = config_json(core(router))
    assert out["routing"] == {
        "domainStrategy": "IPIfNonMatch",
        "rules": [
            {
                "type": "field",
                "outboundTag": "direct",
                "domain": ["keyword:kw", "regexp:^re", "domain:sub.example", "full:full.example"],
                "ip": ["1.2.0.0/16", "::/0"],
                "port": "80,1-9",
                "network": "tcp,udp",
                "source": ["127.0.0.1/8"],
                "sourcePort": "53",
                "user": ["a@b"],
                "inboundTag": ["in"],
                "protocol": ["http"],
            },
            {"type": "field", "balancerTag": "bal", "ip": ["127.0.0.1/32"]},
        ],
        "balancers": [{"tag": "bal", "selector": ["dir"]}],
    }


def test_dns_policy_stats_api() -> None:
    dns = dnsapb.Config(
        name_server=[
            dnsapb.NameServer(
                address=npb.Endpoint(
                    network=npb.UDP, address=npb.IPOrDomain(ip=bytes([8, 8, 8, 8])), port=53
                ),
                prioritized_domain=[
                    dnsapb.NameServer.PriorityDomain(type=dnsapb.Subdomain, domain="example.com")
                ],
                geoip=[gpb.GeoIP(cidr=[gpb.CIDR(ip=bytes([10, 0, 0, 0]), prefix=8)])],
                original_rules=[dnsapb.NameServer.OriginalRule(rule="domain:example.com", size=1)],
            )
        ],
        static_hosts=[
            dnsapb.Config.HostMapping(type=dnsapb.Subdomain, domain="a.local", ip=[LOOPBACK]),
            dnsapb.Config.HostMapping(type=dnsapb.Full, domain="b.com", proxied_domain="c.com"),
        ],
        client_ip=bytes([1, 2, 3, 4]),
        tag="dnsq",
    )
    policy = polpb.Config(
        level={
            0: polpb.Policy(
                timeout=polpb.Policy.Timeout(handshake=polpb.Second(value=5)),
                stats=polpb.Policy.Stats(user_uplink=True),
                buffer=polpb.Policy.Buffer(connection=4096),
            )
        },
        system=polpb.SystemPolicy(stats=polpb.SystemPolicy.Stats(inbound_uplink=True)),
    )
    api = cmdpb.Config(tag="api", service=[typed(scpb.Config())])
    out = config_json(core(dns, policy, statspb.Config(), api))
    assert out["dns"] == {
        "servers": [
            {
                "address": "8.8.8.8",
                "port": 53,
                "domains": ["domain:example.com"],
                "expectIps": ["10.0.0.0/8"],
            }
        ],
        "hosts": {"domain:a.local": "127.0.0.1", "full:b.com": "c.com"},
        "clientIp": "1.2.3.4",
        "tag": "dnsq",
    }
    assert out["policy"]["levels"] == {
        "0": {
            "handshake": 5,
            "statsUserUplink": True,
            "statsUserDownlink": False,
            "bufferSize": 4,
        }
    }
    assert out["policy"]["system"]["statsInboundUplink"] is True
    assert out["stats"] == {}
    assert out["api"] == {"tag": "api", "services": ["StatsService"]}


def test_vmess_ws_outbound_with_mux() -> None:
    account = vpb.Account(id=UUID, security_settings=ppb.SecurityConfig(type=ppb.AES128_GCM))
    server = ppb.ServerEndpoint(
        address=npb.IPOrDomain(domain="example.com"),
        port=443,
        user=[ppb.User(level=1, email="u@x", account=typed(account))],
    )
    stream = ipb.StreamConfig(
        protocol_name="websocket",
        transport_settings=[
            ipb.TransportConfig(protocol_name="tcp", settings=typed(tcppb.Config())),
            ipb.TransportConfig(protocol_name="websocket", settings=typed(wspb.Config(path="/w"))),
        ],
    )
    sender = mpb.SenderConfig(
        stream_settings=stream,
        multiplex_settings=mpb.MultiplexingConfig(enabled=True, concurrency=8),
        via=npb.IPOrDomain(ip=LOOPBACK),
    )
    handler = cpb.OutboundHandlerConfig(
        tag="proxy",
        sender_settings=typed(sender),
        proxy_settings=typed(vopb.Config(Receiver=[server])),
    )
    out = config_json(core(outbound=[handler]))
    assert out["outbounds"] == [
        {
            "tag": "proxy",
            "sendThrough": "127.0.0.1",
            "streamSettings": {
                "network": "ws",
                "wsSettings": {"path": "/w", "acceptProxyProtocol": False},
            },
            "mux": {"enabled": True, "concurrency": 8},
            "protocol": "vmess",
            "settings": {
                "vnext": [
                    {
                        "address": "example.com",
                        "port": 443,
                        "users": [
                            {
                                "id": UUID,
                                "alterId": 0,
                                "level": 1,
                                "email": "u@x",
                                "security": "aes-128-gcm",
                            }
                        ],
                    }
                ]
            },
        }
    ]


def _log(**fields: Any) -> logpb.Config:
    return logpb.Config(**fields)


@pytest.mark.parametrize(
    ("log", "want"),
    [
        (
            _log(error_log_type=logpb.Console, error_log_level=clogpb.Debug),
            {"loglevel": "debug", "access": "none", "error": ""},
        ),
        (
            _log(
                error_log_type=logpb.File,
                error_log_path="/e",
                error_log_level=clogpb.Error,
                access_log_type=logpb.File,
                access_log_path="/a",
            ),
            {"loglevel": "error", "access": "/a", "error": "/e"},
        ),
        (_log(), {"loglevel": "none"}),
        (
            _log(access_log_type=logpb.Console),
            {"loglevel": "warning", "error": "none", "access": ""},
        ),
    ],
)
def test_log(log: logpb.Config, want: dict[str, str]) -> None:
    cfg = ccpb.Config(
        app=[typed(log), *base_apps()[1:]],
        inbound=[socks_inbound()],
        outbound=[freedom()],
    )
    assert config_json(cfg.SerializeToString())["log"] == want


def _rule(**fields: Any) -> rpb.Config:
    return rpb.Config(rule=[rpb.RoutingRule(tag="direct", **fields)])


def _geoip_with_field_3() -> rpb.Config:
    """A rule whose GeoIP has field 3 (Xray's inverse_match, no 4.34 field)."""
    geoip = gpb.GeoIP(country_code="CN").SerializeToString() + b"\x18\x01"
    rule = rpb.RoutingRule(tag="direct").SerializeToString()
    rule += b"\x52" + bytes([len(geoip)]) + geoip  # field 10 (geoip), length-delimited
    return rpb.Config.FromString(b"\x12" + bytes([len(rule)]) + rule)


def _with_stream(stream: ipb.StreamConfig) -> bytes:
    sender = typed(mpb.SenderConfig(stream_settings=stream))
    return core(
        outbound=[
            cpb.OutboundHandlerConfig(sender_settings=sender, proxy_settings=typed(fpb.Config()))
        ]
    )


def _kcp_stream(settings: kcppb.Config) -> ipb.StreamConfig:
    return ipb.StreamConfig(
        protocol_name="mkcp",
        transport_settings=[ipb.TransportConfig(protocol_name="mkcp", settings=typed(settings))],
    )


REFUSED: list[tuple[str, bytes, str]] = [
    (
        "ipv4-mapped cidr",
        core(_rule(geoip=[gpb.GeoIP(cidr=[gpb.CIDR(ip=bytes(10) + b"\xff\xff" + LOOPBACK)])])),
        "app[4] (v2ray.core.app.router.Config).rule[0].geoip[0].cidr[0].ip: ",
    ),
    (
        "unknown field of a geoip",
        core(_geoip_with_field_3()),
        "app[4] (v2ray.core.app.router.Config).rule[0].geoip[0]: field 3 is unknown",
    ),
    (
        "empty port list",
        core(_rule(port_list=plpb.PortList())),
        "app[4] (v2ray.core.app.router.Config).rule[0].port_list: ",
    ),
    (
        "unknown network",
        core(_rule(networks=[npb.UNIX])),
        "app[4] (v2ray.core.app.router.Config).rule[0].networks[0]: ",
    ),
    (
        "no target",
        core(rpb.Config(rule=[rpb.RoutingRule(inbound_tag=["x"])])),
        "app[4] (v2ray.core.app.router.Config).rule[0]: ",
    ),
    (
        "two ips for a host",
        core(
            dnsapb.Config(
                static_hosts=[dnsapb.Config.HostMapping(domain="a", ip=[LOOPBACK, LOOPBACK])]
            )
        ),
        "app[4] (v2ray.core.app.dns.Config).static_hosts[0].ip: ",
    ),
    (
        "hosts out of order",
        core(
            dnsapb.Config(
                static_hosts=[
                    dnsapb.Config.HostMapping(type=dnsapb.Keyword, domain="b", ip=[LOOPBACK]),
                    dnsapb.Config.HostMapping(type=dnsapb.Keyword, domain="a", ip=[LOOPBACK]),
                ]
            )
        ),
        "app[4] (v2ray.core.app.dns.Config).static_hosts[1]: ",
    ),
    (
        "unknown app",
        core(fpb.Config()),
        "app[4]: app 'v2ray.core.proxy.freedom.Config' is not supported by v2py",
    ),
    ("extension", core(extension=[typed(statspb.Config())]), "extension[0]: "),
    (
        "buffer not in KiB",
        core(polpb.Config(level={1: polpb.Policy(buffer=polpb.Policy.Buffer(connection=100))})),
        "app[4] (v2ray.core.app.policy.Config).level[1].buffer.connection: ",
    ),
    (
        "sockopt",
        core(
            inbound=[
                cpb.InboundHandlerConfig(
                    receiver_settings=typed(
                        mpb.ReceiverConfig(
                            port_range=npb.PortRange(From=1, To=1),
                            stream_settings=ipb.StreamConfig(
                                socket_settings=ipb.SocketConfig(mark=1, bind_port=1)
                            ),
                        )
                    ),
                    proxy_settings=typed(sockspb.ServerConfig()),
                )
            ]
        ),
        "inbound[0].receiver_settings (v2ray.core.app.proxyman.ReceiverConfig)"
        ".stream_settings.socket_settings.bind_port: ",
    ),
    (
        "dokodemo followRedirect without the receiver's original destination",
        core(
            inbound=[
                cpb.InboundHandlerConfig(
                    receiver_settings=typed(
                        mpb.ReceiverConfig(port_range=npb.PortRange(From=1, To=1))
                    ),
                    proxy_settings=typed(
                        dpb.Config(port=1, networks=[npb.TCP], follow_redirect=True)
                    ),
                )
            ]
        ),
        "inbound[0].proxy_settings.follow_redirect: ",
    ),
    (
        "receiver's original destination without dokodemo followRedirect",
        core(
            inbound=[
                cpb.InboundHandlerConfig(
                    receiver_settings=typed(
                        mpb.ReceiverConfig(
                            port_range=npb.PortRange(From=1, To=1),
                            receive_original_destination=True,
                        )
                    ),
                    proxy_settings=typed(dpb.Config(port=1, networks=[npb.TCP])),
                )
            ]
        ),
        "inbound[0].receiver_settings (v2ray.core.app.proxyman.ReceiverConfig)"
        ".receive_original_destination: ",
    ),
    (
        "unknown transport",
        _with_stream(ipb.StreamConfig(protocol_name="grpc")),
        "outbound[0].sender_settings (v2ray.core.app.proxyman.SenderConfig)"
        ".stream_settings.protocol_name: transport 'grpc'",
    ),
    (
        "kcp buffer not in MiB",
        _with_stream(_kcp_stream(kcppb.Config(read_buffer=kcppb.ReadBuffer(size=1000)))),
        "outbound[0].sender_settings (v2ray.core.app.proxyman.SenderConfig).stream_settings"
        ".transport_settings[0].settings (v2ray.core.transport.internet.kcp.Config)"
        ".read_buffer.size: ",
    ),
    (
        "kcp header with fields",
        _with_stream(
            _kcp_stream(
                kcppb.Config(
                    header_config=tpb.TypedMessage(
                        type="v2ray.core.transport.internet.headers.srtp.Config", value=b"\x08\x01"
                    )
                )
            )
        ),
        "outbound[0].sender_settings (v2ray.core.app.proxyman.SenderConfig).stream_settings"
        ".transport_settings[0].settings (v2ray.core.transport.internet.kcp.Config)"
        ".header_config.value: ",
    ),
    (
        "http header names out of order",
        _with_stream(
            ipb.StreamConfig(
                protocol_name="tcp",
                transport_settings=[
                    ipb.TransportConfig(
                        protocol_name="tcp",
                        settings=typed(
                            tcppb.Config(
                                header_settings=typed(
                                    hhpb.Config(
                                        request=hhpb.RequestConfig(
                                            uri=["/"],
                                            header=[
                                                hhpb.Header(name="B", value=["1"]),
                                                hhpb.Header(name="A", value=["2"]),
                                            ],
                                        ),
                                        response=hhpb.ResponseConfig(),
                                    )
                                )
                            )
                        ),
                    )
                ],
            )
        ),
        "outbound[0].sender_settings (v2ray.core.app.proxyman.SenderConfig).stream_settings"
        ".transport_settings[0].settings (v2ray.core.transport.internet.tcp.Config)"
        ".header_settings (v2ray.core.transport.internet.headers.http.Config).request.header: ",
    ),
    (
        "quic auto security",
        _with_stream(
            ipb.StreamConfig(
                protocol_name="quic",
                transport_settings=[
                    ipb.TransportConfig(
                        protocol_name="quic",
                        settings=typed(quicpb.Config(security=ppb.SecurityConfig(type=ppb.AUTO))),
                    )
                ],
            )
        ),
        "outbound[0].sender_settings (v2ray.core.app.proxyman.SenderConfig).stream_settings"
        ".transport_settings[0].settings (v2ray.core.transport.internet.quic.Config)"
        ".security: ",
    ),
    (
        "no dispatcher",
        ccpb.Config(app=base_apps()[:1]).SerializeToString(),
        "app: no v2ray.core.app.dispatcher.Config",
    ),
    ("not protobuf", b"\xff\xff\xff", "not a protobuf v2ray.core.Config"),
]


@pytest.mark.parametrize(("name", "data", "prefix"), REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_with_one_line(name: str, data: bytes, prefix: str) -> None:
    assert refusal(data).startswith(prefix)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_give_a_config_or_a_config_error(data: bytes) -> None:
    try:
        out = config_json(data)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(out, dict)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_configs_give_a_config_or_a_config_error(data: st.DataObject) -> None:
    valid = bytearray(core(_rule(domain=[gpb.Domain(value="x")]), dnsapb.Config(tag="t")))
    index = data.draw(st.integers(0, len(valid) - 1))
    valid[index] = data.draw(st.integers(0, 255))
    try:
        config_json(bytes(valid))
    except ConfigError as exc:
        assert "\n" not in str(exc)
