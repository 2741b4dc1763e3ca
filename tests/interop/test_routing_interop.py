"""Interop: one routing config under the real V2Ray 4.34 and under v2py sends the
same destinations to the same outbounds.

Every outbound is a freedom with ``redirect`` to its own local sink (a TCP server
that answers with its name), or a blackhole. A SOCKS client (with and without a
user name, whose name is the session's email in both) asks for domains, IPv4 and
IPv6 addresses, ports, sniffed TLS SNI / HTTP Host / BitTorrent; the sink that
answers tells which outbound the router picked. ``domainStrategy`` is
IPIfNonMatch with ``dns.hosts`` answers, so no real DNS is asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.geodat import write_assets
from tests.support.servers import Handler, client_hello, tagged_servers
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_ports, require_v2ray, run_v2ray
from v2py.app.geodata import PRIVATE_CIDRS
from v2py.config.jsonc import parse_json
from v2py.config.load import load_config
from v2py.instance import Instance

pytestmark = pytest.mark.interop

TIMEOUT_S = 10.0
SINK_READ_S = 0.3
#: Raw bytes that no sniffer claims (so sniffing decides at once).
RAW = b"\x00" * 32
BLOCKED = "<blocked>"

SITES = {
    "TESTSITE": [
        ("domain:ads.example", ["ads"]),
        "domain:site.example",
        "full:exact.example",
        "plain:gsw",
        "regexp:^gre\\.",
    ]
}
IPS = {
    "TESTIP": ["203.0.113.0/24", "2400:cb00::/32"],
    "PRIVATE": list(PRIVATE_CIDRS),
}

OUTBOUND_TAGS = [
    "default",
    "o-full",
    "o-sub",
    "o-kw",
    "o-re",
    "o-plain",
    "o-ip4",
    "o-ip6",
    "o-geoip",
    "o-geosite",
    "o-port",
    "o-user",
    "o-tag",
    "o-tls",
    "o-http",
    "o-src",
    "bal",
    "bal-1",
]


def rule(target: str, **conditions: Any) -> dict[str, Any]:
    key = "balancerTag" if target == "B" else "outboundTag"
    return {"type": "field", **conditions, key: target}


RULES = [
    rule("o-tag", inboundTag=["in-open"], port="7001"),
    rule("o-user", user=["Bob"]),
    rule("block", protocol=["bittorrent"]),
    rule("o-full", domain=["full:full.test"]),
    rule("o-sub", domain=["domain:sub.test"]),
    rule("o-kw", domain=["keyword:kwd"]),
    rule("o-re", domain=["regexp:^re[0-9]+\\.test$"]),
    rule("o-plain", domain=["plainword"]),
    rule("block", domain=["geosite:testsite@ads"]),
    rule("o-geosite", domain=["geosite:testsite"]),
    rule("o-tls", domain=["domain:sni.test"], protocol=["tls"]),
    rule("o-http", domain=["full:host.test"], protocol=["http"]),
    rule("o-ip4", ip=["10.0.0.0/8", "192.0.2.1"]),
    rule("o-ip6", ip=["2001:db8::/32"]),
    rule("o-geoip", ip=["geoip:testip"]),
    rule("o-port", port="8000-8100,9443"),
    rule("o-src", source=["127.0.0.1"], port="7777"),
    rule("B", port="6000"),
    rule("block", ip=["geoip:private"]),
]

HOSTS = {
    "resolved4.test": "10.9.9.9",
    "resolved6.test": "2001:db8::9",
    "resolvedgeo.test": "203.0.113.77",
    "priv.test": "127.0.0.2",
    "www.full.test": "93.184.216.34",
    "notsub.test": "93.184.216.34",
    "re42.test.x": "93.184.216.34",
    "unrouted.test": "93.184.216.34",
    "Case.Sni.Test": "93.184.216.35",
}

# (name, inbound, user, host, port, payload kind, expected outbound tag)
CASES = [
    ("full", "auth", "alice", "full.test", 80, "raw", "o-full"),
    ("full-sub-not", "auth", "alice", "www.full.test", 80, "raw", "default"),
    ("domain", "auth", "alice", "sub.test", 80, "raw", "o-sub"),
    ("domain-deep", "auth", "alice", "a.b.sub.test", 80, "raw", "o-sub"),
    ("domain-not", "auth", "alice", "notsub.test", 80, "raw", "default"),
    ("keyword", "auth", "alice", "xkwdx.test", 80, "raw", "o-kw"),
    ("regexp", "auth", "alice", "re42.test", 80, "raw", "o-re"),
    ("regexp-anchored", "auth", "alice", "re42.test.x", 80, "raw", "default"),
    ("plain-substring", "auth", "alice", "aplainwordb.test", 80, "raw", "o-plain"),
    ("geosite-attr", "auth", "alice", "x.ads.example", 80, "raw", BLOCKED),
    ("geosite-domain", "auth", "alice", "www.site.example", 80, "raw", "o-geosite"),
    ("geosite-full", "auth", "alice", "exact.example", 80, "raw", "o-geosite"),
    ("geosite-plain", "auth", "alice", "in.gsw.test", 80, "raw", "o-geosite"),
    ("geosite-regexp", "auth", "alice", "gre.test", 80, "raw", "o-geosite"),
    ("ipv4-cidr", "auth", "alice", "10.1.2.3", 80, "raw", "o-ip4"),
    ("ipv4-single", "auth", "alice", "192.0.2.1", 80, "raw", "o-ip4"),
    ("ipv4-private", "auth", "alice", "192.0.2.2", 80, "raw", BLOCKED),
    ("ipv6-cidr", "auth", "alice", "2001:db8::1", 80, "raw", "o-ip6"),
    ("geoip-v4", "auth", "alice", "203.0.113.5", 80, "raw", "o-geoip"),
    ("geoip-v6", "auth", "alice", "2400:cb00::1", 80, "raw", "o-geoip"),
    ("resolve-v4", "auth", "alice", "resolved4.test", 80, "raw", "o-ip4"),
    ("resolve-v6", "auth", "alice", "resolved6.test", 80, "raw", "o-ip6"),
    ("resolve-geoip", "auth", "alice", "resolvedgeo.test", 80, "raw", "o-geoip"),
    ("resolve-private", "auth", "alice", "priv.test", 80, "raw", BLOCKED),
    ("loopback-private", "auth", "alice", "127.0.0.1", 80, "raw", BLOCKED),
    ("ipv6-loopback", "auth", "alice", "::1", 80, "raw", BLOCKED),
    ("port-range", "auth", "alice", "8.8.8.8", 8050, "raw", "o-port"),
    ("port-single", "auth", "alice", "8.8.8.8", 9443, "raw", "o-port"),
    ("no-match", "auth", "alice", "8.8.8.8", 80, "raw", "default"),
    ("no-match-v6", "auth", "alice", "2606:4700::1", 80, "raw", "default"),
    ("no-match-domain", "auth", "alice", "unrouted.test", 80, "raw", "default"),
    ("source", "auth", "alice", "1.1.1.1", 7777, "raw", "o-src"),
    ("balancer", "auth", "alice", "1.1.1.1", 6000, "raw", "bal-1"),
    ("sniff-tls", "auth", "alice", "8.8.4.4", 443, "tls:www.sni.test", "o-tls"),
    ("sniff-tls-case", "auth", "alice", "8.8.4.4", 443, "tls:Case.Sni.Test", "default"),
    ("sniff-http", "auth", "alice", "8.8.4.4", 80, "http:HOST.test", "o-http"),
    ("sniff-http-domain", "auth", "alice", "8.8.4.4", 80, "http:sub.test", "o-sub"),
    ("sniff-bittorrent", "auth", "alice", "8.8.4.4", 6881, "bt", BLOCKED),
    ("user", "auth", "Bob", "8.8.8.8", 80, "raw", "o-user"),
    ("user-case", "auth", "bob", "8.8.8.8", 80, "raw", "default"),
    ("inbound-tag", "open", None, "8.8.8.8", 7001, "raw", "o-tag"),
    ("inbound-tag-other", "auth", "alice", "8.8.8.8", 7001, "raw", "default"),
]


def payload(kind: str) -> bytes:
    if kind == "raw":
        return RAW
    if kind == "bt":
        return b"\x13BitTorrent protocol" + bytes(8) + b"\x01" * 40
    name, _, value = kind.partition(":")
    if name == "tls":
        return client_hello(value)
    return f"GET / HTTP/1.1\r\nHost: {value}\r\nUser-Agent: t\r\n\r\n".encode()


def config(ports: dict[str, int]) -> dict[str, Any]:
    outbounds: list[dict[str, Any]] = [
        {
            "tag": tag,
            "protocol": "freedom",
            "settings": {"redirect": f"127.0.0.1:{ports[tag]}"},
        }
        for tag in OUTBOUND_TAGS
    ]
    outbounds.append({"tag": "block", "protocol": "blackhole", "settings": {}})
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {
                "tag": "in-auth",
                "listen": "127.0.0.1",
                "port": ports["in-auth"],
                "protocol": "socks",
                "settings": {
                    "auth": "password",
                    "accounts": [
                        {"user": "alice", "pass": "pw"},
                        {"user": "Bob", "pass": "pw"},
                        {"user": "bob", "pass": "pw"},
                    ],
                },
                "sniffing": {"enabled": True, "destOverride": ["http", "tls"]},
            },
            {
                "tag": "in-open",
                "listen": "127.0.0.1",
                "port": ports["in-open"],
                "protocol": "socks",
                "settings": {"auth": "noauth"},
            },
        ],
        "outbounds": outbounds,
        "routing": {
            "domainStrategy": "IPIfNonMatch",
            "balancers": [{"tag": "B", "selector": ["bal-"]}],
            "rules": RULES,
        },
        "dns": {"hosts": HOSTS},
    }


def _answer(tag: str) -> Handler:
    """Reads what the client sent (briefly), answers its tag."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(TimeoutError, OSError):
            async with asyncio.timeout(SINK_READ_S):
                await reader.read(65536)
        with contextlib.suppress(OSError):
            writer.write(tag.encode())
            await writer.drain()
            writer.close()

    return serve


def sinks(tags: list[str]) -> contextlib.AbstractAsyncContextManager[dict[str, int]]:
    """One TCP server per tag answering its tag (ports by tag)."""
    return tagged_servers(tags, _answer)


def _address(host: str, port: int) -> bytes:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raw = host.encode()
        return b"\x03" + bytes([len(raw)]) + raw + struct.pack(">H", port)
    kind = b"\x01" if ip.version == 4 else b"\x04"
    return kind + ip.packed + struct.pack(">H", port)


async def through(proxy_port: int, user: str | None, host: str, port: int, data: bytes) -> str:
    """Connect through SOCKS5 (password auth when ``user``), send, return what comes back
    (the sink's tag) or BLOCKED when the tunnel closes without an answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    try:
        method = b"\x02" if user else b"\x00"
        writer.write(b"\x05\x01" + method)
        if (await reader.readexactly(2))[1] != method[0]:
            raise ConnectionError("socks method refused")
        if user:
            writer.write(b"\x01" + bytes([len(user)]) + user.encode() + b"\x02pw")
            if (await reader.readexactly(2))[1] != 0:
                raise ConnectionError("socks auth refused")
        writer.write(b"\x05\x01\x00" + _address(host, port))
        head = await reader.readexactly(4)
        if head[1] != 0:
            raise ConnectionError(f"socks reply {head[1]}")
        skip = {1: 4, 4: 16}.get(head[3])
        if skip is None:
            skip = (await reader.readexactly(1))[0]
        await reader.readexactly(skip + 2)
        writer.write(data)
        await writer.drain()
        answer = b""
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(4096):
                answer += chunk
        return answer.decode() if answer else BLOCKED
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def run_matrix(kind: str, assets: Path) -> dict[str, str]:
    in_auth, in_open = free_ports(2)
    async with sinks(OUTBOUND_TAGS) as sink_ports:
        ports = {**sink_ports, "in-auth": in_auth, "in-open": in_open}
        cfg = config(ports)
        env = {"V2RAY_LOCATION_ASSET": str(assets)}
        side = (
            run_v2ray(cfg, wait_tcp=[in_auth, in_open], env=env)
            if kind == "v2ray"
            else run_v2py(cfg, env=env)
        )
        async with side:
            async with asyncio.timeout(TIMEOUT_S * 3):
                results = await asyncio.gather(
                    *(
                        through(
                            in_auth if inbound == "auth" else in_open,
                            user,
                            host,
                            port,
                            payload(body),
                        )
                        for _, inbound, user, host, port, body, _ in CASES
                    )
                )
    return {case[0]: result for case, result in zip(CASES, results, strict=True)}


@pytest.mark.parametrize("kind", ["v2ray", "v2py"])
async def test_routing_matrix(kind: str, tmp_path: Path) -> None:
    assert len(CASES) >= 30
    assets = write_assets(tmp_path / "assets", geosite=SITES, geoip=IPS)
    got = await run_matrix(kind, assets)
    expected = {case[0]: case[-1] for case in CASES}
    assert got == expected


# --------------------------------------------------------------------------
# real-world templates (tests/vectors/configs/routing-*.json)

CONFIGS = Path(__file__).resolve().parent.parent / "vectors" / "configs"
SERVER_TEMPLATE = "routing-server-block-private.json"
CLIENT_TEMPLATE = "routing-client-china-direct.json"
USER_ID = "c9087962-37fd-4fbb-a1de-55afcb4edcad"
TEMPLATE_SITES = {
    "CN": ["domain:cn", "domain:baidu.com", "full:www.qq.com"],
    "CATEGORY-ADS-ALL": ["domain:doubleclick.net", "domain:ads.example"],
}
TEMPLATE_IPS = {"CN": ["36.0.0.0/8", "240e::/20"], "PRIVATE": list(PRIVATE_CIDRS)}


def template(name: str) -> dict[str, Any]:
    data = parse_json((CONFIGS / name).read_text(encoding="utf-8"), name)
    assert isinstance(data, dict)
    return data


async def test_templates_pass_v2ray_test_and_v2py_build(tmp_path: Path) -> None:
    assets = write_assets(tmp_path / "assets", geosite=TEMPLATE_SITES, geoip=TEMPLATE_IPS)
    env = {"V2RAY_LOCATION_ASSET": str(assets)}
    binary = require_v2ray()
    for name in (SERVER_TEMPLATE, CLIENT_TEMPLATE):
        proc = await asyncio.create_subprocess_exec(
            binary,
            "-test",
            "-config",
            str(CONFIGS / name),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, **env},
        )
        async with asyncio.timeout(TIMEOUT_S):
            out, _ = await proc.communicate()
        assert proc.returncode == 0, out
        loaded = load_config([(name, (CONFIGS / name).read_text())], {})
        Instance(loaded.config, env=env)
    # The server template needs no data file in v2py (geoip:private is built in).
    loaded = load_config([(SERVER_TEMPLATE, (CONFIGS / SERVER_TEMPLATE).read_text())], {})
    Instance(loaded.config, env={"V2RAY_LOCATION_ASSET": str(tmp_path / "empty")})


def _server(port: int, *, routed: bool) -> dict[str, Any]:
    cfg = template(SERVER_TEMPLATE)
    cfg["inbounds"][0]["port"] = port
    cfg["inbounds"][0]["listen"] = "127.0.0.1"
    if not routed:
        del cfg["routing"]
    return cfg


def _client(socks_port: int, server_port: int) -> dict[str, Any]:
    return {
        "log": {"loglevel": "warning"},
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": socks_port,
                "protocol": "socks",
                "settings": {"auth": "noauth"},
            }
        ],
        "outbounds": [
            {
                "protocol": "vmess",
                "settings": {
                    "vnext": [
                        {
                            "address": "127.0.0.1",
                            "port": server_port,
                            "users": [{"id": USER_ID, "alterId": 0}],
                        }
                    ]
                },
            }
        ],
    }


@contextlib.asynccontextmanager
async def _side(
    kind: str, cfg: dict[str, Any], port: int, env: dict[str, str]
) -> AsyncIterator[None]:
    if kind == "v2ray":
        async with run_v2ray(cfg, wait_tcp=[port], env=env):
            yield
    else:
        async with run_v2py(cfg, env=env):
            yield


@pytest.mark.parametrize("server_kind", ["v2py", "v2ray"])
@pytest.mark.parametrize("routed", [True, False])
async def test_server_template_refuses_private_targets(
    server_kind: str, routed: bool, tmp_path: Path
) -> None:
    """A client reaching 127.0.0.1 (or "localhost", resolved by IPOnDemand) through a
    server with the block rule is refused; without the rule the same chain connects."""
    client_kind = "v2ray" if server_kind == "v2py" else "v2py"
    if server_kind == "v2ray":
        assets = write_assets(tmp_path / "assets", geoip={"PRIVATE": list(PRIVATE_CIDRS)})
    else:
        assets = tmp_path / "no-assets"  # v2py: geoip:private without any file
    server_port, socks_port = free_ports(2)
    async with sinks(["echo-target"]) as sink_ports:
        target = sink_ports["echo-target"]
        env = {"V2RAY_LOCATION_ASSET": str(assets)}
        server = _side(server_kind, _server(server_port, routed=routed), server_port, env)
        client = _side(client_kind, _client(socks_port, server_port), socks_port, {})
        async with server, client, asyncio.timeout(TIMEOUT_S * 2):
            got = await asyncio.gather(
                through(socks_port, None, "127.0.0.1", target, RAW),
                through(socks_port, None, "localhost", target, RAW),
            )
    expected = BLOCKED if routed else "echo-target"
    assert got == [expected, expected]


CHINA_HOSTS = {"www.google.com": "142.250.1.1", "cnip.example": "36.1.1.1"}
HTTP_403 = (
    "HTTP/1.1 403 Forbidden\nConnection: close\nCache-Control: max-age=3600, public\n"
    "Content-Length: 0\n\n\n"
)
CHINA_CASES = [
    ("cn-site", "www.baidu.com", 80, "raw", "direct"),
    ("cn-tld", "a.b.cn", 80, "raw", "direct"),
    ("cn-full", "www.qq.com", 80, "raw", "direct"),
    ("listed-direct", "x.example-direct.com", 80, "raw", "direct"),
    ("ads", "ad.doubleclick.net", 80, "raw", HTTP_403),
    ("foreign-domain", "www.google.com", 80, "raw", "proxy"),
    # The catch-all network rule matches in the first pass: IPIfNonMatch never resolves.
    ("cn-ip-not-resolved", "cnip.example", 80, "raw", "proxy"),
    ("cn-ipv4", "36.2.2.2", 80, "raw", "direct"),
    ("cn-ipv6", "240e::1", 80, "raw", "direct"),
    ("foreign-ipv4", "8.8.8.8", 80, "raw", "proxy"),
    ("foreign-ipv6", "2001:4860::1", 80, "raw", "proxy"),
    ("private", "192.168.1.1", 80, "raw", "direct"),
    ("loopback", "127.0.0.1", 80, "raw", "direct"),
    ("sniffed-cn", "8.8.8.8", 443, "tls:www.baidu.com", "direct"),
    ("sniffed-foreign", "36.1.1.1", 80, "http:www.google.com", "proxy"),
]


def _china_client(socks_port: int, sink_ports: dict[str, int]) -> dict[str, Any]:
    cfg = template(CLIENT_TEMPLATE)
    cfg["inbounds"][0]["port"] = socks_port
    for outbound in cfg["outbounds"]:
        if outbound["tag"] in ("proxy", "direct"):
            # Each route ends at a local sink named after it.
            port = sink_ports[outbound["tag"]]
            outbound["protocol"] = "freedom"
            outbound["settings"] = {"redirect": f"127.0.0.1:{port}"}
    cfg["dns"]["hosts"] = CHINA_HOSTS
    return cfg


@pytest.mark.parametrize("kind", ["v2ray", "v2py"])
async def test_client_template_china_direct(kind: str, tmp_path: Path) -> None:
    assets = write_assets(tmp_path / "assets", geosite=TEMPLATE_SITES, geoip=TEMPLATE_IPS)
    (socks_port,) = free_ports(1)
    async with sinks(["proxy", "direct"]) as sink_ports:
        cfg = _china_client(socks_port, sink_ports)
        async with _side(kind, cfg, socks_port, {"V2RAY_LOCATION_ASSET": str(assets)}):
            async with asyncio.timeout(TIMEOUT_S * 2):
                got = await asyncio.gather(
                    *(
                        through(socks_port, None, host, port, payload(body))
                        for _, host, port, body, _ in CHINA_CASES
                    )
                )
    assert dict(zip((c[0] for c in CHINA_CASES), got, strict=True)) == {
        c[0]: c[-1] for c in CHINA_CASES
    }
