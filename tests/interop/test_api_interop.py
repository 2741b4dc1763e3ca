"""The gRPC API against real 4.34 tools: ``v2ctl api`` reads v2py's counters, a real
v2ray VMess client connects as a user added through AlterInbound (Xray names) and is
refused at once after RemoveUser, and ``v2py api`` prints what ``v2ctl api`` prints.

v2py runs in-process, reached as 4.34 users wire it: a dokodemo-door inbound tagged
``api`` routed to the ``api`` outbound (a one-rule router stands in for ``routing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from tests.support.configs import vmess_client_config
from tests.support.socks import socks5_connect
from tests.support.v2ray import free_ports, require_v2ray, run_v2ray
from v2py.api_cli import main as api_main
from v2py.app.commander.proto import handler_command_pb2 as hpb
from v2py.app.commander.proto import protocol_pb2 as ppb
from v2py.app.commander.proto import vmess_pb2 as vpb
from v2py.app.commander.services import typed
from v2py.app.session import Session
from v2py.config.load import load_config
from v2py.instance import Instance

pytestmark = pytest.mark.interop

ALICE = str(uuid.UUID(int=0xA11CE))
PAYLOAD = bytes(range(256)) * 4  # 1000+ bytes


class ApiRoute:
    """``{"inboundTag": ["api"], "outboundTag": "api"}``."""

    async def pick_route(self, session: Session) -> str | None:
        return "api" if session.inbound_tag == "api" else None


def server_config(api_port: int, vmess_port: int) -> dict[str, Any]:
    return {
        "api": {"tag": "api", "services": ["HandlerService", "StatsService", "LoggerService"]},
        "stats": {},
        "policy": {
            "levels": {"0": {"statsUserUplink": True, "statsUserDownlink": True}},
            "system": {
                "statsInboundUplink": True,
                "statsInboundDownlink": True,
                "statsOutboundUplink": True,
                "statsOutboundDownlink": True,
            },
        },
        "inbounds": [
            {
                "tag": "api",
                "listen": "127.0.0.1",
                "port": api_port,
                "protocol": "dokodemo-door",
                "settings": {"address": "127.0.0.1"},
            },
            {
                "tag": "vmess-in",
                "listen": "127.0.0.1",
                "port": vmess_port,
                "protocol": "vmess",
                "settings": {"clients": [{"id": ALICE, "email": "Alice@Example.com"}]},
            },
        ],
        "outbounds": [{"protocol": "freedom", "tag": "direct"}],
    }


@contextlib.asynccontextmanager
async def run_api_server(api_port: int, vmess_port: int) -> AsyncIterator[Instance]:
    loaded = load_config([("api.json", json.dumps(server_config(api_port, vmess_port)))], {})
    instance = Instance(loaded.config, env={}, router=ApiRoute())
    await instance.start()
    try:
        yield instance
    finally:
        await instance.close()


async def v2ctl(*args: str) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        "v2ctl", "api", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(10):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out, err


async def echo_through(socks_port: int, echo: tuple[str, int]) -> None:
    async with asyncio.timeout(10):
        reader, writer = await socks5_connect(socks_port, *echo)
        writer.write(PAYLOAD)
        await writer.drain()
        assert await reader.readexactly(len(PAYLOAD)) == PAYLOAD
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _stats(text: bytes) -> dict[str, int]:
    out: dict[str, int] = {}
    for block in text.decode().split("stat: <")[1:]:
        lines = [line.strip() for line in block.splitlines()]
        name = next(line for line in lines if line.startswith("name:"))[7:-1]
        values = [int(line[7:]) for line in lines if line.startswith("value:")]
        out[name] = values[0] if values else 0
    return out


async def test_v2ctl_reads_v2py_counters(echo_server: tuple[str, int]) -> None:
    require_v2ray()
    api_port, vmess_port, socks_port = free_ports(3)
    async with (
        run_api_server(api_port, vmess_port),
        run_v2ray(
            vmess_client_config(socks_port, vmess_port, ALICE, 0, "aes-128-gcm"),
            wait_tcp=[socks_port],
        ),
    ):
        await echo_through(socks_port, echo_server)
        await asyncio.sleep(0.3)  # the server side's relay ends after the client closes
        code, out, err = await v2ctl(
            f"--server=127.0.0.1:{api_port}", "StatsService.QueryStats", 'pattern: "" reset: false'
        )
        assert code == 0, err
        assert out.endswith(b">\n\n")
        stats = _stats(out)
        assert stats["user>>>Alice@Example.com>>>traffic>>>uplink"] == len(PAYLOAD)
        assert stats["user>>>Alice@Example.com>>>traffic>>>downlink"] == len(PAYLOAD)
        assert stats["outbound>>>direct>>>traffic>>>uplink"] == len(PAYLOAD)
        assert stats["inbound>>>vmess-in>>>traffic>>>uplink"] > len(PAYLOAD)
        assert "inbound>>>api>>>traffic>>>uplink" in stats
        # reset returns the old values, then they read 0
        code, out, _ = await v2ctl(
            f"--server=127.0.0.1:{api_port}",
            "StatsService.QueryStats",
            'pattern: "user>>>" reset: true',
        )
        assert _stats(out)["user>>>Alice@Example.com>>>traffic>>>uplink"] == len(PAYLOAD)
        code, out, _ = await v2ctl(
            f"--server=127.0.0.1:{api_port}",
            "StatsService.GetStats",
            'name: "user>>>Alice@Example.com>>>traffic>>>uplink"',
        )
        assert out == b'stat: <\n  name: "user>>>Alice@Example.com>>>traffic>>>uplink"\n>\n\n'
        code, out, err = await v2ctl(
            f"--server=127.0.0.1:{api_port}", "StatsService.GetStats", 'name: "nope"'
        )
        assert code == 255
        assert err == (
            b"v2ray.com/core/infra/control: failed to call service StatsService.GetStats > "
            b"rpc error: code = Unknown desc = "
            b"v2ray.com/core/app/stats/command: nope not found.\n\n"
        )
        code, out, _ = await v2ctl(
            f"--server=127.0.0.1:{api_port}", "LoggerService.RestartLogger", ""
        )
        assert (code, out) == (0, b"\n")
        code, out, _ = await v2ctl(f"--server=127.0.0.1:{api_port}", "StatsService.GetSysStats", "")
        assert code == 0 and b"Uptime" in out or b"NumGoroutine" in out


def _user_op(uid: str, email: str, alter_id: int) -> Any:
    account = vpb.Account(id=uid, alter_id=alter_id)
    user = ppb.User(email=email, account=typed(account, prefix="xray."))
    return typed(hpb.AddUserOperation(user=user), prefix="xray.")


@pytest.mark.parametrize("alter_id", [0, 4], ids=["aead", "legacy"])
async def test_user_added_by_api_connects_and_removed_is_refused(
    echo_server: tuple[str, int], alter_id: int
) -> None:
    require_v2ray()
    api_port, vmess_port, socks_alice, socks_bob = free_ports(4)
    bob = str(uuid.uuid4())
    security = "aes-128-gcm" if alter_id == 0 else "aes-128-cfb"
    async with (
        run_api_server(api_port, vmess_port),
        run_v2ray(
            vmess_client_config(socks_alice, vmess_port, ALICE, 0, "aes-128-gcm"),
            wait_tcp=[socks_alice],
        ),
        run_v2ray(
            vmess_client_config(socks_bob, vmess_port, bob, alter_id, security),
            wait_tcp=[socks_bob],
        ),
        grpc.aio.insecure_channel(f"127.0.0.1:{api_port}") as channel,
    ):

        def method(name: str, response: Any) -> Any:
            return channel.unary_unary(
                f"/xray.app.proxyman.command.HandlerService/{name}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response.FromString,
            )

        alter = method("AlterInbound", hpb.AlterInboundResponse)
        async with asyncio.timeout(10):
            await alter(
                hpb.AlterInboundRequest(tag="vmess-in", operation=_user_op(bob, "bob@x", alter_id))
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await alter(
                    hpb.AlterInboundRequest(tag="vmess-in", operation=_user_op(bob, "BOB@x", 0))
                )
            assert "User BOB@x already exists." in (info.value.details() or "")
        await echo_through(socks_bob, echo_server)
        # an open connection of Alice's goes on across Bob's removal
        reader, writer = await socks5_connect(socks_alice, *echo_server)
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"
        remove = typed(hpb.RemoveUserOperation(email="Bob@X"), prefix="xray.")
        async with asyncio.timeout(10):
            await alter(hpb.AlterInboundRequest(tag="vmess-in", operation=remove))
        refused: list[asyncio.StreamWriter] = []
        with pytest.raises((asyncio.IncompleteReadError, ConnectionError, TimeoutError)):
            async with asyncio.timeout(3):
                r2, w2 = await socks5_connect(socks_bob, *echo_server)
                refused.append(w2)
                w2.write(b"y")
                await r2.readexactly(1)
        for w in refused:
            w.close()
            with contextlib.suppress(OSError):
                await w.wait_closed()
        writer.write(b"z")
        assert await reader.readexactly(1) == b"z"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_v2py_api_prints_what_v2ctl_prints() -> None:
    """v2py api against the real v2ray 4.34: the same bytes as v2ctl."""
    require_v2ray()
    (api_port,) = free_ports(1)
    config = server_config(api_port, 1)
    config["inbounds"] = config["inbounds"][:1]
    config["routing"] = {"rules": [{"type": "field", "inboundTag": ["api"], "outboundTag": "api"}]}
    async with run_v2ray(config, wait_tcp=[api_port]):
        for args in (
            ("StatsService.GetStats", 'name: "outbound>>>direct>>>traffic>>>uplink"'),
            ("StatsService.GetStats", 'name: "nope"'),
            # one match only: 4.34 lists several counters in random (Go map) order
            ("StatsService.QueryStats", 'pattern: "direct>>>traffic>>>up" reset: false'),
            ("StatsService.QueryStats", "bogus: 1"),
            ("StatsService.Nope", ""),
            ("LoggerService.RestartLogger", ""),
        ):
            want = await v2ctl(f"--server=127.0.0.1:{api_port}", *args)
            out, err = io.StringIO(), io.StringIO()
            code = await asyncio.to_thread(
                api_main, [f"--server=127.0.0.1:{api_port}", *args], stdout=out, stderr=err
            )
            assert (code, out.getvalue().encode(), err.getvalue().encode()) == want, args
