"""A 4.34-era panel's server config (the x-ui / 3x-ui template: ``api`` + ``stats`` +
a dokodemo-door inbound tagged ``api`` + the routing rule ``inboundTag api -> api``)
run from a config FILE by ``v2py run``, driven as the panels drive it: the real
``v2ctl api`` reads the counters, ``v2py api`` prints the same bytes, a user added
through HandlerService connects from a real v2ray 4.34 client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.shell.test_commander_cli import require_v2ctl
from tests.support.configs import vmess_client_config
from tests.support.socks import socks5_connect
from tests.support.v2ray import free_ports, run_v2ray, wait_tcp_port
from v2py.app.commander.proto import handler_command_pb2 as hpb
from v2py.app.commander.proto import protocol_pb2 as ppb
from v2py.app.commander.proto import vmess_pb2 as vpb
from v2py.app.commander.services import typed

pytestmark = pytest.mark.interop

ALICE = "0b1c3a4e-5f67-4890-a1b2-c3d4e5f60718"
PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes
POLL_S = 0.05


def panel_config(api_port: int, vmess_port: int) -> dict[str, Any]:
    """3x-ui's template (x-ui's plus user and outbound counters), VMess over TCP."""
    return {
        "log": {"access": "none", "error": "", "loglevel": "warning"},
        "api": {"tag": "api", "services": ["HandlerService", "LoggerService", "StatsService"]},
        "inbounds": [
            {"tag": "api", "listen": "127.0.0.1", "port": api_port,
             "protocol": "dokodemo-door", "settings": {"address": "127.0.0.1"}},
            {"tag": f"inbound-{vmess_port}", "listen": "127.0.0.1", "port": vmess_port,
             "protocol": "vmess",
             "settings": {"clients": [{"id": ALICE, "email": "alice", "alterId": 0}],
                          "disableInsecureEncryption": False},
             "streamSettings": {"network": "tcp", "security": "none",
                                "tcpSettings": {"header": {"type": "none"}}},
             "sniffing": {"enabled": True, "destOverride": ["http", "tls"]}},
        ],
        "outbounds": [
            {"tag": "direct", "protocol": "freedom", "settings": {}},
            {"tag": "blocked", "protocol": "blackhole", "settings": {}},
        ],
        "policy": {
            "levels": {"0": {"statsUserDownlink": True, "statsUserUplink": True}},
            "system": {"statsInboundDownlink": True, "statsInboundUplink": True,
                       "statsOutboundDownlink": True, "statsOutboundUplink": True},
        },
        "routing": {
            "domainStrategy": "AsIs",
            "rules": [
                {"type": "field", "inboundTag": ["api"], "outboundTag": "api"},
                {"type": "field", "outboundTag": "blocked", "ip": ["geoip:private"]},
                {"type": "field", "outboundTag": "blocked", "protocol": ["bittorrent"]},
            ],
        },
        "stats": {},
    }  # fmt: skip


@contextlib.asynccontextmanager
async def v2py_run(config: dict[str, Any], tmp: Path, ports: list[int]) -> AsyncIterator[None]:
    """``v2py run -c FILE`` as a subprocess; waits for ``ports``; SIGTERM -> exit 0."""
    cfg = tmp / "config.json"
    cfg.write_text(json.dumps(config, indent=1), encoding="utf-8")
    log = tmp / "v2py.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "v2py", "run", "-c", str(cfg),
            stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=tmp,
        )  # fmt: skip
    try:
        for port in ports:
            await wait_tcp_port(port, timeout=20)
        yield
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                code = await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
    assert code == 0, log.read_text(errors="replace")


async def _exec(*argv: str) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(20):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out, err


def stats_of(text: bytes) -> dict[str, int]:
    """``name -> value`` from QueryStats text (the regex panels like v2-ui use)."""
    import re

    pairs = re.findall(rb'stat: <\s*name: "([^"]+)"\s*(?:value: (\d+)\s*)?>', text)
    return {name.decode(): int(value or 0) for name, value in pairs}


async def echo(socks_port: int, host: str, port: int, payload: bytes) -> bytes:
    """Send ``payload`` to the echo server through socks; what came back (b"" when
    the connection was closed at once, as the blackhole does)."""
    async with asyncio.timeout(10):
        reader, writer = await socks5_connect(socks_port, host, port)
        try:
            writer.write(payload)
            await writer.drain()
            got = b""
            with contextlib.suppress(ConnectionError):
                while len(got) < len(payload) and (chunk := await reader.read(65536)):
                    got += chunk
            return got
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def test_panel_config_from_file(echo_server: tuple[str, int], tmp_path: Path) -> None:
    v2ctl = require_v2ctl()
    api_port, vmess_port, socks_alice, socks_bob = free_ports(4)
    server = f"--server=127.0.0.1:{api_port}"
    inbound = f"inbound-{vmess_port}"
    bob = str(uuid.uuid4())
    async with (
        v2py_run(panel_config(api_port, vmess_port), tmp_path, [api_port, vmess_port]),
        run_v2ray(
            vmess_client_config(socks_alice, vmess_port, ALICE, 0, "aes-128-gcm"),
            wait_tcp=[socks_alice],
        ),
        run_v2ray(
            vmess_client_config(socks_bob, vmess_port, bob, 0, "chacha20-poly1305"),
            wait_tcp=[socks_bob],
        ),
    ):
        # a name goes out direct (the template's geoip:private rule matches IPs only)
        assert await echo(socks_alice, "localhost", echo_server[1], PAYLOAD) == PAYLOAD

        # the real v2ctl reads the counters (polled: the server's relay ends just after)
        want = {
            "user>>>alice>>>traffic>>>uplink": len(PAYLOAD),
            "user>>>alice>>>traffic>>>downlink": len(PAYLOAD),
            "outbound>>>direct>>>traffic>>>uplink": len(PAYLOAD),
            "outbound>>>direct>>>traffic>>>downlink": len(PAYLOAD),
        }
        stats: dict[str, int] = {}
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                while not all(stats.get(k) == v for k, v in want.items()):
                    await asyncio.sleep(POLL_S)
                    code, out, err = await _exec(
                        v2ctl, "api", server, "StatsService.QueryStats", 'pattern: ""'
                    )
                    assert code == 0, err
                    stats = stats_of(out)
        assert {k: stats.get(k) for k in want} == want, stats
        assert stats[f"inbound>>>{inbound}>>>traffic>>>uplink"] > len(PAYLOAD)
        assert stats[f"inbound>>>{inbound}>>>traffic>>>downlink"] > len(PAYLOAD)
        assert "outbound>>>blocked>>>traffic>>>uplink" in stats
        assert "inbound>>>api>>>traffic>>>uplink" in stats
        assert not any(name.startswith("outbound>>>api>>>") for name in stats)
        # a private IP is blocked by the template's rule
        assert await echo(socks_alice, "127.0.0.1", echo_server[1], b"blocked?") == b""

        # v2py api prints what v2ctl prints (the user counters do not move now)
        for args in (
            [server, "StatsService.QueryStats", 'pattern: "user>>>" reset: false'],
            [server, "StatsService.GetStats", 'name: "outbound>>>direct>>>traffic>>>uplink"'],
            [server, "StatsService.GetStats", 'name: "user>>>bob>>>traffic>>>uplink"'],
            [server, "LoggerService.RestartLogger", ""],
        ):
            assert await _exec(sys.executable, "-m", "v2py", "api", *args) == await _exec(
                v2ctl, "api", *args
            ), args

        # Bob is not a user yet; added through HandlerService (4.34's names), he connects
        with contextlib.suppress(TimeoutError):  # refused: closed, or drained (anti-probe)
            async with asyncio.timeout(1):
                assert await echo(socks_bob, "localhost", echo_server[1], b"early") == b""
        async with grpc.aio.insecure_channel(f"127.0.0.1:{api_port}") as channel:
            alter = channel.unary_unary(
                "/v2ray.core.app.proxyman.command.HandlerService/AlterInbound",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=hpb.AlterInboundResponse.FromString,
            )
            account = typed(vpb.Account(id=bob, alter_id=0))
            op = typed(hpb.AddUserOperation(user=ppb.User(email="bob", account=account)))
            async with asyncio.timeout(10):
                await alter(hpb.AlterInboundRequest(tag=inbound, operation=op))
        assert await echo(socks_bob, "localhost", echo_server[1], PAYLOAD) == PAYLOAD
        async with asyncio.timeout(10):
            while True:
                code, out, _ = await _exec(
                    v2ctl, "api", server, "StatsService.GetStats",
                    'name: "user>>>bob>>>traffic>>>downlink" reset: true',
                )  # fmt: skip
                if code == 0 and stats_of(out).get("user>>>bob>>>traffic>>>downlink"):
                    break
                await asyncio.sleep(POLL_S)
        assert stats_of(out) == {"user>>>bob>>>traffic>>>downlink": len(PAYLOAD)}
