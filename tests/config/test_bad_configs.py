"""Bad configs: each fails with one ConfigError line naming the exact JSON path."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.config.cases import (
    UUID_A,
    UUID_B,
    config,
    load,
    socks_in,
    vmess_in,
    vmess_out,
    with_,
)
from v2py.config import load_config
from v2py.errors import ConfigError

BASE = config()
VMESS_IN = config(vmess_in())
VMESS_OUT = config(outbounds=[vmess_out()])
KCP_IN = config(socks_in(streamSettings={"network": "kcp", "kcpSettings": {}}))
DYNAMIC = config(
    vmess_in(settings={"clients": [{"id": UUID_A}], "detour": {"to": "dyn"}}),
    vmess_in(
        tag="dyn",
        port="10000-10008",
        settings={},
        allocate={"strategy": "random", "concurrency": 3},
    ),
)


@dataclass(frozen=True)
class Bad:
    """One bad config: input, environment, the exact error path and a message fragment."""

    id: str
    data: dict[str, Any] | str
    path: str
    fragment: str
    env: dict[str, str] = field(default_factory=dict)


# fmt: off
BAD: list[Bad] = [
    # --- ports
    Bad("port-70000", with_(BASE, "inbounds.0.port", 70000), "inbounds[0].port",
        '70000 is out of range; use 0-65535, "A-B" or "env:NAME"'),
    Bad("port-negative", with_(BASE, "inbounds.0.port", -1), "inbounds[0].port",
        "-1 is out of range"),
    Bad("port-string-70000", with_(BASE, "inbounds.0.port", "70000"), "inbounds[0].port",
        '"70000" is out of range'),
    Bad("port-range-reversed", with_(BASE, "inbounds.0.port", "20000-10000"),
        "inbounds[0].port", "20000 is greater than 10000"),
    Bad("port-range-end-too-big", with_(BASE, "inbounds.0.port", "1-65536"),
        "inbounds[0].port", "out of range"),
    Bad("port-garbage", with_(BASE, "inbounds.0.port", "80a"), "inbounds[0].port",
        '"80a" is not a port'),
    Bad("port-true", with_(BASE, "inbounds.0.port", True), "inbounds[0].port",
        "true is not a port"),
    Bad("port-float", with_(BASE, "inbounds.0.port", 1080.0), "inbounds[0].port",
        "1080.0 is not a port"),
    Bad("port-env-missing", with_(BASE, "inbounds.0.port", "env:MISSING"), "inbounds[0].port",
        "environment variable MISSING is not set"),
    Bad("port-env-empty", with_(BASE, "inbounds.0.port", "env:P"), "inbounds[0].port",
        "environment variable P is empty", env={"P": ""}),
    Bad("port-env-garbage", with_(BASE, "inbounds.0.port", "env:P"), "inbounds[0].port",
        'is not a port', env={"P": "http"}),
    Bad("port-missing", config({"protocol": "socks", "settings": {}}), "inbounds[0].port",
        "missing; every inbound needs a port"),
    Bad("port-missing-with-listen",
        config({"protocol": "socks", "listen": "127.0.0.1"}), "inbounds[0].port", "missing"),
    Bad("vnext-port-0", with_(VMESS_OUT, "outbounds.0.settings.vnext.0.port", 0),
        "outbounds[0].settings.vnext[0].port", "0 is out of range; use 1-65535"),
    # --- protocols and required settings
    Bad("inbound-protocol-unknown", with_(BASE, "inbounds.0.protocol", "foo"),
        "inbounds[0].protocol", '"foo" is not a known protocol; use one of: socks, http'),
    Bad("inbound-protocol-missing", config({"port": 1}), "inbounds[0].protocol",
        "missing; add \"protocol\""),
    Bad("outbound-protocol-unknown", with_(BASE, "outbounds.0.protocol", "teleport"),
        "outbounds[0].protocol", '"teleport" is not a known protocol'),
    Bad("vmess-outbound-no-vnext", config(outbounds=[{"protocol": "vmess"}]),
        "outbounds[0].settings.vnext", "no servers"),
    Bad("vmess-outbound-empty-vnext",
        config(outbounds=[{"protocol": "vmess", "settings": {"vnext": []}}]),
        "outbounds[0].settings.vnext", "no servers"),
    Bad("vmess-outbound-no-users", with_(VMESS_OUT, "outbounds.0.settings.vnext.0.users", []),
        "outbounds[0].settings.vnext[0].users", "no users"),
    Bad("vmess-outbound-no-address",
        config(outbounds=[{"protocol": "vmess", "settings": {
            "vnext": [{"port": 1, "users": [{"id": UUID_A}]}]}}]),
        "outbounds[0].settings.vnext[0].address", "missing"),
    # --- wrong types
    Bad("clients-not-list", with_(VMESS_IN, "inbounds.0.settings.clients", {"id": UUID_A}),
        "inbounds[0].settings.clients", "an object is not a list"),
    Bad("settings-not-object", with_(BASE, "inbounds.0.settings", [1]),
        "inbounds[0].settings", "a list is not an object"),
    Bad("inbounds-not-list", {"inbounds": {"port": 1}}, "inbounds", "an object is not a list"),
    Bad("level-string", with_(VMESS_IN, "inbounds.0.settings.clients.0.level", "0"),
        "inbounds[0].settings.clients[0].level", '"0" is not an integer'),
    Bad("udp-string", with_(BASE, "inbounds.0.settings.udp", "true"),
        "inbounds[0].settings.udp", '"true" is not true or false'),
    Bad("tag-number", with_(BASE, "inbounds.0.tag", 5), "inbounds[0].tag", "5 is not a string"),
    Bad("top-level-list", "[1, 2]", "config.json", "the top level is a list"),
    # --- JSON text
    Bad("comment-left-open", '{\n  "log": {}\n  /* never\n closed\n}', "config.json:3:3",
        "comment opened here is never closed"),
    Bad("missing-comma", '{\n  "log": {}\n  "inbounds": []\n}', "config.json:3:3",
        "invalid JSON: expecting ',' delimiter"),
    Bad("trailing-garbage", '{"log": {}}\n}garbage', "config.json:2:1",
        "unexpected text after the end of the JSON document"),
    Bad("unterminated-string", '{"log": {"loglevel": "info}}', "config.json:1:22",
        "invalid JSON"),
    Bad("nan", '{"port": NaN}', "config.json:1:1", "NaN is not valid JSON"),
    # --- tags and detours
    Bad("duplicate-inbound-tag", config(socks_in(tag="a"), socks_in(tag="a", port=1081)),
        "inbounds[1].tag", '"a" is already the tag of inbounds[0]'),
    Bad("duplicate-outbound-tag",
        config(outbounds=[{"protocol": "freedom", "tag": "x"},
                          {"protocol": "blackhole", "tag": "x"}]),
        "outbounds[1].tag", '"x" is already the tag of outbounds[0]'),
    Bad("detour-missing-tag", with_(DYNAMIC, "inbounds.0.settings.detour.to", "nowhere"),
        "inbounds[0].settings.detour.to", '"nowhere" is not the tag of any inbound'),
    Bad("detour-non-vmess", config(
        vmess_in(settings={"clients": [{"id": UUID_A}], "detour": {"to": "s"}}),
        socks_in(tag="s", port=1081)),
        "inbounds[0].settings.detour.to", "is the tag of a socks inbound"),
    Bad("legacy-detour-missing-tag", config(
        vmess_in(settings={"clients": [{"id": UUID_A}], "features": {"detour": {"to": "nope"}}})),
        "inbounds[0].settings.features.detour.to", "is not the tag of any inbound"),
    Bad("detour-empty", with_(DYNAMIC, "inbounds.0.settings.detour.to", ""),
        "inbounds[0].settings.detour.to", "is empty"),
    # --- VMess users
    Bad("bad-uuid", with_(VMESS_IN, "inbounds.0.settings.clients.0.id", "not-a-uuid"),
        "inbounds[0].settings.clients[0].id", '"not-a-uuid" is not a UUID'),
    Bad("bad-uuid-second-client", with_(VMESS_IN, "inbounds.0.settings.clients",
                                        [{"id": UUID_A}, {"id": UUID_B + "0"}]),
        "inbounds[0].settings.clients[1].id", "is not a UUID"),
    Bad("uuid-missing", with_(VMESS_IN, "inbounds.0.settings.clients.0", {"alterId": 0}),
        "inbounds[0].settings.clients[0].id", "missing"),
    Bad("outbound-bad-uuid", config(outbounds=[vmess_out(id="xyz")]),
        "outbounds[0].settings.vnext[0].users[0].id", '"xyz" is not a UUID'),
    Bad("level-300", with_(VMESS_IN, "inbounds.0.settings.clients.0.level", 300),
        "inbounds[0].settings.clients[0].level", "300 is out of range; use 0-255"),
    Bad("alterid-70000", with_(VMESS_IN, "inbounds.0.settings.clients.0.alterId", 70000),
        "inbounds[0].settings.clients[0].alterId", "70000 is out of range; use 0-65535"),
    Bad("default-alterid-negative", with_(VMESS_IN, "inbounds.0.settings.default", {"alterId": -1}),
        "inbounds[0].settings.default.alterId", "-1 is out of range"),
    Bad("duplicate-email", with_(VMESS_IN, "inbounds.0.settings.clients",
                                 [{"id": UUID_A, "email": "a@x"}, {"id": UUID_B, "email": "A@X"}]),
        "inbounds[0].settings.clients[1].email", "already used by clients[0]"),
    Bad("security-unknown", config(outbounds=[vmess_out(security="aes-256-gcm")]),
        "outbounds[0].settings.vnext[0].users[0].security",
        '"aes-256-gcm" is not allowed; use one of: "aes-128-gcm", "chacha20-poly1305", "auto"'),
    Bad("security-zero", config(outbounds=[vmess_out(security="zero")]),
        "outbounds[0].settings.vnext[0].users[0].security",
        '"zero" is not supported by V2Ray 4.34'),
    Bad("tests-enabled-unknown", config(outbounds=[vmess_out(testsEnabled="Foo")]),
        "outbounds[0].settings.vnext[0].users[0].testsEnabled", '"Foo" is not allowed'),
    # --- transport
    Bad("ds-no-path", with_(BASE, "inbounds.0.streamSettings", {"network": "ds"}),
        "inbounds[0].streamSettings.dsSettings.path", "empty domain socket path"),
    Bad("network-unknown", with_(BASE, "outbounds.0.streamSettings", {"network": "carrier-pigeon"}),
        "outbounds[0].streamSettings.network", "is not allowed"),
    Bad("tls-usage-unknown", with_(BASE, "inbounds.0.streamSettings",
                                   {"security": "tls", "tlsSettings": {"certificates": [
                                       {"certificate": ["x"], "usage": "sign"}]}}),
        "inbounds[0].streamSettings.tlsSettings.certificates[0].usage", '"sign" is not allowed'),
    Bad("tls-certificate-missing", with_(BASE, "inbounds.0.streamSettings",
                                         {"security": "tls", "tlsSettings": {"certificates": [
                                             {"keyFile": "k.pem"}]}}),
        "inbounds[0].streamSettings.tlsSettings.certificates[0].certificate", "missing"),
    Bad("ws-path-number", with_(BASE, "inbounds.0.streamSettings",
                                {"network": "ws", "wsSettings": {"path": 1}}),
        "inbounds[0].streamSettings.wsSettings.path", "1 is not a string"),
    Bad("security-other", with_(BASE, "inbounds.0.streamSettings", {"security": "xtls"}),
        "inbounds[0].streamSettings.security", '"xtls" is not allowed'),
    Bad("tcp-header-http-null-value", with_(BASE, "inbounds.0.streamSettings", {"tcpSettings": {
        "header": {"type": "http", "request": {"headers": {"Host": None}}}}}),
        "inbounds[0].streamSettings.tcpSettings.header.request.headers.Host", "null"),
    Bad("mtu-100", with_(KCP_IN, "inbounds.0.streamSettings.kcpSettings.mtu", 100),
        "inbounds[0].streamSettings.kcpSettings.mtu", "100 is out of range; use 576-1460"),
    Bad("tti-5", with_(KCP_IN, "inbounds.0.streamSettings.kcpSettings.tti", 5),
        "inbounds[0].streamSettings.kcpSettings.tti", "5 is out of range; use 10-100"),
    Bad("kcp-header-unknown", with_(KCP_IN, "inbounds.0.streamSettings.kcpSettings.header",
                                    {"type": "quic-fake"}),
        "inbounds[0].streamSettings.kcpSettings.header.type", '"quic-fake" is not allowed'),
    Bad("kcp-header-without-type",
        with_(KCP_IN, "inbounds.0.streamSettings.kcpSettings.header", {}),
        "inbounds[0].streamSettings.kcpSettings.header.type", "missing"),
    Bad("transport-mtu", config(transport={"kcpSettings": {"mtu": 2000}}),
        "transport.kcpSettings.mtu", "2000 is out of range"),
    # --- allocation
    Bad("concurrency-too-high", with_(DYNAMIC, "inbounds.1.allocate.concurrency", 4),
        "inbounds[1].allocate.concurrency", "concurrency may be at most 1/3 of the port range"),
    Bad("random-needs-range", with_(DYNAMIC, "inbounds.1.port", 10000),
        "inbounds[1].port", 'allocate strategy "random" needs a range'),
    Bad("strategy-external", with_(DYNAMIC, "inbounds.1.allocate.strategy", "external"),
        "inbounds[1].allocate.strategy", '"external" is not supported by v2py'),
    Bad("strategy-missing", with_(DYNAMIC, "inbounds.1.allocate", {"refresh": 5}),
        "inbounds[1].allocate.strategy", "missing"),
    Bad("refresh-0", with_(DYNAMIC, "inbounds.1.allocate.refresh", 0),
        "inbounds[1].allocate.refresh", "0 is out of range; use 1-"),
    # --- sniffing, log, policy
    Bad("dest-override-ftp", with_(BASE, "inbounds.0.sniffing",
                                   {"enabled": True, "destOverride": ["http", "ftp"]}),
        "inbounds[0].sniffing.destOverride", '"ftp" is not a sniffer'),
    Bad("dest-override-ftp-string", with_(BASE, "inbounds.0.sniffing", {"destOverride": "tls,ftp"}),
        "inbounds[0].sniffing.destOverride", '"ftp" is not a sniffer'),
    Bad("domain-override-ftp", with_(BASE, "inbounds.0.domainOverride", ["ftp"]),
        "inbounds[0].domainOverride", '"ftp" is not a sniffer'),
    Bad("loglevel-verbose", config(log={"loglevel": "verbose"}), "log.loglevel",
        '"verbose" is not allowed; use one of: "debug", "info", "warning", "error", "none"'),
    Bad("policy-negative", config(policy={"levels": {"0": {"handshake": -1}}}),
        "policy.levels.0.handshake", "-1 is out of range"),
    Bad("policy-level-key", config(policy={"levels": {"zero": {}}}),
        "policy.levels.zero", '"zero" is not a user level'),
    # --- inbound protocol settings
    Bad("socks-auth-foo", with_(BASE, "inbounds.0.settings.auth", "foo"),
        "inbounds[0].settings.auth", '"foo" is not allowed; use one of: "noauth", "password"'),
    Bad("socks-auth-case", with_(BASE, "inbounds.0.settings.auth", "Password"),
        "inbounds[0].settings.auth", '"Password" is not allowed'),
    Bad("socks-password-no-accounts", with_(BASE, "inbounds.0.settings.auth", "password"),
        "inbounds[0].settings.accounts", 'needs at least one'),
    Bad("dokodemo-network", config({"port": 5353, "protocol": "dokodemo-door",
                                    "settings": {"network": "tcp,icmp"}}),
        "inbounds[0].settings.network", '"icmp" is not a network'),
    Bad("listen-domain", with_(BASE, "inbounds.0.listen", "example.com"),
        "inbounds[0].listen", '"example.com" is not an IP address'),
    Bad("listen-unix-kcp", with_(KCP_IN, "inbounds.0.listen", "/run/v2.sock"),
        "inbounds[0].listen", "works with network tcp, ws or h2, not 'kcp'"),
    Bad("listen-unix-socks-udp",
        config(socks_in(listen="@v2", settings={"udp": True})),
        "inbounds[0].listen", "serves TCP streams only"),
    Bad("listen-unix-empty", with_(BASE, "inbounds.0.listen", "@@"),
        "inbounds[0].listen", "is not a Unix socket path"),
    Bad("reverse-bridge-no-domain", with_(BASE, "reverse", {"bridges": [{"tag": "b"}]}),
        "reverse.bridges[0].domain", "bridge domain is empty"),
    Bad("reverse-portal-no-tag", with_(BASE, "reverse", {"portals": [{"domain": "x"}]}),
        "reverse.portals[0].tag", "portal tag is empty"),
    Bad("api-tag-empty", with_(BASE, "api", {"tag": ""}), "api.tag", "API tag can't be empty."),
    Bad("api-no-tag", with_(BASE, "api", {"services": ["StatsService"]}), "api.tag",
        "API tag can't be empty."),
    Bad("api-reflection", with_(BASE, "api", {"tag": "api", "services": ["ReflectionService"]}),
        "api.services", "ReflectionService"),
    Bad("stats-not-object", with_(BASE, "stats", []), "stats", "not an object"),
    Bad("proxy-settings-on-freedom", with_(BASE, "outbounds.0.proxySettings", {"tag": "x"}),
        "outbounds[0].proxySettings.tag", '"x" is not the tag of any outbound'),
    Bad("sockopt-tproxy-unknown",
        with_(BASE, "inbounds.0.streamSettings", {"sockopt": {"tproxy": "transparent"}}),
        "inbounds[0].streamSettings.sockopt.tproxy", '"transparent" is not allowed'),
    Bad("sockopt-mark-range",
        with_(BASE, "outbounds.0.streamSettings", {"sockopt": {"mark": 2**31}}),
        "outbounds[0].streamSettings.sockopt.mark", ""),
    Bad("outbound-socks-no-servers", with_(BASE, "outbounds.0.protocol", "socks"),
        "outbounds[0].settings.servers", "no servers"),
    Bad("outbound-loopback", with_(BASE, "outbounds.0.protocol", "loopback"),
        "outbounds[0].protocol", '"loopback" is not supported by v2py'),
    # --- outbound details
    Bad("mux-concurrency-1025",
        with_(BASE, "outbounds.0.mux", {"enabled": True, "concurrency": 1025}),
        "outbounds[0].mux.concurrency", "invalid mux concurrency: 1025"),
    Bad("mux-concurrency-off-1025",
        with_(BASE, "outbounds.0.mux", {"enabled": False, "concurrency": 1025}),
        "outbounds[0].mux.concurrency", "invalid mux concurrency: 1025"),
    Bad("send-through-domain", with_(BASE, "outbounds.0.sendThrough", "example.com"),
        "outbounds[0].sendThrough", "unable to send through"),
    Bad("freedom-strategy", with_(BASE, "outbounds.0.settings", {"domainStrategy": "UseDNS"}),
        "outbounds[0].settings.domainStrategy", '"UseDNS" is not allowed; use one of: "AsIs"'),
    Bad("freedom-redirect", with_(BASE, "outbounds.0.settings", {"redirect": "nohost"}),
        "outbounds[0].settings.redirect", '"nohost" is not "host:port"'),
    Bad("blackhole-response", config(outbounds=[{"protocol": "blackhole",
                                                 "settings": {"response": {"type": "teapot"}}}]),
        "outbounds[0].settings.response.type", '"teapot" is not allowed'),
    Bad("dns-out-port-70000", config(outbounds=[{"protocol": "dns", "settings": {"port": 70000}}]),
        "outbounds[0].settings.port", "70000 is out of range"),
    Bad("dns-out-network-number", config(outbounds=[{"protocol": "dns",
                                                     "settings": {"network": 53}}]),
        "outbounds[0].settings.network", "53 is not a string"),
    Bad("dns-out-network-unix", config(outbounds=[{"protocol": "dns",
                                                   "settings": {"network": "unix"}}]),
        "outbounds[0].settings.network", '"unix" is not supported by v2py'),
    Bad("vless-out-no-encryption", config(outbounds=[{"protocol": "vless", "settings": {
        "vnext": [{"address": "127.0.0.1", "port": 1, "users": [{"id": UUID_A}]}]}}]),
        "outbounds[0].settings.vnext[0].users[0].encryption",
        'please add/set "encryption":"none" for every user'),
    Bad("vless-out-no-users", config(outbounds=[{"protocol": "vless", "settings": {
        "vnext": [{"address": "127.0.0.1", "port": 1, "users": []}]}}]),
        "outbounds[0].settings.vnext[0].users", '"users" is empty'),
    Bad("vless-in-no-decryption", config({"port": 1, "protocol": "vless",
                                          "settings": {"clients": [{"id": UUID_A}]}}),
        "inbounds[0].settings.decryption", 'please add/set "decryption":"none"'),
    Bad("vless-in-duplicate-email", config({"port": 1, "protocol": "vless", "settings": {
        "clients": [{"id": UUID_A, "email": "A@b"}, {"id": UUID_B, "email": "a@B"}],
        "decryption": "none"}}),
        "inbounds[0].settings.clients[1].email", "User a@B already exists."),
    Bad("vless-in-fallback-null", config({"port": 1, "protocol": "vless", "settings": {
        "clients": [{"id": UUID_A}], "decryption": "none", "fallback": None}}),
        "inbounds[0].settings.fallback",
        'VLESS settings: please use "fallbacks":[{}] instead of "fallback":{}'),
    Bad("vless-in-fallback-path", config({"port": 1, "protocol": "vless", "settings": {
        "clients": [{"id": UUID_A}], "decryption": "none",
        "fallbacks": [{"dest": 80, "path": "ws"}]}}),
        "inbounds[0].settings.fallbacks[0]",
        'VLESS fallbacks: "path" must be empty or start with "/"'),
    Bad("vless-in-fallback-no-dest", config({"port": 1, "protocol": "vless", "settings": {
        "clients": [{"id": UUID_A}], "decryption": "none", "fallbacks": [{"dest": "nginx"}]}}),
        "inbounds[0].settings.fallbacks[0]",
        'VLESS fallbacks: please fill in a valid value for every "dest"'),
    Bad("vless-in-fallback-xver", config({"port": 1, "protocol": "vless", "settings": {
        "clients": [{"id": UUID_A}], "decryption": "none",
        "fallbacks": [{"dest": 80, "xver": 3}]}}),
        "inbounds[0].settings.fallbacks[0].xver",
        'VLESS fallbacks: invalid PROXY protocol version, "xver" only accepts 0, 1, 2'),
    Bad("vless-in-fallback-serve", config({"port": 1, "protocol": "vless", "settings": {
        "clients": [{"id": UUID_A}], "decryption": "none",
        "fallbacks": [{"dest": "serve-ws-none"}]}}),
        "inbounds[0].settings.fallbacks[0].dest", "not supported by v2py"),
    Bad("mtproto-in-no-users", config({"port": 1, "protocol": "mtproto", "settings": {}}),
        "inbounds[0].settings.users", "zero MTProto users configured."),
    Bad("mtproto-in-short-secret", config({"port": 1, "protocol": "mtproto", "settings": {
        "users": [{"secret": "abcd"}]}}),
        "inbounds[0].settings.users[0].secret", "MTProto secret must have 32 chars"),
    Bad("mtproto-in-bad-secret", config({"port": 1, "protocol": "mtproto", "settings": {
        "users": [{"secret": "z" * 32}]}}),
        "inbounds[0].settings.users[0].secret", "failed to decode secret: "),
    Bad("ss-in-no-password", config({"port": 1, "protocol": "shadowsocks",
                                     "settings": {"method": "aes-128-gcm"}}),
        "inbounds[0].settings.password", "Shadowsocks password is not specified."),
    Bad("ss-in-stream-cipher", config({"port": 1, "protocol": "shadowsocks", "settings": {
        "method": "aes-256-cfb", "password": "p"}}),
        "inbounds[0].settings.method", "unknown cipher method: aes-256-cfb"),
    Bad("ss-in-no-method", config({"port": 1, "protocol": "shadowsocks",
                                   "settings": {"password": "p"}}),
        "inbounds[0].settings.method", "unknown cipher method: "),
    Bad("ss-in-network-unix", config({"port": 1, "protocol": "shadowsocks", "settings": {
        "method": "none", "password": "p", "network": "unix"}}),
        "inbounds[0].settings.network", '"unix" is not a network'),
    Bad("ss-out-no-servers", config(outbounds=[{"protocol": "shadowsocks", "settings": {}}]),
        "outbounds[0].settings.servers", "0 Shadowsocks server configured."),
    Bad("ss-out-no-port", config(outbounds=[{"protocol": "shadowsocks", "settings": {
        "servers": [{"address": "127.0.0.1", "method": "none", "password": "p"}]}}]),
        "outbounds[0].settings.servers[0].port", "missing"),
    Bad("trojan-in-fallback-null", config({"port": 1, "protocol": "trojan", "settings": {
        "clients": [{"password": "p"}], "fallback": None}}),
        "inbounds[0].settings.fallback",
        'Trojan settings: please use "fallbacks":[{}] instead of "fallback":{}'),
    Bad("trojan-in-fallback-no-dest", config({"port": 1, "protocol": "trojan", "settings": {
        "clients": [{"password": "p"}], "fallbacks": [{"alpn": "h2"}]}}),
        "inbounds[0].settings.fallbacks[0]",
        'Trojan fallbacks: please fill in a valid value for every "dest"'),
    Bad("trojan-in-duplicate-email", config({"port": 1, "protocol": "trojan", "settings": {
        "clients": [{"password": "a", "email": "A@b"}, {"password": "b", "email": "a@B"}]}}),
        "inbounds[0].settings.clients[1].email", "User a@B already exists."),
    Bad("trojan-out-no-servers", config(outbounds=[{"protocol": "trojan", "settings": {}}]),
        "outbounds[0].settings.servers", "0 Trojan server configured."),
    Bad("trojan-out-no-address", config(outbounds=[{"protocol": "trojan", "settings": {
        "servers": [{"port": 1, "password": "p"}]}}]),
        "outbounds[0].settings.servers[0].address", "Trojan server address is not set."),
    Bad("trojan-out-no-port", config(outbounds=[{"protocol": "trojan", "settings": {
        "servers": [{"address": "127.0.0.1", "password": "p"}]}}]),
        "outbounds[0].settings.servers[0].port", "Invalid Trojan port."),
    Bad("trojan-out-no-password", config(outbounds=[{"protocol": "trojan", "settings": {
        "servers": [{"address": "127.0.0.1", "port": 1, "password": ""}]}}]),
        "outbounds[0].settings.servers[0].password", "Trojan password is not specified."),
    Bad("trojan-out-level-256", config(outbounds=[{"protocol": "trojan", "settings": {
        "servers": [{"address": "127.0.0.1", "port": 1, "password": "p", "level": 256}]}}]),
        "outbounds[0].settings.servers[0].level", "256 is out of range"),
    # --- legacy layout and case-insensitive keys keep the written location
    Bad("legacy-inbound-detour-port", {"inbound": socks_in(),
                                       "inboundDetour": [socks_in(port="9-8")]},
        "inboundDetour[0].port", "9 is greater than 8"),
    Bad("legacy-inbound-settings", {"inbound": vmess_in(settings={"clients": [{"id": "x"}]})},
        "inbound.settings.clients[0].id", "is not a UUID"),
    Bad("case-insensitive-key", {"Inbounds": [{"PORT": 70000, "Protocol": "socks"}]},
        "inbounds[0].port", "70000 is out of range"),
    Bad("legacy-top-port-string", {"port": "1080", "inbound": {"protocol": "socks"}},
        "port", '"1080" is not an integer; use 0-65535'),
    # --- odd types in every kind of field
    Bad("protocol-number", with_(BASE, "inbounds.0.protocol", 5), "inbounds[0].protocol",
        "5 is not a protocol name"),
    Bad("listen-number", with_(BASE, "inbounds.0.listen", 127), "inbounds[0].listen",
        "127 is not an IP address string"),
    Bad("send-through-list", with_(BASE, "outbounds.0.sendThrough", ["1.2.3.4"]),
        "outbounds[0].sendThrough", "a list is not an IP address string"),
    Bad("uuid-number", with_(VMESS_IN, "inbounds.0.settings.clients.0.id", 12),
        "inbounds[0].settings.clients[0].id", "12 is not a UUID string"),
    Bad("vnext-address-empty", with_(VMESS_OUT, "outbounds.0.settings.vnext.0.address", " "),
        "outbounds[0].settings.vnext[0].address", "is empty"),
    Bad("vnext-address-number", with_(VMESS_OUT, "outbounds.0.settings.vnext.0.address", 1),
        "outbounds[0].settings.vnext[0].address", "1 is not an address string"),
    Bad("dest-override-number", with_(BASE, "inbounds.0.sniffing", {"destOverride": 5}),
        "inbounds[0].sniffing.destOverride", "5 is not a list of"),
    Bad("dest-override-entry-number", with_(BASE, "inbounds.0.sniffing", {"destOverride": [1]}),
        "inbounds[0].sniffing.destOverride", "1 is not a string"),
    Bad("security-number", config(outbounds=[vmess_out(security=1)]),
        "outbounds[0].settings.vnext[0].users[0].security", "1 is not a string; use one of"),
    Bad("redirect-number", with_(BASE, "outbounds.0.settings", {"redirect": 80}),
        "outbounds[0].settings.redirect", "80 is not a string"),
    Bad("redirect-ipv6-unbracketed", with_(BASE, "outbounds.0.settings", {"redirect": "::1:80"}),
        "outbounds[0].settings.redirect", 'is not "host:port"'),
    Bad("redirect-port-too-big", with_(BASE, "outbounds.0.settings", {"redirect": "a:65536"}),
        "outbounds[0].settings.redirect", 'is not "host:port"'),
    Bad("mux-concurrency", with_(BASE, "outbounds.0.mux", {"concurrency": 40000}),
        "outbounds[0].mux.concurrency", "40000 is out of range; use -32768-32767"),
    Bad("policy-levels-list", config(policy={"levels": [1]}), "policy.levels",
        "a list is not an object"),
    Bad("log-not-object", config(log="debug"), "log", '"debug" is not an object'),
    Bad("kcp-seed-number", with_(KCP_IN, "inbounds.0.streamSettings.kcpSettings.seed", 7),
        "inbounds[0].streamSettings.kcpSettings.seed", "7 is not a string"),
    Bad("congestion-number", with_(KCP_IN, "inbounds.0.streamSettings.kcpSettings.congestion", 1),
        "inbounds[0].streamSettings.kcpSettings.congestion", "1 is not true or false"),
    Bad("detour-to-number", with_(DYNAMIC, "inbounds.0.settings.detour.to", 1),
        "inbounds[0].settings.detour.to", "1 is not a string"),
]
# fmt: on


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_config(case: Bad) -> None:
    with pytest.raises(ConfigError) as info:
        load(case.data, case.env)
    err = info.value
    text = str(err)
    assert err.path == case.path, text
    assert text.startswith(f"{case.path}: "), text
    assert case.fragment in err.message, text
    assert "\n" not in text
    assert "pydantic" not in text.lower()
    assert "errors.pydantic.dev" not in text
    assert "Input should" not in text


def test_table_is_big_enough() -> None:
    assert len(BAD) >= 30
    assert len({c.id for c in BAD}) == len(BAD)


def test_multi_file_error_names_the_file() -> None:
    good = json.dumps(config())
    bad = json.dumps(with_(BASE, "inbounds.0.port", 70000))
    with pytest.raises(ConfigError) as info:
        load_config([("a.json", good), ("b.json", bad)], {})
    assert info.value.path == "b.json: inbounds[0].port"


def test_multi_file_json_error_names_the_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_config([("a.json", "{}"), ("b.json", "{,}")], {})
    assert info.value.path == "b.json:1:2"


def test_multi_file_cross_check_uses_merged_paths() -> None:
    a = json.dumps(config(socks_in(tag="x"), socks_in(tag="y", port=2)))
    b = json.dumps({"inboundDetour": [socks_in(tag="x", port=3)]})
    with pytest.raises(ConfigError) as info:
        load_config([("a.json", a), ("b.json", b)], {})
    assert info.value.path == "a.json: inbounds[0].tag"
    assert "already the tag of b.json: inboundDetour[0]" in info.value.message


def test_no_sources() -> None:
    with pytest.raises(ConfigError):
        load_config([], {})


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_FUZZ_BASE = with_(
    config(vmess_in(streamSettings={"network": "kcp"}), socks_in(port=2, tag="s")),
    "outbounds",
    [vmess_out(), {"protocol": "freedom"}],
)
_FUZZ_PATHS = [
    "inbounds.0.port", "inbounds.0.protocol", "inbounds.0.listen", "inbounds.0.tag",
    "inbounds.0.settings", "inbounds.0.settings.clients", "inbounds.0.settings.clients.0",
    "inbounds.0.settings.clients.0.id", "inbounds.0.settings.detour",
    "inbounds.0.settings.default", "inbounds.0.streamSettings",
    "inbounds.0.streamSettings.kcpSettings", "inbounds.0.streamSettings.kcpSettings.header",
    "inbounds.0.sniffing", "inbounds.0.allocate", "inbounds.1.settings",
    "outbounds.0.settings", "outbounds.0.settings.vnext", "outbounds.0.settings.vnext.0",
    "outbounds.0.settings.vnext.0.users.0", "outbounds.0.mux", "outbounds.1.settings",
    "log", "policy", "policy.levels", "transport", "inbound", "inboundDetour", "port",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_FUZZ_PATHS), _json_values)
def test_any_value_anywhere_loads_or_fails_with_one_clean_line(path: str, value: Any) -> None:
    data = with_(_FUZZ_BASE, path, value)
    try:
        load(json.dumps(data))
    except ConfigError as err:
        text = str(err)
        assert "\n" not in text
        assert "Input should" not in text
        assert "pydantic" not in text.lower()
        assert err.path
