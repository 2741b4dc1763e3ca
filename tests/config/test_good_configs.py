"""Good configs: the user's seed files, VMess reference objects, legacy layout, conventions."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from tests.config.cases import (
    CONFIGS_DIR,
    UUID_A,
    UUID_B,
    config,
    load,
    seed_text,
    socks_in,
    vmess_in,
    vmess_out,
    with_,
)
from v2py.config import (
    DEFAULT_CONFIG_JSON,
    BlackholeSettings,
    Config,
    DokodemoSettings,
    FreedomSettings,
    HttpInboundSettings,
    InboundConfig,
    KcpConfig,
    LevelPolicy,
    PortRange,
    SocksInboundSettings,
    VmessInboundSettings,
    VmessOutboundSettings,
    load_config,
)

SEED_FILES = sorted(p.name for p in CONFIGS_DIR.glob("dynamic-port-*.json"))


def seed_object(name: str) -> Any:
    """A JSON object printed in seeds/vmess.md (plain JSON, no comments)."""
    return json.loads(seed_text(name))


# --------------------------------------------------------------------------
# the user's seed configs


def test_all_four_seed_configs_are_present() -> None:
    assert SEED_FILES == [
        "dynamic-port-kcp-client.json",
        "dynamic-port-kcp-server.json",
        "dynamic-port-tcp-client.json",
        "dynamic-port-tcp-server.json",
    ]


@pytest.mark.parametrize("name", SEED_FILES)
def test_seed_config_loads_unchanged_without_warnings(name: str) -> None:
    loaded = load(seed_text(name), name=name)
    assert loaded.warnings == ()
    assert isinstance(loaded.config, Config)


@pytest.mark.parametrize("network", ["tcp", "kcp"])
def test_seed_dynamic_port_server(network: str) -> None:
    cfg = load(seed_text(f"dynamic-port-{network}-server.json")).config
    main, dyn = cfg.inbounds
    assert (main.protocol, main.tag, main.port, main.listen) == (
        "vmess",
        "",
        PortRange(37192, 37192),
        "0.0.0.0",
    )
    assert isinstance(main.settings, VmessInboundSettings)
    assert main.settings.clients[0].id == UUID_A
    assert main.settings.clients[0].alter_id == 64
    assert main.settings.detour_to == "dynamicPort"
    assert main.allocate is None
    assert (dyn.tag, dyn.port.first, dyn.port.last, dyn.port.is_range) == (
        "dynamicPort",
        10000,
        20000,
        True,
    )
    assert dyn.allocate is not None
    assert (dyn.allocate.strategy, dyn.allocate.concurrency, dyn.allocate.refresh) == (
        "random",
        2,
        3,
    )
    assert isinstance(dyn.settings, VmessInboundSettings)
    assert dyn.settings.clients == ()
    assert (dyn.path, main.path) == ("inbounds[1]", "inbounds[0]")
    for inbound in cfg.inbounds:
        assert inbound.stream.network == network
        assert (inbound.stream.kcp is not None) == (network == "kcp")
    if network == "kcp":
        assert main.settings.clients[0].level == 1
        assert (dyn.settings.default.level, dyn.settings.default.alter_id) == (1, 32)
        assert main.stream.kcp == KcpConfig()
    else:
        assert dyn.settings.default.alter_id == 64
        assert dyn.settings.default.level == 0
    (out,) = cfg.outbounds
    assert out.protocol == "freedom"
    assert isinstance(out.settings, FreedomSettings)
    assert out.settings.domain_strategy == "AsIs"


@pytest.mark.parametrize("network", ["tcp", "kcp"])
def test_seed_dynamic_port_client(network: str) -> None:
    cfg = load(seed_text(f"dynamic-port-{network}-client.json")).config
    (inbound,) = cfg.inbounds
    assert inbound.protocol == "socks"
    assert inbound.port == PortRange(1080, 1080)
    assert inbound.sniffing.enabled
    assert inbound.sniffing.dest_override == ("http", "tls")
    assert isinstance(inbound.settings, SocksInboundSettings)
    assert inbound.settings.auth == "noauth"
    assert inbound.stream.network == "tcp"
    (out,) = cfg.outbounds
    assert isinstance(out.settings, VmessOutboundSettings)
    server = out.settings.vnext[0]
    assert (server.address, server.port) == ("1.2.3.4", 37192)
    user = server.users[0]
    assert (user.id, user.alter_id, user.security, user.level) == (UUID_A, 64, "auto", 0)
    assert out.stream.network == network


# --------------------------------------------------------------------------
# the objects printed in seeds/vmess.md


def test_vmess_md_outbound_settings_object() -> None:
    data = config(
        outbounds=[{"protocol": "vmess", "settings": seed_object("vmess-outbound-settings.json")}]
    )
    out = load(data).config.outbounds[0]
    assert isinstance(out.settings, VmessOutboundSettings)
    user = out.settings.vnext[0].users[0]
    assert (user.id, user.alter_id, user.security, user.level) == (UUID_B, 4, "auto", 0)


def test_vmess_md_server_and_user_objects() -> None:
    server = seed_object("vmess-server-object.json")
    assert server["users"] == []  # as printed; a usable server needs a user
    server["users"] = [seed_object("vmess-user-object.json")]
    data = config(outbounds=[{"protocol": "vmess", "settings": {"vnext": [server]}}])
    out = load(data).config.outbounds[0]
    assert isinstance(out.settings, VmessOutboundSettings)
    assert out.settings.vnext[0].users[0].alter_id == 4


def test_vmess_md_inbound_settings_object() -> None:
    settings = seed_object("vmess-inbound-settings.json")
    target = vmess_in(
        tag="tag_to_detour", port="20000-20099", settings={}, allocate={"strategy": "random"}
    )
    data = config(vmess_in(settings=settings), target)
    main = load(data).config.inbounds[0]
    assert isinstance(main.settings, VmessInboundSettings)
    client = main.settings.clients[0]
    assert (client.id, client.level, client.alter_id, client.email) == (
        UUID_B,
        0,
        4,
        "love@v2ray.com",
    )
    assert (main.settings.default.level, main.settings.default.alter_id) == (0, 4)
    assert main.settings.detour_to == "tag_to_detour"
    assert main.settings.disable_insecure_encryption is False


def test_vmess_md_client_detour_default_objects() -> None:
    settings = {
        "clients": [seed_object("vmess-client-object.json")],
        "detour": seed_object("vmess-detour-object.json"),
        "default": seed_object("vmess-default-object.json"),
    }
    data = config(vmess_in(settings=settings), vmess_in(tag="tag_to_detour", port=2))
    settings_model = load(data).config.inbounds[0].settings
    assert isinstance(settings_model, VmessInboundSettings)
    assert settings_model.clients[0].email == "love@v2ray.com"
    assert settings_model.default.alter_id == 4


def test_vmess_default_alter_id_is_64_when_missing() -> None:
    settings = load(config(vmess_in(settings={}))).config.inbounds[0].settings
    assert isinstance(settings, VmessInboundSettings)
    assert (settings.default.level, settings.default.alter_id) == (0, 64)


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("D17A1AF7-EFA5-42CA-B7E9-6A35282D737F", UUID_A),
        ("d17a1af7efa542cab7e96a35282d737f", UUID_A),
        ("d17a1af7-efa542ca-b7e9-6a35282d737f", UUID_A),
    ],
)
def test_uuid_forms(given: str, canonical: str) -> None:
    data = with_(config(vmess_in()), "inbounds.0.settings.clients.0.id", given)
    settings = load(data).config.inbounds[0].settings
    assert isinstance(settings, VmessInboundSettings)
    assert settings.clients[0].id == canonical


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("AES-128-GCM", "aes-128-gcm"),
        ("Chacha20-Poly1305", "chacha20-poly1305"),
        ("none", "none"),
        ("aes-128-cfb", "aes-128-cfb"),
        ("Auto", "auto"),
    ],
)
def test_vmess_security_values(given: str, canonical: str) -> None:
    out = load(config(outbounds=[vmess_out(security=given, testsEnabled="VMessAEAD")]))
    settings = out.config.outbounds[0].settings
    assert isinstance(settings, VmessOutboundSettings)
    assert settings.vnext[0].users[0].security == canonical
    assert settings.vnext[0].users[0].tests_enabled == "VMessAEAD"


# --------------------------------------------------------------------------
# legacy layout (docs/spec/dynamic-port.md section 1)

LEGACY = """
{
  "port": 37192,
  "log": {"loglevel": "info"},
  "inbound": {
    "protocol": "vmess",
    "settings": {
      "clients": [{"id": "UUID_A", "alterId": 0, "email": "a@x"}],
      "features": {"detour": {"to": "dyn"}}
    }
  },
  "inboundDetour": [
    {
      "protocol": "vmess", "port": "10000-10010", "tag": "dyn",
      "settings": {"default": {"alterId": 0, "level": 0}},
      "allocate": {"strategy": "random", "refresh": 5, "concurrency": 3}
    }
  ],
  "inbounds": [{"protocol": "socks", "port": 1080, "tag": "s"}],
  "outbound": {"protocol": "freedom", "tag": "direct"},
  "outboundDetour": [{"protocol": "blackhole", "tag": "block"}],
  "outbounds": [{"protocol": "freedom", "tag": "last"}]
}
""".replace("UUID_A", UUID_A)


def test_legacy_layout_order_port_and_detour() -> None:
    cfg = load(LEGACY).config
    assert [i.path for i in cfg.inbounds] == ["inbound", "inboundDetour[0]", "inbounds[0]"]
    main = cfg.inbounds[0]
    assert main.port == PortRange(37192, 37192)
    assert isinstance(main.settings, VmessInboundSettings)
    assert main.settings.detour_to == "dyn"
    assert main.settings.detour_key == "features.detour.to"
    assert [o.tag for o in cfg.outbounds] == ["direct", "block", "last"]
    assert [o.path for o in cfg.outbounds] == ["outbound", "outboundDetour[0]", "outbounds[0]"]
    assert cfg.log.loglevel == "info"
    assert cfg.inbound("dyn") is cfg.inbounds[1]
    assert cfg.outbound("block") is cfg.outbounds[1]
    assert cfg.inbound("") is None


def test_legacy_port_does_not_override_an_explicit_port() -> None:
    data = {"port": 5, "inbound": socks_in(port=6)}
    assert load(data).config.inbounds[0].port == PortRange(6, 6)


def test_detour_wins_over_features_detour() -> None:
    settings = {"clients": [], "detour": {"to": "a"}, "features": {"detour": {"to": "missing"}}}
    cfg = load(config(vmess_in(settings=settings), vmess_in(tag="a", port=2))).config
    assert isinstance(cfg.inbounds[0].settings, VmessInboundSettings)
    assert cfg.inbounds[0].settings.detour_to == "a"


# --------------------------------------------------------------------------
# JSON conventions


def test_keys_are_case_insensitive_and_protocol_too() -> None:
    text = """
    {"Inbounds": [{"PORT": "1080", "Protocol": "VMess", "LISTEN": "127.0.0.1",
                   "Settings": {"CLIENTS": [{"ID": "UUID_A", "AlterID": 4, "Level": 2}]},
                   "StreamSettings": {"Network": "mKCP", "KcpSettings": {"MTU": 1400,
                                      "Header": {"Type": "WeChat-Video"}}}}],
     "OUTBOUNDS": [{"protocol": "FREEDOM", "settings": {"DomainStrategy": "useipv4"}}],
     "Log": {"LogLevel": "DEBUG"}}
    """.replace("UUID_A", UUID_A)
    loaded = load(text)
    assert loaded.warnings == ()
    cfg = loaded.config
    inbound = cfg.inbounds[0]
    assert (inbound.protocol, inbound.listen, inbound.port) == (
        "vmess",
        "127.0.0.1",
        PortRange(1080, 1080),
    )
    assert isinstance(inbound.settings, VmessInboundSettings)
    assert (inbound.settings.clients[0].alter_id, inbound.settings.clients[0].level) == (4, 2)
    assert inbound.stream.network == "kcp"
    assert inbound.stream.kcp is not None
    assert (inbound.stream.kcp.mtu, inbound.stream.kcp.header_type) == (1400, "wechat-video")
    assert cfg.outbounds[0].protocol == "freedom"
    assert isinstance(cfg.outbounds[0].settings, FreedomSettings)
    assert cfg.outbounds[0].settings.domain_strategy == "UseIPv4"
    assert cfg.log.loglevel == "debug"


def test_later_spelling_of_a_key_wins() -> None:
    text = '{"inbounds": [{"protocol": "socks", "port": 1, "Port": 2}]}'
    assert load(text).config.inbounds[0].port == PortRange(2, 2)


def test_null_means_absent() -> None:
    data = config(socks_in(settings=None, tag=None, streamSettings=None), log=None)
    cfg = load(data).config
    assert cfg.inbounds[0].tag == ""
    assert cfg.log.loglevel == "warning"


COMMENTED = """# a hash comment on the first line
{
  // line comment
  "inbounds": [ /* inline */ {
    "port": 1080, # trailing hash comment
    "protocol": "socks",
    /* a block comment
       spanning lines */
    "settings": {"auth": "noauth", "accounts": [{"user": "u//not-a-comment",
                 "pass": "p#/*not*/"}]},
    "tag": 'in' // single-quoted strings are not JSON
  }]
}
"""


def test_comments_of_all_three_kinds() -> None:
    # Single quotes protect comment markers but are not JSON, so swap them first.
    cfg = load(COMMENTED.replace("'in'", '"in"')).config
    settings = cfg.inbounds[0].settings
    assert isinstance(settings, SocksInboundSettings)
    assert settings.accounts[0].user == "u//not-a-comment"
    assert settings.accounts[0].password == "p#/*not*/"
    assert cfg.inbounds[0].tag == "in"


@pytest.mark.parametrize(
    ("value", "env", "expected"),
    [
        ("env:PORT", {"PORT": "2000"}, PortRange(2000, 2000)),
        ("env:PORT", {"PORT": "2000-2010"}, PortRange(2000, 2010)),
        ("env:PORT", {"PORT": " 2000 - 2010 "}, PortRange(2000, 2010)),
        ("3000-3000", {}, PortRange(3000, 3000)),
        (" 4000 ", {}, PortRange(4000, 4000)),
        (0, {}, PortRange(0, 0)),
        (65535, {}, PortRange(65535, 65535)),
    ],
)
def test_port_forms(value: object, env: dict[str, str], expected: PortRange) -> None:
    port = load(with_(config(), "inbounds.0.port", value), env).config.inbounds[0].port
    assert port == expected
    assert port.is_range == (expected.first != expected.last)
    assert port.size == expected.last - expected.first + 1
    assert expected.first in port


def test_port_range_str() -> None:
    assert str(PortRange(1, 2)) == "1-2"
    assert str(PortRange(7, 7)) == "7"


# --------------------------------------------------------------------------
# warnings


def test_unknown_keys_warn_with_their_path() -> None:
    data = config(
        socks_in(
            foo=1,
            settings={"auth": "noauth", "bar": True},
            streamSettings={"httpSettings": {"method": "PUT"}, "kcpSettings": {"zzz": 1}},
        ),
        outbounds=[
            {
                "protocol": "freedom",
                "settings": {"domainStrategy": "AsIs", "nope": 0},
            }
        ],
        fakeDns={},
    )
    warnings = load(data).warnings
    assert "inbounds[0].foo: unknown key, ignored" in warnings
    assert "inbounds[0].settings.bar: unknown key, ignored" in warnings
    assert (
        "inbounds[0].streamSettings.httpSettings.method: not in V2Ray 4.34 (ignored there too), "
        "ignored" in warnings
    )
    assert "inbounds[0].streamSettings.kcpSettings.zzz: unknown key, ignored" in warnings
    assert "outbounds[0].settings.nope: unknown key, ignored" in warnings
    assert "fakeDns: unknown key, ignored" in warnings
    assert len(warnings) == 6


def test_unknown_key_warning_keeps_the_written_spelling() -> None:
    warnings = load('{"inbounds": [{"Protocol": "socks", "port": 1, "FooBar": 1}]}').warnings
    assert warnings == ("inbounds[0].FooBar: unknown key, ignored",)


def test_warnings_of_several_files_name_the_file() -> None:
    a = json.dumps(config(extra=1))
    b = json.dumps({"log": {"what": 2}})
    warnings = load_config([("a.json", a), ("b.json", b)], {}).warnings
    assert warnings == (
        "a.json: extra: unknown key, ignored",
        "b.json: log.what: unknown key, ignored",
    )


# --------------------------------------------------------------------------
# log, policy, transport, sniffing, allocate


def test_defaults() -> None:
    cfg = load(config()).config
    # no "log" object: access log off, error log on the console at warning (4.34)
    assert (cfg.log.loglevel, cfg.log.access, cfg.log.error) == ("warning", "none", "")
    level = cfg.policy.level(0)
    assert (
        level.handshake,
        level.conn_idle,
        level.uplink_only,
        level.downlink_only,
        level.buffer_size,
    ) == (60, 300, 1, 1, 512)
    assert not level.stats_user_uplink
    assert not cfg.policy.system.stats_inbound_uplink
    inbound = cfg.inbounds[0]
    assert (inbound.listen, inbound.tag, inbound.allocate) == ("0.0.0.0", "", None)
    assert (inbound.stream.network, inbound.stream.security, inbound.stream.kcp) == (
        "tcp",
        "none",
        None,
    )
    assert inbound.stream.tcp is not None
    assert inbound.sniffing.enabled is False
    assert inbound.sniffing.dest_override == ()


def test_policy_levels() -> None:
    data = config(
        policy={
            "levels": {
                "0": {"handshake": 4, "connIdle": 100, "bufferSize": 0},
                "1": {"statsUserUplink": True},
            },
            "system": {"statsInboundUplink": True, "statsOutboundDownlink": True},
        }
    )
    policy = load(data).config.policy
    assert policy.level(0) == LevelPolicy(handshake=4, conn_idle=100, buffer_size=0)
    assert policy.level(0).uplink_only == 1
    assert policy.level(1).stats_user_uplink
    assert policy.level(1).handshake == 60
    assert policy.level(7) == LevelPolicy()
    assert policy.system.stats_inbound_uplink and policy.system.stats_outbound_downlink


def test_log_files() -> None:
    log = load(config(log={"loglevel": "None", "access": "/tmp/a.log", "error": ""})).config.log
    assert (log.loglevel, log.access, log.error) == ("none", "/tmp/a.log", "")


def test_transport_supplies_missing_kcp_settings() -> None:
    data = config(
        socks_in(streamSettings={"network": "kcp"}),
        socks_in(port=2, streamSettings={"network": "kcp", "kcpSettings": {"tti": 20}}),
        outbounds=[{"protocol": "freedom", "streamSettings": {"network": "mkcp"}}],
        transport={
            "kcpSettings": {
                "mtu": 1200,
                "seed": "s3cret",
                "header": {"type": "SRTP"},
                "uplinkCapacity": 0,
                "congestion": True,
            }
        },
    )
    cfg = load(data).config
    first, second = (i.stream.kcp for i in cfg.inbounds)
    assert first is not None and second is not None
    assert (first.mtu, first.seed, first.header_type, first.uplink_capacity, first.congestion) == (
        1200,
        "s3cret",
        "srtp",
        0,
        True,
    )
    assert (second.mtu, second.tti, second.seed) == (1350, 20, None)
    assert cfg.outbounds[0].stream.kcp == first
    assert cfg.inbounds[0].stream.tcp is None


def test_kcp_defaults() -> None:
    kcp = KcpConfig()
    assert (
        kcp.mtu,
        kcp.tti,
        kcp.uplink_capacity,
        kcp.downlink_capacity,
        kcp.congestion,
        kcp.read_buffer_size,
        kcp.write_buffer_size,
        kcp.header_type,
        kcp.seed,
    ) == (1350, 50, 5, 20, False, 2, 2, "none", None)


@pytest.mark.parametrize("header", ["none", "srtp", "utp", "wechat-video", "dtls", "wireguard"])
def test_kcp_header_types(header: str) -> None:
    data = config(
        socks_in(
            streamSettings={"network": "kcp", "kcpSettings": {"header": {"type": header.upper()}}}
        )
    )
    kcp = load(data).config.inbounds[0].stream.kcp
    assert kcp is not None and kcp.header_type == header


def test_kcp_settings_on_a_tcp_stream_are_checked_then_dropped() -> None:
    data = config(socks_in(streamSettings={"network": "tcp", "kcpSettings": {"mtu": 600}}))
    assert load(data).config.inbounds[0].stream.kcp is None


@pytest.mark.parametrize(
    ("sniffing", "expected"),
    [
        ({"enabled": True, "destOverride": "http, https"}, ("http", "tls")),
        ({"enabled": True, "destOverride": ["SSL", "tls", "HTTP"]}, ("tls", "http")),
        ({"enabled": False}, ()),
    ],
)
def test_sniffing_dest_override(sniffing: dict[str, Any], expected: tuple[str, ...]) -> None:
    inbound = load(config(socks_in(sniffing=sniffing))).config.inbounds[0]
    assert inbound.sniffing.dest_override == expected
    assert inbound.sniffing.enabled == sniffing["enabled"]


def test_legacy_domain_override_enables_sniffing() -> None:
    inbound = load(config(socks_in(domainOverride=["tls", "http"]))).config.inbounds[0]
    assert inbound.sniffing.enabled
    assert inbound.sniffing.dest_override == ("tls", "http")


def test_allocate_always_and_defaults() -> None:
    data = config(vmess_in(port="100-101", allocate={"strategy": "Always"}))
    allocate = load(data).config.inbounds[0].allocate
    assert allocate is not None
    assert (allocate.strategy, allocate.refresh, allocate.concurrency) == ("always", 5, 3)


def test_allocate_random_at_the_one_third_limit() -> None:
    data = config(vmess_in(port="100-108", allocate={"strategy": "RANDOM", "concurrency": 3}))
    allocate = load(data).config.inbounds[0].allocate
    assert allocate is not None and allocate.strategy == "random"


# --------------------------------------------------------------------------
# protocol settings


def test_other_inbound_settings() -> None:
    data = config(
        socks_in(
            settings={
                "auth": "password",
                "accounts": [{"user": "u", "pass": "p"}],
                "udp": True,
                "ip": "127.0.0.1",
                "userLevel": 1,
                "timeout": 10,
            }
        ),
        {
            "port": 8080,
            "protocol": "http",
            "settings": {
                "accounts": [{"user": "a", "pass": "b"}],
                "allowTransparent": True,
                "timeout": 0,
            },
        },
        {
            "port": 5353,
            "protocol": "dokodemo-door",
            "listen": "::1",
            "settings": {
                "address": "8.8.8.8",
                "port": 53,
                "network": "tcp,udp",
                "followRedirect": False,
            },
        },
        {"port": 5354, "protocol": "dokodemo-door", "listen": "localhost"},
    )
    socks, http, doko, doko2 = load(data).config.inbounds
    assert isinstance(socks.settings, SocksInboundSettings)
    assert (
        socks.settings.auth,
        socks.settings.udp,
        socks.settings.ip,
        socks.settings.user_level,
        socks.settings.timeout,
    ) == ("password", True, "127.0.0.1", 1, 10)
    assert socks.settings.accounts[0].password == "p"
    assert isinstance(http.settings, HttpInboundSettings)
    assert http.settings.allow_transparent
    assert http.settings.accounts[0].user == "a"
    assert isinstance(doko.settings, DokodemoSettings)
    assert (doko.listen, doko.settings.address, doko.settings.port, doko.settings.network) == (
        "::1",
        "8.8.8.8",
        53,
        ("tcp", "udp"),
    )
    assert isinstance(doko2.settings, DokodemoSettings)
    assert (doko2.listen, doko2.settings.network) == ("127.0.0.1", ("tcp",))


def test_other_outbound_settings() -> None:
    data = config(
        outbounds=[
            {
                "protocol": "freedom",
                "sendThrough": "0.0.0.0",
                "settings": {"domainStrategy": "use_ip6", "redirect": "127.0.0.1:53", "timeout": 5},
                "mux": {"enabled": False, "concurrency": 8},
            },
            {"protocol": "freedom", "settings": {"redirect": ":8080"}},
            {"protocol": "freedom", "settings": {"redirect": "[::1]:80"}},
            {"protocol": "blackhole", "settings": {"response": {"type": "http"}}},
            {"protocol": "blackhole"},
        ]
    )
    free, free2, free3, hole, hole2 = load(data).config.outbounds
    assert isinstance(free.settings, FreedomSettings)
    assert (free.send_through, free.settings.domain_strategy, free.settings.timeout) == (
        "0.0.0.0",
        "UseIPv6",
        5,
    )
    assert free.settings.redirect_target == ("127.0.0.1", 53)
    assert free.mux is not None and not free.mux.enabled
    assert isinstance(free2.settings, FreedomSettings)
    assert free2.settings.redirect_target == ("", 8080)
    assert isinstance(free3.settings, FreedomSettings)
    assert free3.settings.redirect_target == ("::1", 80)
    assert isinstance(hole.settings, BlackholeSettings)
    assert hole.settings.response.type == "http"
    assert isinstance(hole2.settings, BlackholeSettings)
    assert hole2.settings.response.type == "none"
    assert free.stream.network == "tcp"


# --------------------------------------------------------------------------
# multiple files (4.34 Config.Override)


def _names(items: tuple[Any, ...]) -> list[str]:
    return [i.tag for i in items]


def test_merge_overrides_top_level_objects() -> None:
    a = json.dumps(config(log={"loglevel": "debug"}, policy={"levels": {"0": {"handshake": 9}}}))
    b = json.dumps({"log": {"loglevel": "error"}})
    cfg = load_config([("a.json", a), ("b.json", b)], {}).config
    assert cfg.log.loglevel == "error"
    assert cfg.policy.level(0).handshake == 9


def test_merge_single_inbound_replaces_same_tag_or_appends() -> None:
    a = json.dumps(config(socks_in(tag="x"), socks_in(tag="y", port=2)))
    replace = json.dumps({"inbounds": [socks_in(tag="x", port=9)]})
    append = json.dumps({"inbounds": [socks_in(tag="z", port=3)]})
    cfg = load_config([("a.json", a), ("b.json", replace), ("c.json", append)], {}).config
    assert _names(cfg.inbounds) == ["x", "y", "z"]
    assert cfg.inbounds[0].port == PortRange(9, 9)
    assert cfg.inbounds[0].path == "b.json: inbounds[0]"
    assert cfg.inbounds[2].path == "c.json: inbounds[0]"


def test_merge_several_inbounds_replace_the_list() -> None:
    a = json.dumps(config(socks_in(tag="x")))
    b = json.dumps({"inbounds": [socks_in(tag="p", port=5), socks_in(tag="q", port=6)]})
    cfg = load_config([("a.json", a), ("b.json", b)], {}).config
    assert _names(cfg.inbounds) == ["p", "q"]


def test_merge_single_outbound_prepends_unless_tail() -> None:
    a = json.dumps(config(outbounds=[{"protocol": "freedom", "tag": "direct"}]))
    head = json.dumps({"outbounds": [{"protocol": "blackhole", "tag": "block"}]})
    tail = json.dumps({"outbounds": [{"protocol": "freedom", "tag": "last"}]})
    cfg = load_config([("a.json", a), ("b.json", head), ("99_TAIL.json", tail)], {}).config
    assert _names(cfg.outbounds) == ["block", "direct", "last"]


def test_merge_legacy_keys_are_replaced_and_port_comes_from_the_first_file() -> None:
    a = json.dumps({"port": 1111, "inbound": {"protocol": "socks"}})
    b = json.dumps({"port": 2222, "inbound": {"protocol": "http"}})
    cfg = load_config([("a.json", a), ("b.json", b)], {}).config
    assert cfg.inbounds[0].protocol == "http"
    assert cfg.inbounds[0].port == PortRange(1111, 1111)


# --------------------------------------------------------------------------
# the model itself


def test_models_are_frozen() -> None:
    cfg = load(config()).config
    with pytest.raises(ValidationError):
        cfg.inbounds[0].tag = "x"
    with pytest.raises(AttributeError):
        cfg.inbounds[0].port.first = 2  # type: ignore[misc]
    assert isinstance(cfg.inbounds, tuple)


def test_default_config_json() -> None:
    loaded = load_config([("<default>", DEFAULT_CONFIG_JSON)], {})
    assert loaded.warnings == ()
    (inbound,) = loaded.config.inbounds
    assert isinstance(inbound, InboundConfig)
    assert (inbound.protocol, inbound.listen, inbound.port) == (
        "socks",
        "127.0.0.1",
        PortRange(1080, 1080),
    )
    assert inbound.sniffing.enabled
    assert inbound.sniffing.dest_override == ("http", "tls")
    assert isinstance(inbound.settings, SocksInboundSettings)
    assert (inbound.settings.auth, inbound.settings.udp) == ("noauth", True)
    (outbound,) = loaded.config.outbounds
    assert outbound.protocol == "freedom"


@pytest.mark.parametrize(
    ("env", "aead_disabled", "padding"),
    [
        ({}, False, False),
        ({"V2RAY_VMESS_AEAD_DISABLED": "true", "V2RAY_VMESS_PADDING": ""}, True, True),
        ({"V2RAY_VMESS_AEAD_DISABLED": "TRUE"}, False, False),
        ({"v2ray.vmess.aead.disabled": "false", "V2RAY_VMESS_AEAD_DISABLED": "true"}, False, False),
        ({"v2ray.vmess.padding": "1"}, False, True),
    ],
)
def test_env_switches(env: dict[str, str], aead_disabled: bool, padding: bool) -> None:
    switches = load(config(), env).config.switches
    assert (switches.vmess_aead_disabled, switches.vmess_padding) == (aead_disabled, padding)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("AsIs", "AsIs"),
        ("asis", "AsIs"),
        ("UseIP", "UseIP"),
        ("use_ip", "UseIP"),
        ("UseIPv4", "UseIPv4"),
        ("useip4", "UseIPv4"),
        ("use_ip_v4", "UseIPv4"),
        ("UseIPv6", "UseIPv6"),
        ("use_ip6", "UseIPv6"),
    ],
)
def test_freedom_domain_strategy_spellings(name: str, expected: str) -> None:
    data = config(outbounds=[{"protocol": "freedom", "settings": {"domainStrategy": name}}])
    (out,) = load(data).config.outbounds
    assert isinstance(out.settings, FreedomSettings)
    assert out.settings.domain_strategy == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        (":8080", (None, 8080)),
        ("example.test:0", ("example.test", None)),
        ("0.0.0.0:53", (None, 53)),
        ("[::1]:443", ("::1", 443)),
    ],
)
def test_freedom_redirect_override(text: str, expected: tuple[str | None, int | None]) -> None:
    data = config(outbounds=[{"protocol": "freedom", "settings": {"redirect": text}}])
    (out,) = load(data).config.outbounds
    assert isinstance(out.settings, FreedomSettings)
    assert out.settings.redirect_override == expected
