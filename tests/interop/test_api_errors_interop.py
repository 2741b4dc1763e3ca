"""Bad API input: the same refused requests and malformed protobuf bytes to v2ray 4.34
and to v2py give the same gRPC status and details (panels match on these words); the
requests that make 4.34 panic and exit give v2py an error and it serves on."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from tests.support.v2py import run_side
from tests.support.v2ray import free_ports, require_v2ray
from v2py.app.commander.proto import core_pb2 as cpb
from v2py.app.commander.proto import handler_command_pb2 as hpb
from v2py.app.commander.proto import net_pb2 as npb
from v2py.app.commander.proto import protocol_pb2 as ppb
from v2py.app.commander.proto import proxyman_pb2 as mpb
from v2py.app.commander.proto import stats_command_pb2 as spb
from v2py.app.commander.proto import trojan_pb2 as jpb
from v2py.app.commander.proto import typed_message_pb2 as tpb
from v2py.app.commander.proto import vless_pb2 as lpb
from v2py.app.commander.proto import vmess_pb2 as vpb
from v2py.app.commander.services import typed

pytestmark = pytest.mark.interop

ALICE = str(uuid.UUID(int=0xA11CE))
HANDLER = "/v2ray.core.app.proxyman.command.HandlerService/"
STATS = "/v2ray.core.app.stats.command.StatsService/"


def config(
    api_port: int, vmess_port: int, vless_port: int | None = None, trojan_port: int | None = None
) -> dict[str, Any]:
    return {
        "log": {"loglevel": "warning"},
        "api": {"tag": "api", "services": ["HandlerService", "StatsService"]},
        "stats": {},
        "inbounds": [
            {"tag": "api", "listen": "127.0.0.1", "port": api_port,
             "protocol": "dokodemo-door", "settings": {"address": "127.0.0.1"}},
            {"tag": "vm", "listen": "127.0.0.1", "port": vmess_port, "protocol": "vmess",
             "settings": {"clients": [{"id": ALICE, "email": "alice@x"}]}},
            {"tag": "vl", "listen": "127.0.0.1", "port": vless_port or vmess_port + 1,
             "protocol": "vless",
             "settings": {"clients": [{"id": ALICE, "email": "alice@x"}], "decryption": "none"}},
            {"tag": "tj", "listen": "127.0.0.1", "port": trojan_port or vmess_port + 2,
             "protocol": "trojan",
             "settings": {"clients": [{"password": ALICE, "email": "alice@x"}]}},
        ],
        "outbounds": [{"tag": "direct", "protocol": "freedom"}],
        "routing": {"rules": [{"type": "field", "inboundTag": ["api"], "outboundTag": "api"}]},
    }  # fmt: skip


def _alter(tag: str, op: tpb.TypedMessage) -> bytes:
    return hpb.AlterInboundRequest(tag=tag, operation=op).SerializeToString()


def _add_user(email: str, account: tpb.TypedMessage | None) -> tpb.TypedMessage:
    user = ppb.User(email=email) if account is None else ppb.User(email=email, account=account)
    return typed(hpb.AddUserOperation(user=user))


_VMESS = typed(vpb.Account(id=ALICE))
_VLESS = typed(lpb.Account(id=ALICE))
#: (name, method path, request bytes): each is refused by 4.34 without crashing.
REFUSED: list[tuple[str, str, bytes]] = [
    ("duplicate email", HANDLER + "AlterInbound", _alter("vm", _add_user("ALICE@x", _VMESS))),
    ("remove unknown email", HANDLER + "AlterInbound",
     _alter("vm", typed(hpb.RemoveUserOperation(email="bob@x")))),
    ("remove empty email", HANDLER + "AlterInbound",
     _alter("vm", typed(hpb.RemoveUserOperation(email="")))),
    ("unknown inbound tag", HANDLER + "AlterInbound",
     _alter("nope", typed(hpb.RemoveUserOperation(email="bob@x")))),
    ("not a user manager", HANDLER + "AlterInbound",
     _alter("api", typed(hpb.RemoveUserOperation(email="bob@x")))),
    ("unknown op type", HANDLER + "AlterInbound",
     _alter("vm", tpb.TypedMessage(type="no.such.Type", value=b""))),
    ("wrong op message", HANDLER + "AlterInbound",
     _alter("vm", typed(hpb.RemoveInboundRequest(tag="x")))),
    ("no account", HANDLER + "AlterInbound", _alter("vm", _add_user("bob@x", None))),
    ("bad uuid", HANDLER + "AlterInbound",
     _alter("vm", _add_user("bob@x", typed(vpb.Account(id="not-a-uuid"))))),
    ("vless duplicate email", HANDLER + "AlterInbound",
     _alter("vl", _add_user("ALICE@x", _VLESS))),
    ("vless remove unknown email", HANDLER + "AlterInbound",
     _alter("vl", typed(hpb.RemoveUserOperation(email="bob@x")))),
    ("vless remove empty email", HANDLER + "AlterInbound",
     _alter("vl", typed(hpb.RemoveUserOperation(email="")))),
    ("vless no account", HANDLER + "AlterInbound", _alter("vl", _add_user("bob@x", None))),
    ("vless bad uuid", HANDLER + "AlterInbound",
     _alter("vl", _add_user("bob@x", typed(lpb.Account(id="not-a-uuid"))))),
    ("trojan duplicate email", HANDLER + "AlterInbound",
     _alter("tj", _add_user("ALICE@x", typed(jpb.Account(password="x"))))),
    ("trojan remove unknown email", HANDLER + "AlterInbound",
     _alter("tj", typed(hpb.RemoveUserOperation(email="bob@x")))),
    ("trojan remove empty email", HANDLER + "AlterInbound",
     _alter("tj", typed(hpb.RemoveUserOperation(email="")))),
    ("AlterOutbound", HANDLER + "AlterOutbound",
     hpb.AlterOutboundRequest(tag="direct", operation=typed(hpb.RemoveUserOperation(email="a")))
     .SerializeToString()),
    ("RemoveInbound unknown", HANDLER + "RemoveInbound",
     hpb.RemoveInboundRequest(tag="nope").SerializeToString()),
    ("RemoveInbound empty", HANDLER + "RemoveInbound", b""),
    ("RemoveOutbound empty", HANDLER + "RemoveOutbound", b""),
    ("GetStats unknown", STATS + "GetStats", spb.GetStatsRequest(name="nope").SerializeToString()),
    ("unregistered service", "/v2ray.core.app.log.command.LoggerService/RestartLogger", b""),
    ("unknown method", STATS + "Nope", b""),
    ("unknown service", "/nope.Service/Get", b""),
]  # fmt: skip


async def _call(channel: grpc.aio.Channel, path: str, request: bytes) -> tuple[str, str]:
    """(status code name, details) of a call expected to fail."""
    call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async with asyncio.timeout(5):
            await call(request)
    return info.value.code().name, info.value.details() or ""


@contextlib.asynccontextmanager
async def served(
    kind: str, vless_port: int | None = None, trojan_port: int | None = None
) -> AsyncIterator[grpc.aio.Channel]:
    api_port, vmess_port = free_ports(2)
    async with (
        run_side(kind, config(api_port, vmess_port, vless_port, trojan_port), api_port),
        grpc.aio.insecure_channel(f"127.0.0.1:{api_port}") as channel,
    ):
        yield channel


MALFORMED = [b"\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x12\x05ab", bytes(range(256))]
UNMARSHAL = "grpc: error unmarshalling request: "


async def test_refusals_match_4_34() -> None:
    require_v2ray()
    answers: dict[str, list[tuple[str, str]]] = {}
    malformed: dict[str, set[str]] = {}
    for kind in ("v2ray", "v2py"):
        async with served(kind) as channel:
            answers[kind] = [await _call(channel, path, req) for _, path, req in REFUSED]
            # malformed protobuf: INTERNAL with grpc-go's prefix (the cause is Go's own text)
            malformed[kind] = {
                code if details.startswith(UNMARSHAL) else details
                for method in ("AddInbound", "AlterInbound", "AddOutbound", "RemoveInbound")
                for data in MALFORMED
                for code, details in [await _call(channel, HANDLER + method, data)]
            }
    for (name, _, _), want, got in zip(REFUSED, answers["v2ray"], answers["v2py"], strict=True):
        assert got == want, name
    assert answers["v2py"][0] == (
        "UNKNOWN",
        "v2ray.com/core/proxy/vmess/inbound: User ALICE@x already exists.",
    )
    assert malformed["v2py"] == malformed["v2ray"] == {"INTERNAL"}


#: Requests that make 4.34 panic (the process exits), and malformed bytes.
CRASHERS: list[tuple[str, str, bytes, str]] = [
    ("AddInbound without receiver", HANDLER + "AddInbound",
     hpb.AddInboundRequest(inbound=cpb.InboundHandlerConfig(tag="x")).SerializeToString(),
     "v2ray.com/core: not a ReceiverConfig"),
    ("AddInbound without proxy", HANDLER + "AddInbound",
     hpb.AddInboundRequest(inbound=cpb.InboundHandlerConfig(
         tag="x", receiver_settings=typed(mpb.ReceiverConfig(
             port_range=npb.PortRange(From=1, To=1))))).SerializeToString(),
     "v2ray.com/core: missing proxy settings"),
    ("AddOutbound without proxy", HANDLER + "AddOutbound",
     hpb.AddOutboundRequest(outbound=cpb.OutboundHandlerConfig(tag="x")).SerializeToString(),
     "v2ray.com/core: missing proxy settings"),
    ("AddUser with a VLESS account", HANDLER + "AlterInbound",
     _alter("vm", _add_user("v@x", tpb.TypedMessage(type="v2ray.core.proxy.vless.Account"))),
     "v2ray.com/core/proxy/vmess/inbound: v2ray.core.proxy.vless.Account is not a VMess account"),
    ("AlterInbound without operation", HANDLER + "AlterInbound",
     hpb.AlterInboundRequest(tag="vm").SerializeToString(),
     "v2ray.com/core/app/proxyman/command: unknown operation > Serial: Unknown type: "),
    ("garbage account bytes", HANDLER + "AlterInbound",
     _alter("vm", _add_user("g@x", tpb.TypedMessage(type="v2ray.core.proxy.vmess.Account",
                                                    value=b"\xff\xff\xff"))),
     "v2ray.com/core/app/proxyman/command: failed to parse user > "
     "proto: cannot parse invalid wire-format data"),
]  # fmt: skip


async def test_v2py_refuses_what_crashes_4_34() -> None:
    async with served("v2py") as channel:
        for name, path, request, details in CRASHERS:
            assert await _call(channel, path, request) == ("UNKNOWN", details), name
        # still serving, and nothing was added
        code, details = await _call(channel, STATS + "GetStats", b"\x0a\x01x")
        assert (code, details) == ("UNKNOWN", "v2ray.com/core/app/stats/command: x not found.")
        assert await _call(channel, HANDLER + "RemoveInbound", b"\x0a\x01x") == (
            "UNKNOWN",
            "not enough information for making a decision",
        )


async def _answer(channel: grpc.aio.Channel, path: str, request: bytes) -> tuple[str, str]:
    """(status code name, details) of a call that may succeed ("OK", "")."""
    call = channel.unary_unary(path, request_serializer=None, response_deserializer=None)
    try:
        async with asyncio.timeout(5):
            await call(request)
    except grpc.aio.AioRpcError as exc:
        return exc.code().name, exc.details() or ""
    return "OK", ""


async def _echo_through(kind: str, port: int, secret: str, echo: int) -> bytes:
    """What a VLESS (id) or Trojan (password) connection to an echo server gets back
    for b"ping"."""
    from v2py.protocol import trojan, vless

    want = 6 if kind == "vless" else 4  # (VLESS answers with a 2-byte header)
    if kind == "vless":
        header = vless.encode_request(uuid.UUID(secret).bytes, vless.COMMAND_TCP, "127.0.0.1", echo)
    else:
        header = trojan.encode_request(trojan.password_key(secret), 1, "127.0.0.1", echo)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(header + b"ping")
        await writer.drain()
        got = b""
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(5):
                while len(got) < want and (chunk := await reader.read(100)):
                    got += chunk
        return got
    finally:
        writer.close()


@pytest.mark.parametrize("protocol", ["vless", "trojan"])
async def test_users_through_the_api_as_4_34(protocol: str) -> None:
    """AddUser / RemoveUser on a VLESS or Trojan inbound: the same answers as 4.34 for a
    sequence (add, the same email in another case, remove in another case, remove
    again), and the added user connects until removed."""
    from tests.support.forward import echo_server

    require_v2ray()
    bob = str(uuid.UUID(int=0xB0B))
    tag = "vl" if protocol == "vless" else "tj"

    def account(secret: str) -> tpb.TypedMessage:
        if protocol == "vless":
            return typed(lpb.Account(id=secret))
        return typed(jpb.Account(password=secret))

    steps = [
        _alter(tag, _add_user("bob@x", account(bob))),
        _alter(tag, _add_user("BOB@x", account(ALICE))),
        _alter(tag, typed(hpb.RemoveUserOperation(email="Bob@X"))),
        _alter(tag, typed(hpb.RemoveUserOperation(email="bob@x"))),
    ]
    answers: dict[str, list[object]] = {}
    async with echo_server() as echo:
        for kind in ("v2ray", "v2py"):
            port = free_ports(1)[0]
            ports = {"vless_port": port} if protocol == "vless" else {"trojan_port": port}
            async with served(kind, **ports) as channel:
                seen: list[object] = [await _echo_through(protocol, port, bob, echo)]
                for step in steps:
                    seen.append(await _answer(channel, HANDLER + "AlterInbound", step))
                    seen.append(await _echo_through(protocol, port, bob, echo))
                answers[kind] = seen
    assert answers["v2py"] == answers["v2ray"]
    reply = b"\x00\x00ping" if protocol == "vless" else b"ping"
    assert answers["v2py"][:3] == [b"", ("OK", ""), reply]
