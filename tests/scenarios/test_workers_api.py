"""The gRPC API with ``v2py run --workers 2`` (``app/commander/fanout.py``): a call that
lands on either worker acts on both.

* Counters: 40 connections spread over both workers; GetStats gives the sum of the two
  workers' counters on every call, QueryStats with reset gives it once and leaves 0.
* AlterInbound: a VMess user added through the API is served by both workers (24
  connections, each worker held some), and once removed is refused by both.
* AddInbound / RemoveInbound: the added inbound listens in both workers, and is gone
  from both after removal; one on a Unix socket (which binds in one process only) is
  refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

import grpc
import pytest

from tests.support.configs import vmess_client_config
from tests.support.socks import socks5_connect
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_ports
from tests.support.workers import connections_per_worker, run_v2py_workers
from v2py.app.commander.proto import core_pb2 as cpb
from v2py.app.commander.proto import dokodemo_pb2 as dpb
from v2py.app.commander.proto import handler_command_pb2 as hpb
from v2py.app.commander.proto import net_pb2 as npb
from v2py.app.commander.proto import protocol_pb2 as ppb
from v2py.app.commander.proto import proxyman_pb2 as mpb
from v2py.app.commander.proto import stats_command_pb2 as spb
from v2py.app.commander.proto import vmess_pb2 as vpb
from v2py.app.commander.services import typed

ALICE = str(uuid.UUID(int=0xA11CE))
BOB = str(uuid.UUID(int=0xB0B))
TIMEOUT_S = 20.0
UPLINK = "inbound>>>vmess-in>>>traffic>>>uplink"


def server_config(api_port: int, vmess_port: int) -> dict[str, Any]:
    return {
        "log": {"loglevel": "warning"},
        "stats": {},
        "api": {"tag": "api", "services": ["HandlerService", "StatsService", "LoggerService"]},
        "policy": {"system": {"statsInboundUplink": True, "statsInboundDownlink": True}},
        "inbounds": [
            {"tag": "vmess-in", "listen": "127.0.0.1", "port": vmess_port, "protocol": "vmess",
             "settings": {"clients": [{"id": ALICE, "email": "alice@x"}]}},
            {"tag": "api", "listen": "127.0.0.1", "port": api_port,
             "protocol": "dokodemo-door", "settings": {"address": "127.0.0.1"}},
        ],
        "outbounds": [{"protocol": "freedom", "tag": "direct"}],
        "routing": {"rules": [{"type": "field", "inboundTag": ["api"], "outboundTag": "api"}]},
    }  # fmt: skip


async def exchange(socks_port: int, echo: tuple[str, int], payload: bytes) -> None:
    reader, writer = await socks5_connect(socks_port, *echo)
    try:
        writer.write(payload)
        await writer.drain()
        assert await reader.readexactly(len(payload)) == payload
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def listeners(port: int) -> int:
    """Listening TCP sockets on ``port`` (one per worker that bound it)."""
    count = 0
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(name) as table:
            for line in list(table)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    count += 1
    return count


async def test_api_calls_act_on_every_worker(echo_server: tuple[str, int]) -> None:
    api_port, vmess_port, socks_alice, socks_bob, added_port = free_ports(5)
    async with (
        run_v2py_workers(server_config(api_port, vmess_port)) as handle,
        run_v2py(vmess_client_config(socks_alice, vmess_port, ALICE, 0, "aes-128-gcm")),
        run_v2py(vmess_client_config(socks_bob, vmess_port, BOB, 0, "aes-128-gcm")),
        grpc.aio.insecure_channel(f"127.0.0.1:{api_port}") as channel,
        asyncio.timeout(TIMEOUT_S * 3),
    ):

        def method(service: str, name: str, response: Any) -> Any:
            return channel.unary_unary(
                f"/v2ray.core.app.{service}/{name}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response.FromString,
            )

        get = method("stats.command.StatsService", "GetStats", spb.GetStatsResponse)
        query = method("stats.command.StatsService", "QueryStats", spb.QueryStatsResponse)
        alter = method("proxyman.command.HandlerService", "AlterInbound", hpb.AlterInboundResponse)
        add = method("proxyman.command.HandlerService", "AddInbound", hpb.AddInboundResponse)
        remove = method(
            "proxyman.command.HandlerService", "RemoveInbound", hpb.RemoveInboundResponse
        )

        # Counters: 40 held connections (both workers hold some), 1,000 bytes each.
        held = [await socks5_connect(socks_alice, *echo_server) for _ in range(40)]
        for _, writer in held:
            writer.write(bytes(1000))
        for reader, _ in held:
            await reader.readexactly(1000)
        per_worker = connections_per_worker(handle, {vmess_port})
        assert all(n > 0 for n in per_worker.values()), per_worker
        for _, writer in held:
            writer.close()
        for _ in range(8):  # each call lands on either worker
            got = await get(spb.GetStatsRequest(name=UPLINK))
            assert got.stat.value >= 40_000  # (+ the VMess request headers)
        total = got.stat.value
        found = await query(spb.QueryStatsRequest(pattern="vmess-in>>>traffic>>>up", reset=True))
        assert [(s.name, s.value) for s in found.stat] == [(UPLINK, total)]
        assert (await get(spb.GetStatsRequest(name=UPLINK))).stat.value == 0
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await get(spb.GetStatsRequest(name="no>>>such"))
        assert (info.value.details() or "").endswith("no>>>such not found.")

        # AlterInbound: Bob is served by both workers once added, refused by both once removed.
        account = typed(vpb.Account(id=BOB))
        add_bob = typed(hpb.AddUserOperation(user=ppb.User(email="bob@x", account=account)))
        await alter(hpb.AlterInboundRequest(tag="vmess-in", operation=add_bob))
        bobs = [await socks5_connect(socks_bob, *echo_server) for _ in range(24)]
        for _, writer in bobs:
            writer.write(b"hi")
        for reader, _ in bobs:
            assert await reader.readexactly(2) == b"hi"
        assert all(n > 0 for n in connections_per_worker(handle, {vmess_port}).values())
        for _, writer in bobs:
            writer.close()
        remove_bob = typed(hpb.RemoveUserOperation(email="bob@x"))
        await alter(hpb.AlterInboundRequest(tag="vmess-in", operation=remove_bob))
        for _ in range(8):
            with pytest.raises((asyncio.IncompleteReadError, ConnectionError, TimeoutError)):
                async with asyncio.timeout(2):
                    await exchange(socks_bob, echo_server, b"no")

        # AddInbound / RemoveInbound: a dokodemo-door inbound in both workers, then in none.
        handler = mpb.ReceiverConfig(
            port_range=npb.PortRange(From=added_port, To=added_port),
            listen=npb.IPOrDomain(ip=bytes([127, 0, 0, 1])),
        )
        door = dpb.Config(
            address=npb.IPOrDomain(ip=bytes([127, 0, 0, 1])),
            port=echo_server[1],
            networks=[npb.TCP],
        )
        await add(
            hpb.AddInboundRequest(
                inbound=cpb.InboundHandlerConfig(
                    tag="added", receiver_settings=typed(handler), proxy_settings=typed(door)
                )
            )
        )
        assert listeners(added_port) == 2
        await remove(hpb.RemoveInboundRequest(tag="added"))
        assert listeners(added_port) == 0
        # A Unix socket binds in one process only: refused, in every worker.
        on_path = mpb.ReceiverConfig(
            port_range=npb.PortRange(From=0, To=0),
            listen=npb.IPOrDomain(domain=str(handle.workdir / "added.sock")),
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await add(
                hpb.AddInboundRequest(
                    inbound=cpb.InboundHandlerConfig(
                        tag="on-path", receiver_settings=typed(on_path), proxy_settings=typed(door)
                    )
                )
            )
        assert "cannot be added with --workers" in (info.value.details() or "")
        assert not (handle.workdir / "added.sock").exists()
