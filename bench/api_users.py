"""Users added through the API at scale: AlterInbound add-user rate, memory, and the
VMess handshake cost once 10,000 users are in, v2py against v2ray 4.34.

``python -m bench.api_users`` (from the repository root). Per implementation, one server
process: a VMess inbound with one configured user (Alice), the API wired as panels
wire it (``api`` + a dokodemo-door inbound tagged ``api`` + the rule ``inboundTag api ->
api``) and freedom. The bench then

1. adds ``--users`` AEAD users (alterId 0) with HandlerService.AlterInbound from
   ``--callers`` concurrent callers on one gRPC connection: adds/s, and RSS before and
   after;
2. times ``--samples`` fresh connections for Alice (first in the table) and for the last
   user added: TCP connect, VMess AEAD header + a 64-byte request to a local echo server,
   until the echo is decoded (p50 and p90 in ms). An AEAD header is matched by trying the
   users in turn (4.34 and v2py alike), so the last user is the worst case.

The VMess client is v2py's own core (the same bytes a 4.34 client sends). The machine
is shared: keep runs short and read the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.chains import ProcPlan
from bench.procs import ChainProcess, command_for, free_ports, kill_all_started, read_status_kib

ALICE = "b831381d-6324-4d53-ad4f-8cda48b30811"
REQUEST = bytes(range(64))
OP_TIMEOUT_S = 10.0


def server_config(api_port: int, vmess_port: int) -> dict[str, object]:
    return {
        "log": {"loglevel": "warning", "access": "none"},
        "api": {"tag": "api", "services": ["HandlerService"]},
        "inbounds": [
            {"tag": "api", "listen": "127.0.0.1", "port": api_port,
             "protocol": "dokodemo-door", "settings": {"address": "127.0.0.1"}},
            {"tag": "vm", "listen": "127.0.0.1", "port": vmess_port, "protocol": "vmess",
             "settings": {"clients": [{"id": ALICE, "email": "alice@bench"}]}},
        ],
        "outbounds": [{"tag": "direct", "protocol": "freedom"}],
        "routing": {"rules": [{"type": "field", "inboundTag": ["api"], "outboundTag": "api"}]},
    }  # fmt: skip


def user_id(i: int) -> str:
    return str(uuid.UUID(int=(0xBE7C << 112) + i))


async def add_users(api_port: int, count: int, callers: int) -> float:
    """Add ``count`` users; returns the seconds it took."""
    import grpc

    from v2py.app.commander.proto import handler_command_pb2 as hpb
    from v2py.app.commander.proto import protocol_pb2 as ppb
    from v2py.app.commander.proto import vmess_pb2 as vpb
    from v2py.app.commander.services import typed

    async with grpc.aio.insecure_channel(f"127.0.0.1:{api_port}") as channel:
        alter: grpc.aio.UnaryUnaryMultiCallable[
            hpb.AlterInboundRequest, hpb.AlterInboundResponse
        ] = channel.unary_unary(
            "/v2ray.core.app.proxyman.command.HandlerService/AlterInbound",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=hpb.AlterInboundResponse.FromString,
        )

        async def caller(first: int) -> None:
            for i in range(first, count, callers):
                account = typed(vpb.Account(id=user_id(i)))
                op = typed(
                    hpb.AddUserOperation(user=ppb.User(email=f"u{i}@bench", account=account))
                )
                async with asyncio.timeout(OP_TIMEOUT_S):
                    await alter(hpb.AlterInboundRequest(tag="vm", operation=op))

        started = time.perf_counter()
        await asyncio.gather(*(caller(k) for k in range(callers)))
        return time.perf_counter() - started


async def one_handshake(vmess_port: int, uid: str, echo_port: int) -> float:
    """Seconds from connect to the decoded echo of a 64-byte request."""
    from v2py.protocol.vmess import (
        DataReceived,
        RequestCommand,
        SecurityType,
        VmessClientConnection,
        VmessUser,
        parse_uuid,
    )

    core = VmessClientConnection(
        VmessUser(id=parse_uuid(uid), alter_id=0),
        SecurityType.AES_128_GCM,
        command=RequestCommand.TCP,
        address="127.0.0.1",
        port=echo_port,
        now=time.time(),
        rng=os.urandom,
        use_aead=True,
    )
    core.send_data(REQUEST)
    first = core.data_to_send()
    got = 0
    async with asyncio.timeout(OP_TIMEOUT_S):
        started = time.perf_counter()
        reader, writer = await asyncio.open_connection("127.0.0.1", vmess_port)
        try:
            writer.write(first)
            while got < len(REQUEST):
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError(f"closed after {got} bytes")
                core.receive_data(data)
                while (event := core.next_event()) is not None:
                    if isinstance(event, DataReceived):
                        got += len(event.data)
            return time.perf_counter() - started
        finally:
            writer.close()


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


@dataclass
class Result:
    impl: str
    adds_per_s: float
    rss_before_mib: float
    rss_after_mib: float
    first_ms: list[float]
    last_ms: list[float]


def _p(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]


async def run_one(impl: str, template: str, args: argparse.Namespace, workdir: Path) -> Result:
    api_port, vmess_port = free_ports(2)
    plan = ProcPlan("server", server_config(api_port, vmess_port), tcp_ports=[api_port, vmess_port])
    path = workdir / f"{impl}.json"
    path.write_text(plan.config_text())
    proc = ChainProcess(impl, command_for(template, path), workdir)
    echo = await asyncio.start_server(_echo, "127.0.0.1", 0)
    echo_port = echo.sockets[0].getsockname()[1]
    proc.start()
    try:
        await asyncio.to_thread(proc.wait_ready, plan, 15.0)
        await one_handshake(vmess_port, ALICE, echo_port)  # warm up
        rss_before = (read_status_kib(proc.pid, "VmRSS") or 0) / 1024
        seconds = await add_users(api_port, args.users, args.callers)
        await asyncio.sleep(1.0)  # let the server settle before timing
        rss_after = (read_status_kib(proc.pid, "VmRSS") or 0) / 1024
        last = user_id(args.users - 1)
        first_ms: list[float] = []
        last_ms: list[float] = []
        for _ in range(args.samples):
            first_ms.append(1e3 * await one_handshake(vmess_port, ALICE, echo_port))
            last_ms.append(1e3 * await one_handshake(vmess_port, last, echo_port))
        return Result(impl, args.users / seconds, rss_before, rss_after, first_ms, last_ms)
    finally:
        await asyncio.to_thread(proc.stop)
        echo.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from bench.cli import _default_v2py_cmd, _default_v2ray_cmd

    p = argparse.ArgumentParser(
        prog="python -m bench.api_users", description=__doc__.split("\n")[0]
    )
    p.add_argument("--impl", default="v2py,v2ray", help="comma-separated: v2py, v2ray")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--callers", type=int, default=8, help="concurrent AlterInbound callers")
    p.add_argument("--samples", type=int, default=30, help="timed connections per user")
    p.add_argument("--v2py-cmd", default=_default_v2py_cmd())
    p.add_argument("--v2ray-cmd", default=_default_v2ray_cmd())
    return p.parse_args(argv)


async def main_async(args: argparse.Namespace) -> int:
    templates = {"v2py": args.v2py_cmd, "v2ray": args.v2ray_cmd}
    workdir = Path(tempfile.mkdtemp(prefix="bench-api-users-"))
    results: list[Result] = []
    try:
        for impl in [i.strip() for i in args.impl.split(",") if i.strip()]:
            results.append(await run_one(impl, templates[impl], args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{args.users:,} users added by AlterInbound ({args.callers} callers), "
          f"{args.samples} connections per user; handshake = connect to decoded echo")  # fmt: skip
    print(f"{'':6}{'adds/s':>9}{'RSS MiB before':>16}{'after':>7}"
          f"{'first user p50/p90 ms':>23}{'last user p50/p90 ms':>22}")  # fmt: skip
    for r in results:
        print(
            f"{r.impl:6}{r.adds_per_s:>9.0f}{r.rss_before_mib:>16.1f}{r.rss_after_mib:>7.1f}"
            f"{statistics.median(r.first_ms):>14.2f} / {_p(r.first_ms, 90):<6.2f}"
            f"{statistics.median(r.last_ms):>14.2f} / {_p(r.last_ms, 90):<6.2f}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 130
    finally:
        kill_all_started()


if __name__ == "__main__":
    sys.exit(main())
