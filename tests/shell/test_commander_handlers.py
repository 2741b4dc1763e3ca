"""HandlerService at run time, through gRPC and the routed ``api`` inbound as panels
reach it: AddInbound / RemoveInbound of a VMess inbound, AddOutbound / RemoveOutbound
behind a routing rule, a storm of AlterInbound calls while traffic flows, and traffic
counters over mKCP. Server and clients are v2py instances in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from tests.support.configs import vmess_client_config
from tests.support.socks import socks5_connect
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_ports
from v2py.app.commander.proto import core_pb2 as cpb
from v2py.app.commander.proto import freedom_pb2 as fpb
from v2py.app.commander.proto import handler_command_pb2 as hpb
from v2py.app.commander.proto import net_pb2 as npb
from v2py.app.commander.proto import protocol_pb2 as ppb
from v2py.app.commander.proto import proxyman_pb2 as mpb
from v2py.app.commander.proto import stats_command_pb2 as spb
from v2py.app.commander.proto import vmess_inbound_pb2 as vipb
from v2py.app.commander.proto import vmess_outbound_pb2 as vopb
from v2py.app.commander.proto import vmess_pb2 as vpb
from v2py.app.commander.services import typed

ALICE = str(uuid.UUID(int=0xA11CE))
PAYLOAD = bytes(range(256)) * 16  # 4 KiB
LOOPBACK = bytes([127, 0, 0, 1])

Call = Callable[[Any], Awaitable[Any]]


def server_config(api_port: int, *, inbounds: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    """API wiring as 4.34 users write it, every counter on, blackhole as the default
    outbound; inbound ``socks-late`` is routed to outbound ``late`` (added later)."""
    return {
        "log": {"loglevel": "warning"},
        "api": {"tag": "api", "services": ["HandlerService", "StatsService"]},
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
            *inbounds,
        ],
        "outbounds": [
            {"tag": "blocked", "protocol": "blackhole"},
            {"tag": "direct", "protocol": "freedom"},
        ],
        "routing": {
            "rules": [
                {"type": "field", "inboundTag": ["api"], "outboundTag": "api"},
                {"type": "field", "inboundTag": ["socks-late"], "outboundTag": "late"},
                {"type": "field", "inboundTag": ["vm", "added", "kcp-in"], "outboundTag": "direct"},
            ]
        },
    }


class Api:
    """Unary-unary callables on one gRPC channel (4.34's package names)."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel

    def method(self, service: str, name: str, response: Any) -> Call:
        return self._channel.unary_unary(  # type: ignore[no-any-return]
            f"/v2ray.core.app.{service}/{name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )

    def handler(self, name: str) -> Call:
        return self.method("proxyman.command.HandlerService", name, getattr(hpb, f"{name}Response"))

    async def stat(self, name: str) -> int:
        get = self.method("stats.command.StatsService", "GetStats", spb.GetStatsResponse)
        async with asyncio.timeout(5):
            response = await get(spb.GetStatsRequest(name=name))
        return int(response.stat.value)


@contextlib.asynccontextmanager
async def api_channel(port: int) -> AsyncIterator[Api]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield Api(channel)


async def rpc_error(call: Awaitable[Any]) -> str:
    """The details of the gRPC error ``call`` ends with (it must fail)."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async with asyncio.timeout(5):
            await call
    assert info.value.code() == grpc.StatusCode.UNKNOWN
    return info.value.details() or ""


async def echo(socks_port: int, target: tuple[str, int], payload: bytes = PAYLOAD) -> bytes:
    """What comes back from the echo server through socks (b"" when closed early)."""
    async with asyncio.timeout(10):
        reader, writer = await socks5_connect(socks_port, *target)
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


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll ``check`` (the server side finishes its relay just after the client)."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


def vmess_user(uid: str, email: str, alter_id: int = 0) -> ppb.User:
    return ppb.User(email=email, account=typed(vpb.Account(id=uid, alter_id=alter_id)))


def add_inbound_request(tag: str, port: int, users: list[ppb.User]) -> hpb.AddInboundRequest:
    receiver = mpb.ReceiverConfig(
        port_range=npb.PortRange(From=port, To=port), listen=npb.IPOrDomain(ip=LOOPBACK)
    )
    return hpb.AddInboundRequest(
        inbound=cpb.InboundHandlerConfig(
            tag=tag,
            receiver_settings=typed(receiver),
            proxy_settings=typed(vipb.Config(user=users)),
        )
    )


# -- AddInbound / RemoveInbound -----------------------------------------------------------


async def test_add_inbound_serves_and_remove_inbound_closes(
    echo_server: tuple[str, int],
) -> None:
    api_port, vmess_port, socks_port = free_ports(3)
    async with (
        run_v2py(server_config(api_port)) as server,
        run_v2py(vmess_client_config(socks_port, vmess_port, ALICE, 0, "aes-128-gcm")),
        api_channel(api_port) as api,
    ):
        add, remove = api.handler("AddInbound"), api.handler("RemoveInbound")
        request = add_inbound_request("added", vmess_port, [vmess_user(ALICE, "alice")])
        async with asyncio.timeout(5):
            await add(request)
        assert server.inbounds.get("added") is not None
        assert await echo(socks_port, echo_server) == PAYLOAD
        # counters of the new handler exist from AddInbound on and count its traffic
        await until(lambda: _equals(api.stat("user>>>alice>>>traffic>>>downlink"), len(PAYLOAD)))
        assert await api.stat("inbound>>>added>>>traffic>>>uplink") > len(PAYLOAD)

        # the same tag again: Xray's words (4.34 replaced the handler, leaking its port)
        assert await rpc_error(add(request)) == "existing tag found: added"
        # a port in use: the listener's error, and nothing is kept
        taken = add_inbound_request("other", vmess_port, [vmess_user(ALICE, "alice")])
        assert "address already in use" in (await rpc_error(add(taken))).lower()
        assert server.inbounds.get("other") is None

        async with asyncio.timeout(5):
            await remove(hpb.RemoveInboundRequest(tag="added"))
        assert server.inbounds.get("added") is None
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", vmess_port)
        details = await rpc_error(remove(hpb.RemoveInboundRequest(tag="added")))
        assert details == "not enough information for making a decision"

        # and the port can be served again by a new AddInbound
        async with asyncio.timeout(5):
            await add(request)
        assert await echo(socks_port, echo_server) == PAYLOAD


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


# -- AddOutbound / RemoveOutbound ---------------------------------------------------------


async def test_add_outbound_takes_routed_traffic_and_remove_outbound_stops_it(
    echo_server: tuple[str, int],
) -> None:
    api_port, socks_port = free_ports(2)
    socks = {
        "tag": "socks-late",
        "listen": "127.0.0.1",
        "port": socks_port,
        "protocol": "socks",
        "settings": {"auth": "noauth"},
    }
    async with (
        run_v2py(server_config(api_port, inbounds=(socks,))) as server,
        api_channel(api_port) as api,
    ):
        add, remove = api.handler("AddOutbound"), api.handler("RemoveOutbound")
        # the rule names "late", which does not exist yet: the default (blackhole) gets it
        assert await echo(socks_port, echo_server) == b""
        request = hpb.AddOutboundRequest(
            outbound=cpb.OutboundHandlerConfig(tag="late", proxy_settings=typed(fpb.Config()))
        )
        async with asyncio.timeout(5):
            await add(request)
        assert await echo(socks_port, echo_server) == PAYLOAD
        await until(lambda: _equals(api.stat("outbound>>>late>>>traffic>>>downlink"), len(PAYLOAD)))
        assert await api.stat("outbound>>>late>>>traffic>>>uplink") == len(PAYLOAD)
        assert await rpc_error(add(request)) == "existing tag found: late"

        async with asyncio.timeout(5):
            await remove(hpb.RemoveOutboundRequest(tag="late"))
        assert server.outbounds.get("late") is None
        assert await echo(socks_port, echo_server) == b""
        # an unknown tag is not an error (4.34); counters stay after removal
        async with asyncio.timeout(5):
            await remove(hpb.RemoveOutboundRequest(tag="late"))
        assert await api.stat("outbound>>>late>>>traffic>>>uplink") == len(PAYLOAD)


# -- many AlterInbound calls while traffic flows ------------------------------------------

STORM_USERS = 4_700  # 4,700 adds + 4,699 removes + 784 refused calls: over 10,000 calls
STORM_CALLERS = 8
STREAM_CHUNK = 16 * 1024
STREAM_CHUNKS = 128  # 2 MiB each way on Alice's connection during the storm


async def _stream_through(socks_port: int, target: tuple[str, int], stop: asyncio.Event) -> int:
    """Echo chunks until ``stop`` and at least STREAM_CHUNKS; returns bytes echoed
    (each compared)."""
    reader, writer = await socks5_connect(socks_port, *target)
    sent = 0
    try:
        i = 0
        while i < STREAM_CHUNKS or not stop.is_set():
            chunk = hashlib.sha256(i.to_bytes(4, "big")).digest() * (STREAM_CHUNK // 32)
            writer.write(chunk)
            await writer.drain()
            assert await reader.readexactly(len(chunk)) == chunk
            sent += len(chunk)
            i += 1
        return sent
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_alter_inbound_storm_while_traffic_flows(echo_server: tuple[str, int]) -> None:
    api_port, vmess_port, socks_alice, socks_kept, socks_gone = free_ports(5)
    vm = {
        "tag": "vm",
        "listen": "127.0.0.1",
        "port": vmess_port,
        "protocol": "vmess",
        "settings": {"clients": [{"id": ALICE, "email": "alice"}]},
    }
    uids = [str(uuid.UUID(int=0xB0B0000 + i)) for i in range(STORM_USERS)]
    kept = STORM_USERS - 1  # added, never removed: connects afterwards
    async with (
        run_v2py(server_config(api_port, inbounds=(vm,))),
        run_v2py(vmess_client_config(socks_alice, vmess_port, ALICE, 0, "aes-128-gcm")),
        run_v2py(vmess_client_config(socks_kept, vmess_port, uids[kept], 4, "aes-128-gcm")),
        run_v2py(vmess_client_config(socks_gone, vmess_port, uids[0], 0, "aes-128-gcm")),
        api_channel(api_port) as api,
    ):
        alter = api.handler("AlterInbound")

        def op(i: int, *, remove: bool = False) -> hpb.AlterInboundRequest:
            message: Any = (
                hpb.RemoveUserOperation(email=f"u{i}@x")
                if remove
                else hpb.AddUserOperation(user=vmess_user(uids[i], f"u{i}@x", 4 * (i % 2)))
            )
            return hpb.AlterInboundRequest(tag="vm", operation=typed(message))

        errors: list[str] = []
        calls = 0

        async def caller(first: int) -> None:
            nonlocal calls
            for i in range(first, STORM_USERS, STORM_CALLERS):
                await alter(op(i))
                calls += 1
                if i % 12 == 0:  # refused calls, with 4.34's words
                    errors.append(await rpc_error(alter(op(i))))
                    errors.append(await rpc_error(alter(op(i + 100_000, remove=True))))
                    calls += 2
                if i != kept:
                    await alter(op(i, remove=True))
                    calls += 1

        stop = asyncio.Event()
        # an open connection of Alice's carries data during the whole storm
        streaming = asyncio.create_task(_stream_through(socks_alice, echo_server, stop))
        started = time.perf_counter()
        async with asyncio.timeout(180):
            await asyncio.gather(*(caller(k) for k in range(STORM_CALLERS)))
        elapsed = time.perf_counter() - started
        stop.set()
        async with asyncio.timeout(30):
            moved = await streaming
        assert calls >= 10_000
        print(f"\n{calls} AlterInbound calls in {elapsed:.2f} s ({calls / elapsed:.0f}/s)")
        assert len(errors) == 2 * len(range(0, STORM_USERS, 12))
        assert errors[0] == "v2ray.com/core/proxy/vmess/inbound: User u0@x already exists."
        assert errors[1] == "v2ray.com/core/proxy/vmess/inbound: User u100000@x not found."
        assert all(e.endswith((" already exists.", " not found.")) for e in errors)

        # new connections: Alice and the kept user get in, nothing was lost on the way
        assert await echo(socks_alice, echo_server) == PAYLOAD
        assert await echo(socks_kept, echo_server) == PAYLOAD
        refused_echo = b""
        with contextlib.suppress(TimeoutError):  # closed, or drained as a probe
            async with asyncio.timeout(1):
                refused_echo = await echo(socks_gone, echo_server)
        assert refused_echo == b""  # u0 was added and removed
        total = moved + len(PAYLOAD)
        await until(lambda: _equals(api.stat("user>>>alice>>>traffic>>>downlink"), total))
        assert await api.stat("user>>>alice>>>traffic>>>uplink") == total
        assert await api.stat(f"user>>>u{kept}@x>>>traffic>>>uplink") == len(PAYLOAD)


# -- mKCP -------------------------------------------------------------------------------


async def test_counters_over_mkcp(echo_server: tuple[str, int]) -> None:
    (api_port, socks_port), (kcp_port,) = free_ports(2), free_ports(1, socket.SOCK_DGRAM)
    kcp_in = {
        "tag": "kcp-in",
        "listen": "127.0.0.1",
        "port": kcp_port,
        "protocol": "vmess",
        "settings": {"clients": [{"id": ALICE, "email": "alice", "alterId": 4}]},
        "streamSettings": {"network": "kcp"},
    }
    client = vmess_client_config(socks_port, kcp_port, ALICE, 4, "aes-128-gcm")
    client["outbounds"][0]["streamSettings"] = {"network": "kcp"}
    payload = PAYLOAD * 16  # 64 KiB
    async with (
        run_v2py(server_config(api_port, inbounds=(kcp_in,))),
        run_v2py(client),
        api_channel(api_port) as api,
    ):
        assert await echo(socks_port, echo_server, payload) == payload
        await until(lambda: _equals(api.stat("user>>>alice>>>traffic>>>downlink"), len(payload)))
        assert await api.stat("user>>>alice>>>traffic>>>uplink") == len(payload)
        assert await api.stat("outbound>>>direct>>>traffic>>>uplink") == len(payload)
        # the inbound counts the VMess stream inside mKCP: the payload and its framing
        up = await api.stat("inbound>>>kcp-in>>>traffic>>>uplink")
        down = await api.stat("inbound>>>kcp-in>>>traffic>>>downlink")
        assert len(payload) < up < len(payload) * 1.05
        assert len(payload) < down < len(payload) * 1.05


async def test_add_outbound_with_mux_carries_sessions_over_one_connection(
    echo_server: tuple[str, int],
) -> None:
    """AddOutbound with ``multiplexSettings`` (a panel's "mux on"): a VMess outbound whose
    connections go through Mux.Cool; a concurrency outside 1..1024 is refused as 4.34's
    outbound handler refuses it, enabled or not."""
    api_port, socks_port, vmess_port = free_ports(3)
    socks = {
        "tag": "socks-late",
        "listen": "127.0.0.1",
        "port": socks_port,
        "protocol": "socks",
        "settings": {"auth": "noauth"},
    }
    vm = {
        "tag": "vm",
        "listen": "127.0.0.1",
        "port": vmess_port,
        "protocol": "vmess",
        "settings": {"clients": [{"id": ALICE, "alterId": 0, "email": "alice@mux"}]},
    }
    async with (
        run_v2py(server_config(api_port, inbounds=(socks, vm))) as server,
        api_channel(api_port) as api,
    ):
        add = api.handler("AddOutbound")
        receiver = ppb.ServerEndpoint(
            address=npb.IPOrDomain(ip=LOOPBACK),
            port=vmess_port,
            user=[vmess_user(ALICE, "alice@mux")],
        )

        def request(concurrency: int, *, enabled: bool = True) -> hpb.AddOutboundRequest:
            sender = mpb.SenderConfig(
                multiplex_settings=mpb.MultiplexingConfig(enabled=enabled, concurrency=concurrency)
            )
            return hpb.AddOutboundRequest(
                outbound=cpb.OutboundHandlerConfig(
                    tag="late",
                    sender_settings=typed(sender),
                    proxy_settings=typed(vopb.Config(Receiver=[receiver])),
                )
            )

        refused = "v2ray.com/core/app/proxyman/outbound: invalid mux concurrency: "
        assert await rpc_error(add(request(0))) == refused + "0"
        assert await rpc_error(add(request(1025, enabled=False))) == refused + "1025"
        async with asyncio.timeout(5):
            await add(request(4))
        handler = server.outbounds.get("late")
        assert type(handler).__name__ == "MuxClientOutbound"
        results = await asyncio.gather(*(echo(socks_port, echo_server) for _ in range(3)))
        assert results == [PAYLOAD] * 3
        assert len(handler.workers) == 1  # type: ignore[union-attr]
