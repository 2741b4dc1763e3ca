"""Interop: protobuf configs made by 4.34's ``v2ctl config`` mean in v2py what their
JSON means, and route under ``v2py run -format pb`` as under ``v2ray -format pb``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import Handler, tagged_servers
from tests.support.socks import socks5_connect
from tests.support.tls_certs import TestCA
from tests.support.v2ray import free_ports, require_v2ray, wait_tcp_port
from v2py.config.load import load_config
from v2py.config.model import Config
from v2py.config.protobuf import config_json
from v2py.config.routing import DomainKind, DomainRule

pytestmark = pytest.mark.interop

TIMEOUT_S = 20.0
UUID = "b831381d-6324-4d53-ad4f-8cda48b30811"
PROBE = b"\x00" * 8
PRIVATE = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]


def v2ctl() -> str:
    require_v2ray()
    found = shutil.which("v2ctl")
    if found is None:
        pytest.skip("v2ctl not installed")
    return found


def to_pb(config: dict[str, Any], tmp_path: Path, name: str = "c") -> Path:
    """``v2ctl config c.json > c.pb``."""
    source = tmp_path / f"{name}.json"
    source.write_text(json.dumps(config))
    done = subprocess.run(
        [v2ctl(), "config", str(source)], capture_output=True, timeout=TIMEOUT_S, check=True
    )
    target = tmp_path / f"{name}.pb"
    target.write_bytes(done.stdout)
    return target


def _normalized(config: Config) -> Config:
    """``dns.hosts`` in one order: a pb file keeps 4.34's order of the JSON keys as
    written ("plain.example" before "full:x.example"), v2py's reading of them writes
    every key with its prefix. Among full and domain hosts the order means nothing
    (4.34's matcher group, and v2py's hosts, answer full matches, then domain ones);
    keyword and regexp hosts keep theirs."""
    if config.dns is None:
        return config
    by_name = [
        isinstance(h.match, DomainRule) and h.match.kind in _BY_NAME for h in config.dns.hosts
    ]
    order = sorted(
        range(len(by_name)),
        key=lambda i: (by_name[i], repr(config.dns.hosts[i]) if by_name[i] else str(i).zfill(9)),
    )
    hosts = [config.dns.hosts[i] for i in order]
    return config.model_copy(update={"dns": config.dns.model_copy(update={"hosts": tuple(hosts)})})


_BY_NAME = (DomainKind.FULL, DomainKind.DOMAIN)


def model_of_json(config: dict[str, Any]) -> Config:
    return _normalized(load_config([("x", json.dumps(config))], {}).config)


def model_of_pb(path: Path) -> Config:
    return _normalized(load_config([("x", json.dumps(config_json(path.read_bytes())))], {}).config)


def _server_config() -> dict[str, Any]:
    return {
        "inbounds": [
            {
                "tag": "vm",
                "listen": "127.0.0.1",
                "port": 10086,
                "protocol": "vmess",
                "settings": {"clients": [{"id": UUID, "level": 0, "email": "a@x"}]},
            }
        ],
        "outbounds": [
            {"tag": "direct", "protocol": "freedom", "settings": {}},
            {"tag": "block", "protocol": "blackhole", "settings": {}},
        ],
        "routing": {"rules": [{"type": "field", "ip": PRIVATE, "outboundTag": "block"}]},
    }


def _china_client() -> dict[str, Any]:
    return {
        "log": {"loglevel": "info", "access": "none"},
        "inbounds": [
            {
                "tag": "socks",
                "listen": "127.0.0.1",
                "port": 1080,
                "protocol": "socks",
                "settings": {"auth": "noauth", "udp": True},
                "sniffing": {"enabled": True, "destOverride": ["http", "tls"]},
            },
            {
                "tag": "http",
                "listen": "127.0.0.1",
                "port": 1081,
                "protocol": "http",
                "settings": {"accounts": [{"user": "u", "pass": "p"}]},
            },
        ],
        "outbounds": [
            {
                "tag": "proxy",
                "protocol": "vmess",
                "settings": {
                    "vnext": [
                        {
                            "address": "example.com",
                            "port": 443,
                            "users": [{"id": UUID, "security": "aes-128-gcm"}],
                        }
                    ]
                },
                "mux": {"enabled": True, "concurrency": 8},
            },
            {"tag": "direct", "protocol": "freedom", "settings": {"domainStrategy": "UseIP"}},
            {"tag": "block", "protocol": "blackhole", "settings": {"response": {"type": "http"}}},
        ],
        "routing": {
            "domainStrategy": "IPIfNonMatch",
            "rules": [
                {
                    "type": "field",
                    "domain": ["ads.example", "regexp:^ad\\."],
                    "outboundTag": "block",
                },
                {
                    "type": "field",
                    "domain": ["domain:cn", "full:www.example.cn", "keyword:baidu"],
                    "outboundTag": "direct",
                },
                {
                    "type": "field",
                    "ip": ["223.5.5.0/24", "2400:3200::/32"],
                    "outboundTag": "direct",
                },
                {
                    "type": "field",
                    "port": "22,6000-7000",
                    "network": "tcp",
                    "outboundTag": "direct",
                },
                {
                    "type": "field",
                    "source": ["192.168.1.0/24"],
                    "sourcePort": "1000-2000",
                    "user": ["a@x"],
                    "inboundTag": ["http"],
                    "protocol": ["bittorrent"],
                    "outboundTag": "block",
                },
            ],
        },
    }


def _vmess_ws_tls(ca: TestCA) -> dict[str, Any]:
    pair = ca.issue("ws.test")
    return {
        "inbounds": [
            {
                "tag": "wss",
                "listen": "127.0.0.1",
                "port": 8443,
                "protocol": "vmess",
                "settings": {"clients": [{"id": UUID}]},
                "streamSettings": {
                    "network": "ws",
                    "security": "tls",
                    "wsSettings": {"path": "/ray", "headers": {"X-A": "b"}},
                    "tlsSettings": {
                        "serverName": "ws.test",
                        "alpn": ["http/1.1"],
                        "certificates": [pair.inline()],
                    },
                },
            }
        ],
        "outbounds": [
            {
                "protocol": "vmess",
                "settings": {
                    "vnext": [{"address": "127.0.0.1", "port": 8443, "users": [{"id": UUID}]}]
                },
                "streamSettings": {
                    "network": "ws",
                    "security": "tls",
                    "wsSettings": {"path": "/ray"},
                    "tlsSettings": {"serverName": "ws.test", "allowInsecure": True},
                },
            }
        ],
    }


def _transports(ca: TestCA) -> dict[str, Any]:
    """mKCP (header, seed, buffers), QUIC (security, key, header), a domain socket and
    HTTP/2 with TLS, as inbounds and outbounds."""

    def vmess_in(tag: str, port: int, stream: dict[str, Any]) -> dict[str, Any]:
        return {"tag": tag, "listen": "127.0.0.1", "port": port, "protocol": "vmess",
                "settings": {"clients": [{"id": UUID}]}, "streamSettings": stream}  # fmt: skip

    def vmess_out(tag: str, port: int, stream: dict[str, Any]) -> dict[str, Any]:
        vnext = [{"address": "127.0.0.1", "port": port, "users": [{"id": UUID}]}]
        return {"tag": tag, "protocol": "vmess", "settings": {"vnext": vnext},
                "streamSettings": stream}  # fmt: skip

    kcp = {"network": "kcp", "kcpSettings": {
        "mtu": 1200, "tti": 20, "uplinkCapacity": 12, "downlinkCapacity": 50,
        "congestion": True, "readBufferSize": 4, "writeBufferSize": 0,
        "header": {"type": "wechat-video"}, "seed": "s33d"}}  # fmt: skip
    quic = {"network": "quic", "quicSettings": {
        "security": "chacha20-poly1305", "key": "k", "header": {"type": "dtls"}}}  # fmt: skip
    ds = {"network": "domainsocket", "dsSettings": {"path": "/tmp/x.sock", "abstract": True,
                                                    "padding": True}}  # fmt: skip
    kcp["sockopt"] = {"mark": 255, "tcpFastOpen": False, "tproxy": "tproxy"}
    http_header = {"type": "http",
                   "request": {"version": "1.0", "method": "POST", "path": ["/a", "/b"],
                               "headers": {"Host": ["x.test", "y.test"], "Accept": "*/*"}},
                   "response": {"status": "404", "reason": "Not Found",
                                "headers": {"Server": "nginx"}}}  # fmt: skip
    plain_http = {"type": "http"}
    quic["sockopt"] = {"tcpFastOpen": True, "tproxy": "off", "acceptProxyProtocol": False}
    h2 = {"network": "http", "security": "tls",
          "httpSettings": {"host": ["a.test", "b.test"], "path": "/h2"},
          "tlsSettings": {"certificates": [ca.issue("a.test").inline()]}}  # fmt: skip
    h2_out = {"network": "h2", "security": "tls", "httpSettings": {"path": "/h2"},
              "tlsSettings": {"serverName": "a.test", "allowInsecure": True}}  # fmt: skip
    return {
        "inbounds": [
            vmess_in("kcp-in", 9001, kcp),
            vmess_in("quic-in", 9002, quic),
            vmess_in("ds-in", 9003, ds),
            vmess_in("h2-in", 9004, h2),
            vmess_in("http-in", 9005, {"tcpSettings": {"header": http_header}}),
            vmess_in("http-default-in", 9006, {"tcpSettings": {"header": plain_http}}),
        ],
        "outbounds": [
            vmess_out("kcp-out", 9001, {"network": "mkcp", "kcpSettings": {"seed": "s33d"}}),
            vmess_out("quic-out", 9002, {"network": "quic", "quicSettings": {"security": "none"}}),
            vmess_out("ds-out", 9003, {"network": "ds", "dsSettings": {"path": "/tmp/x.sock"}}),
            vmess_out("h2-out", 9004, h2_out),
        ],
    }


def _proxies(ca: TestCA) -> dict[str, Any]:
    """socks, http and mtproto handlers both ways, with accounts and users."""
    return {
        "inbounds": [
            {"tag": "socks-in", "port": 1081, "listen": "127.0.0.1", "protocol": "socks",
             "settings": {"auth": "password", "accounts": [{"user": "u", "pass": "p"}],
                          "udp": True, "ip": "127.0.0.1", "userLevel": 1}},
            {"tag": "http-in", "port": 1082, "listen": "127.0.0.1", "protocol": "http",
             "settings": {"accounts": [{"user": "u", "pass": "p"}], "allowTransparent": True,
                          "timeout": 30, "userLevel": 1}},
            {"tag": "tg-in", "port": 1083, "listen": "127.0.0.1", "protocol": "mtproto",
             "settings": {"users": [{"email": "t@x", "level": 1,
                                     "secret": "b0cbcef5a486d9636472ac27f8e11a9d"}]}},
        ],
        "outbounds": [
            {"tag": "socks-out", "protocol": "socks", "settings": {"servers": [
                {"address": "127.0.0.1", "port": 1081,
                 "users": [{"user": "u", "pass": "p", "level": 1}]}]}},
            {"tag": "http-out", "protocol": "http", "settings": {"servers": [
                {"address": "127.0.0.1", "port": 1082, "users": [{"user": "u", "pass": "p"}]}]}},
            {"tag": "tg-out", "protocol": "mtproto", "settings": {}},
        ],
    }  # fmt: skip


def _dns_hosts() -> dict[str, Any]:
    return {
        "dns": {
            "servers": [
                "1.1.1.1",
                {
                    "address": "8.8.8.8",
                    "port": 5353,
                    "domains": ["domain:example.com", "full:a.example", "keyword:k"],
                    "expectIps": ["10.0.0.0/8"],
                },
                "localhost",
            ],
            "hosts": {
                "domain:test.local": "127.0.0.1",
                "full:x.example": "::1",
                "plain.example": "y.example",
            },
            "clientIp": "1.2.3.4",
            "tag": "dns-in",
        },
        "inbounds": [],
        "outbounds": [{"protocol": "freedom"}],
    }


def _policy_stats_api() -> dict[str, Any]:
    return {
        "api": {"tag": "api", "services": ["HandlerService", "StatsService", "LoggerService"]},
        "stats": {},
        "policy": {
            "levels": {
                "0": {"statsUserUplink": True, "statsUserDownlink": True},
                "1": {"handshake": 2, "connIdle": 60, "uplinkOnly": 1, "bufferSize": 16},
            },
            "system": {"statsInboundUplink": True, "statsOutboundDownlink": True},
        },
        "inbounds": [
            {
                "tag": "api",
                "listen": "127.0.0.1",
                "port": 10085,
                "protocol": "dokodemo-door",
                "settings": {"address": "127.0.0.1"},
            }
        ],
        "outbounds": [{"tag": "direct", "protocol": "freedom"}],
        "routing": {"rules": [{"type": "field", "inboundTag": ["api"], "outboundTag": "api"}]},
    }


CONFIGS = {
    "server-private-block": lambda ca: _server_config(),
    "china-client": lambda ca: _china_client(),
    "vmess-ws-tls": _vmess_ws_tls,
    "transports": _transports,
    "proxies": _proxies,
    # a transparent proxy's inbound: followRedirect, no address (both or neither in pb)
    "follow-redirect": lambda ca: {
        "inbounds": [
            {
                "tag": "tp",
                "port": 12345,
                "protocol": "dokodemo-door",
                "settings": {"network": "tcp,udp", "followRedirect": True},
            }
        ],
        "outbounds": [{"protocol": "freedom"}],
    },  # fmt: skip
    "dns-hosts": lambda ca: _dns_hosts(),
    "policy-stats-api": lambda ca: _policy_stats_api(),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_pb_from_v2ctl_loads_as_its_json(name: str, tmp_path: Path) -> None:
    config = CONFIGS[name](TestCA())
    assert model_of_pb(to_pb(config, tmp_path)) == model_of_json(config)


# -- running it ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _running(args: list[str], port: int, workdir: Path) -> AsyncIterator[None]:
    log = (workdir / f"log-{port}").open("wb")
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=log, stderr=asyncio.subprocess.STDOUT, cwd=workdir
    )
    log.close()
    try:
        try:
            await wait_tcp_port(port, timeout=TIMEOUT_S)
        except TimeoutError:
            raise RuntimeError((workdir / f"log-{port}").read_text()) from None
        yield
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _answer(tag: str) -> Handler:
    """Answers with its tag."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Read the client's bytes first: closing with them unread would reset the
        # connection, and a proxy may then drop the answer.
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
            async with asyncio.timeout(TIMEOUT_S):
                await reader.readexactly(len(PROBE))
                writer.write(tag.encode())
                await writer.drain()
                await reader.read()  # the client closes first
        writer.close()

    return handle


async def _which(socks_port: int, host: str, port: int) -> str:
    async with asyncio.timeout(TIMEOUT_S):
        try:
            reader, writer = await socks5_connect(socks_port, host, port)
        except (ConnectionError, asyncio.IncompleteReadError):
            return "<blocked>"
        writer.write(PROBE)
        with contextlib.suppress(OSError):
            await writer.drain()
        try:
            data = await reader.read(64)
        except OSError:  # a reset: nothing came through
            data = b""
        writer.close()
        return data.decode() or "<blocked>"


def _routing_config(socks_port: int, sinks: dict[str, int]) -> dict[str, Any]:
    def to(tag: str) -> dict[str, Any]:
        return {
            "tag": tag,
            "protocol": "freedom",
            "settings": {"redirect": f"127.0.0.1:{sinks[tag]}"},
        }

    return {
        "inbounds": [
            {
                "tag": "socks",
                "listen": "127.0.0.1",
                "port": socks_port,
                "protocol": "socks",
                "settings": {"auth": "noauth"},
            }
        ],
        "outbounds": [
            to("default"),
            to("sub"),
            to("full"),
            to("ip"),
            to("port"),
            {"tag": "block", "protocol": "blackhole"},
        ],
        "routing": {
            "rules": [
                {"type": "field", "ip": PRIVATE, "outboundTag": "block"},
                {"type": "field", "domain": ["domain:sub.example"], "outboundTag": "sub"},
                {"type": "field", "domain": ["full:exact.example"], "outboundTag": "full"},
                {"type": "field", "ip": ["203.0.113.0/24"], "outboundTag": "ip"},
                {"type": "field", "port": "8000-8100", "outboundTag": "port"},
            ]
        },
    }


DESTINATIONS = [
    ("a.sub.example", 80),
    ("exact.example", 80),
    ("x.exact.example", 80),
    ("203.0.113.9", 80),
    ("198.51.100.1", 8050),
    ("198.51.100.1", 80),
    ("10.1.2.3", 80),
]


async def test_same_pb_routes_alike_under_v2ray_and_v2py(tmp_path: Path) -> None:
    binary = require_v2ray()
    async with tagged_servers(["default", "sub", "full", "ip", "port"], _answer) as sinks:
        answers: dict[str, list[str]] = {}
        for kind in ("v2ray", "v2py"):
            (socks_port,) = free_ports(1)
            pb = to_pb(_routing_config(socks_port, sinks), tmp_path, kind)
            if kind == "v2ray":
                args = [binary, "-format", "pb", "-config", str(pb)]
            else:
                args = [sys.executable, "-m", "v2py", "run", "-format", "pb", "-c", str(pb)]
            async with _running(args, socks_port, tmp_path):
                answers[kind] = [await _which(socks_port, h, p) for h, p in DESTINATIONS]
    assert answers["v2py"] == answers["v2ray"]
    assert answers["v2py"] == ["sub", "full", "default", "ip", "port", "default", "<blocked>"]


def _v2py(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "v2py", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=cwd,
    )


def test_v2py_test_accepts_pb_spellings(tmp_path: Path) -> None:
    pb = to_pb(
        _routing_config(1080, {t: 1 for t in ("default", "sub", "full", "ip", "port")}), tmp_path
    )
    plain = tmp_path / "config.bin"
    plain.write_bytes(pb.read_bytes())
    for args in (
        ["test", "-format", "pb", "-c", str(pb)],
        ["test", "-c", str(pb)],  # the extension decides
        ["test", "-format", "protobuf", "-config", str(plain)],
        # 4.34 reads only the first file of a protobuf config
        ["test", "-format", "pb", "-c", str(pb), "-c", str(tmp_path / "missing.json")],
    ):
        done = _v2py(*args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert "Configuration OK." in done.stdout
    # a .json first file is JSON whatever -format says, as in 4.34
    done = _v2py("test", "-format", "pb", "-c", str(tmp_path / "c.json"), cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    # from standard input, as 4.34 reads it there
    for argv in (
        [sys.executable, "-m", "v2py", "test", "-format", "pb", "-c", "stdin:"],
        [require_v2ray(), "-test", "-format", "pb", "-config", "stdin:"],
    ):
        piped = subprocess.run(
            argv, input=pb.read_bytes(), capture_output=True, timeout=TIMEOUT_S, cwd=tmp_path
        )
        assert piped.returncode == 0, (argv, piped.stdout, piped.stderr)
        assert b"Configuration OK." in piped.stdout


def _error_lines(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if "config error" in line]


def test_refused_pb_exits_23_with_one_line(tmp_path: Path) -> None:
    binary = require_v2ray()
    config = _routing_config(1080, {t: 1 for t in ("default", "sub", "full", "ip", "port")})
    # A header with no value: 4.34's JSON builds it, its JSON form reads as absent.
    header = {"type": "http", "request": {"headers": {"X-Empty": []}}}
    config["inbounds"][0]["streamSettings"] = {"network": "tcp", "tcpSettings": {"header": header}}
    pb = to_pb(config, tmp_path)
    done = _v2py("test", "-format", "pb", "-c", str(pb), cwd=tmp_path)
    assert done.returncode == 23
    (line,) = _error_lines(done.stdout)
    assert "inbound[0].receiver_settings" in line and "request.header[0].value" in line
    # not protobuf at all: 4.34 also exits 23 ("failed to read config files")
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\xff\xff\xff")
    theirs = subprocess.run(
        [binary, "-test", "-config", str(garbage)], capture_output=True, timeout=TIMEOUT_S
    )
    assert theirs.returncode == 23
    done = _v2py("test", "-c", str(garbage), cwd=tmp_path)
    assert done.returncode == 23
    (line,) = _error_lines(done.stdout)
    assert "not a protobuf v2ray.core.Config" in line
