"""Soak run (issue 12, not CI): a v2py client and a v2py server process under mixed load
for ``--minutes`` (default 30), sampling each process's RSS, descriptors and asyncio tasks
every ``--interval`` seconds (default 10), written to JSON and plotted to PNG.

The chain (all on 127.0.0.1)::

    load --socks--> client --VMess/TCP (aes-128-gcm)--------------> server --freedom--> targets
    load --socks--> client --VMess/mKCP--> lossy UDP relay (2%) --> server --freedom--> targets

Load, all at once, each loop reconnecting as it goes:

* bulk: ``--bulk`` downloads of 8 MiB at a time through the TCP chain, each served at
  ``--bulk-rate`` MiB/s (a soak, not a throughput test);
* short: 1 KiB echo round trips on fresh connections, ``--short-rate`` per second;
* idle: ``--idle`` connections held open without traffic, a tenth of them replaced every
  minute (they outlive nothing: the policy's connIdle is above the run);
* UDP: socks UDP ASSOCIATE, a datagram to a UDP echo every 0.1 s, answers checked;
* mKCP: 256 KiB echo exchanges through the mKCP chain with 2% loss each way.

Tasks come from each process's own StatsService.GetSysStats (``NumGoroutine`` is v2py's
asyncio tasks plus threads), through an ``api`` inbound on 127.0.0.1 as panels use it.
A flat RSS/fd/task line after the warm-up is the pass criterion; the numbers are noisy on
a shared machine.

Usage::

    python -m bench.soak --minutes 5 --out bench/results/soak
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BULK_BYTES = 8 << 20
SHORT_BYTES = 1024
KCP_EXCHANGE_BYTES = 256 << 10
UDP_INTERVAL_S = 0.1
IDLE_CHURN_S = 60.0
STEP_TIMEOUT_S = 60.0
LOSS = 0.02
CONN_IDLE_S = 7200
BLOCK = os.urandom(1 << 20)


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free for TCP and UDP on 127.0.0.1."""
    ports: list[int] = []
    while len(ports) < n:
        with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                u.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports


# -- configs ------------------------------------------------------------------------


def _api(port: int) -> dict[str, Any]:
    return {
        "api": {"tag": "api", "services": ["StatsService"]},
        "stats": {},
        "routing": {"rules": [{"type": "field", "inboundTag": ["api-in"], "outboundTag": "api"}]},
        "api_inbound": {
            "tag": "api-in",
            "listen": "127.0.0.1",
            "port": port,
            "protocol": "dokodemo-door",
            "settings": {"address": "127.0.0.1"},
        },
    }


def _policy() -> dict[str, Any]:
    return {"levels": {"0": {"connIdle": CONN_IDLE_S, "handshake": 4}}}


def server_config(p: dict[str, int], user: str) -> dict[str, Any]:
    api = _api(p["server_api"])
    kcp = {"network": "kcp", "kcpSettings": {"uplinkCapacity": 20, "downlinkCapacity": 20}}
    clients = {"clients": [{"id": user, "alterId": 0}]}
    return {
        "log": {"loglevel": "warning"},
        "policy": _policy(),
        "api": api["api"],
        "stats": api["stats"],
        "routing": api["routing"],
        "inbounds": [
            api["api_inbound"],
            {"listen": "127.0.0.1", "port": p["vmess"], "protocol": "vmess", "settings": clients},
            {
                "listen": "127.0.0.1",
                "port": p["kcp"],
                "protocol": "vmess",
                "settings": clients,
                "streamSettings": kcp,
            },
        ],
        "outbounds": [{"protocol": "freedom"}],
    }


def client_config(p: dict[str, int], user: str) -> dict[str, Any]:
    api = _api(p["client_api"])
    kcp = {"network": "kcp", "kcpSettings": {"uplinkCapacity": 20, "downlinkCapacity": 20}}

    def vmess(tag: str, port: int, stream: dict[str, Any] | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tag": tag,
            "protocol": "vmess",
            "settings": {
                "vnext": [
                    {
                        "address": "127.0.0.1",
                        "port": port,
                        "users": [{"id": user, "alterId": 0, "security": "aes-128-gcm"}],
                    }
                ]
            },
        }
        if stream is not None:
            out["streamSettings"] = stream
        return out

    routing = api["routing"]
    routing["rules"].append({"type": "field", "inboundTag": ["socks-kcp"], "outboundTag": "kcp"})
    return {
        "log": {"loglevel": "warning"},
        "policy": _policy(),
        "api": api["api"],
        "stats": api["stats"],
        "routing": routing,
        "inbounds": [
            api["api_inbound"],
            {
                "tag": "socks-tcp",
                "listen": "127.0.0.1",
                "port": p["socks"],
                "protocol": "socks",
                "settings": {"udp": True, "ip": "127.0.0.1"},
            },
            {
                "tag": "socks-kcp",
                "listen": "127.0.0.1",
                "port": p["socks_kcp"],
                "protocol": "socks",
            },
        ],
        "outbounds": [vmess("tcp", p["vmess"], None), vmess("kcp", p["relay"], kcp)],
    }


# -- processes and sampling ------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    api_port: int
    log_path: Path


def start(name: str, config: dict[str, Any], api_port: int, workdir: Path) -> Proc:
    cfg = workdir / f"{name}.json"
    cfg.write_text(json.dumps(config))
    log_path = workdir / f"{name}.log"
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "v2py", "run", "-c", str(cfg)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", api_port), 1):
            return Proc(name, popen, api_port, log_path)
        if popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.1)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def task_count(api_port: int) -> int:
    """``NumGoroutine`` of GetSysStats: asyncio tasks plus threads of that process."""
    import grpc

    from v2py.app.commander.proto import stats_command_pb2 as spb
    from v2py.app.commander.proto import stats_command_pb2_grpc as sgrpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{api_port}") as channel:
        stub = sgrpc.StatsServiceStub(channel)
        reply = await stub.GetSysStats(spb.SysStatsRequest(), timeout=10)
    return int(reply.NumGoroutine)


# -- load ---------------------------------------------------------------------------


@dataclass
class Tally:
    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    last_error: dict[str, str] = field(default_factory=dict)
    bytes: Counter[str] = field(default_factory=Counter)


async def socks_connect(port: int, host: str, dport: int) -> tuple[Any, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"\x05\x01\x00\x05\x01\x00\x01" + socket.inet_aton(host) + struct.pack(">H", dport)
    )
    await writer.drain()
    reply = await reader.readexactly(2 + 10)
    if reply[:2] != b"\x05\x00" or reply[3] != 0:
        raise ConnectionError(f"socks reply {reply.hex()}")
    return reader, writer


async def _close(writer: Any) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(5):
            await writer.wait_closed()


async def forever(
    kind: str,
    tally: Tally,
    stop: asyncio.Event,
    op: Callable[[], Awaitable[int]],
    pause: float = 0.0,
) -> None:
    """Run ``op`` again and again until ``stop``, counting successes, failures, bytes."""
    while not stop.is_set():
        try:
            async with asyncio.timeout(STEP_TIMEOUT_S):
                tally.bytes[kind] += await op()
            tally.ok[kind] += 1
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            tally.failed[kind] += 1
            tally.last_error[kind] = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.5)
        if pause:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await stop.wait()


#: Target-side connections, closed at the end of the run.
_TARGET_WRITERS: set[asyncio.StreamWriter] = set()


async def echo_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    _TARGET_WRITERS.add(writer)
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    _TARGET_WRITERS.discard(writer)
    writer.close()


def bulk_handler(rate: float) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
    """Serves BULK_BYTES at ``rate`` bytes/s (a soak, not a throughput test)."""
    piece = 64 << 10

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _TARGET_WRITERS.add(writer)
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await reader.readexactly(1)
            started = time.monotonic()
            for sent in range(0, BULK_BYTES, piece):
                writer.write(BLOCK[:piece])
                await writer.drain()
                ahead = (sent + piece) / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        _TARGET_WRITERS.discard(writer)
        writer.close()

    return handler


class UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


class LossyRelay(asyncio.DatagramProtocol):
    """UDP relay dropping ``loss`` of the datagrams each way (one upstream socket per
    client address, so the server sees distinct sources)."""

    def __init__(self, target: tuple[str, int], loss: float, seed: int) -> None:
        self.target = target
        self.loss = loss
        self.rng = random.Random(seed)
        self.ups: dict[tuple[str, int], asyncio.DatagramTransport] = {}
        self.pending: dict[tuple[str, int], list[bytes]] = {}
        self.dropped = 0
        self.forwarded = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def _pass(self) -> bool:
        if self.rng.random() < self.loss:
            self.dropped += 1
            return False
        self.forwarded += 1
        return True

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        up = self.ups.get(addr)
        if up is None:
            self.pending.setdefault(addr, []).append(data)
            if len(self.pending[addr]) == 1:
                asyncio.get_running_loop().create_task(self._open(addr))
            return
        if self._pass():
            up.sendto(data)

    async def _open(self, client: tuple[str, int]) -> None:
        relay = self

        class Up(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                if relay._pass():
                    relay.transport.sendto(data, client)

        loop = asyncio.get_running_loop()
        up, _ = await loop.create_datagram_endpoint(Up, remote_addr=self.target)
        self.ups[client] = up  # type: ignore[assignment]
        for data in self.pending.pop(client, []):
            if self._pass():
                up.sendto(data)  # type: ignore[attr-defined]

    def close(self) -> None:
        for up in self.ups.values():
            up.close()
        self.transport.close()


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(data)


async def udp_loop(socks: int, echo: int, tally: Tally, stop: asyncio.Event) -> None:
    """One ASSOCIATE kept for the run; a datagram every 0.1 s; each answer checked."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        writer = None
        transport = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", socks)
            writer.write(b"\x05\x01\x00\x05\x03\x00\x01" + bytes(6))
            reply = await reader.readexactly(2 + 10)
            relay = (socket.inet_ntoa(reply[6:10]), struct.unpack(">H", reply[10:12])[0])
            transport, proto = await loop.create_datagram_endpoint(
                UdpClient, local_addr=("127.0.0.1", 0)
            )
            head = b"\x00\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack(">H", echo)
            seq = 0
            while not stop.is_set():
                seq += 1
                payload = struct.pack(">Q", seq) + BLOCK[:200]
                transport.sendto(head + payload, relay)
                try:
                    async with asyncio.timeout(2.0):
                        while (await proto.queue.get())[len(head) :] != payload:
                            pass
                    tally.ok["udp"] += 1
                    tally.bytes["udp"] += len(payload)
                except TimeoutError:
                    tally.failed["udp"] += 1
                    tally.last_error["udp"] = f"datagram {seq} unanswered"
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(UDP_INTERVAL_S):
                        await stop.wait()
        except (OSError, asyncio.IncompleteReadError) as exc:
            tally.failed["udp"] += 1
            tally.last_error["udp"] = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(1)
        finally:
            if transport is not None:
                transport.close()
            if writer is not None:
                await _close(writer)


async def idle_pool(socks: int, echo: int, count: int, tally: Tally, stop: asyncio.Event) -> None:
    """``count`` silent connections; a tenth replaced every minute, each proven by 1 byte."""
    held: list[Any] = []

    async def one() -> None:
        try:
            async with asyncio.timeout(STEP_TIMEOUT_S):
                reader, writer = await socks_connect(socks, "127.0.0.1", echo)
                writer.write(b"i")
                await reader.readexactly(1)
            held.append(writer)
            tally.ok["idle"] += 1
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ConnectionError) as exc:
            tally.failed["idle"] += 1
            tally.last_error["idle"] = f"{type(exc).__name__}: {exc}"

    try:
        while not stop.is_set():
            while len(held) < count and not stop.is_set():
                await asyncio.gather(*(one() for _ in range(min(50, count - len(held)))))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_CHURN_S):
                    await stop.wait()
            for writer in held[: max(1, count // 10)]:
                await _close(writer)
            del held[: max(1, count // 10)]
    finally:
        for writer in held:
            await _close(writer)


# -- the run ----------------------------------------------------------------------------


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    names = ["socks", "socks_kcp", "vmess", "kcp", "relay", "client_api", "server_api"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    user = str(uuid.uuid4())
    workdir = Path(tempfile.mkdtemp(prefix="v2py-soak-"))
    loop = asyncio.get_running_loop()
    echo = await asyncio.start_server(echo_handler, "127.0.0.1", 0, backlog=1024)
    bulk = await asyncio.start_server(bulk_handler(args.bulk_rate * 2**20), "127.0.0.1", 0)
    echo_port = echo.sockets[0].getsockname()[1]
    bulk_port = bulk.sockets[0].getsockname()[1]
    udp_echo, _ = await loop.create_datagram_endpoint(UdpEcho, local_addr=("127.0.0.1", 0))
    udp_port = udp_echo.get_extra_info("sockname")[1]
    relay_transport, relay = await loop.create_datagram_endpoint(
        lambda: LossyRelay(("127.0.0.1", ports["kcp"]), LOSS, seed=1),
        local_addr=("127.0.0.1", ports["relay"]),
    )
    server = start("server", server_config(ports, user), ports["server_api"], workdir)
    client = start("client", client_config(ports, user), ports["client_api"], workdir)
    procs = [server, client]
    tally = Tally()
    stop = asyncio.Event()
    samples: list[dict[str, Any]] = []

    async def bulk_op() -> int:
        reader, writer = await socks_connect(ports["socks"], "127.0.0.1", bulk_port)
        try:
            writer.write(b"g")
            got = 0
            while data := await reader.read(1 << 16):
                got += len(data)
            if got != BULK_BYTES:
                raise ConnectionError(f"bulk ended after {got} bytes")
            return got
        finally:
            await _close(writer)

    async def short_op() -> int:
        reader, writer = await socks_connect(ports["socks"], "127.0.0.1", echo_port)
        try:
            payload = os.urandom(SHORT_BYTES)
            writer.write(payload)
            if await reader.readexactly(SHORT_BYTES) != payload:
                raise ConnectionError("short echo differs")
            return SHORT_BYTES
        finally:
            await _close(writer)

    async def kcp_op() -> int:
        reader, writer = await socks_connect(ports["socks_kcp"], "127.0.0.1", echo_port)
        try:
            offset = random.randrange(len(BLOCK) - KCP_EXCHANGE_BYTES)
            payload = BLOCK[offset : offset + KCP_EXCHANGE_BYTES]
            writer.write(payload)
            if await reader.readexactly(len(payload)) != payload:
                raise ConnectionError("mKCP echo differs")
            return len(payload)
        finally:
            await _close(writer)

    async def sampler() -> None:
        start_time = time.monotonic()
        while not stop.is_set():
            row: dict[str, Any] = {"t": round(time.monotonic() - start_time, 1)}
            for proc in procs:
                pid = proc.popen.pid
                row[proc.name] = {
                    "rss": rss_bytes(pid),
                    "fds": fd_count(pid),
                    "tasks": await task_count(proc.api_port),
                }
            row["ok"] = dict(tally.ok)
            row["failed"] = dict(tally.failed)
            row["mkcp_relay"] = {"forwarded": relay.forwarded, "dropped": relay.dropped}
            samples.append(row)
            print(
                f"t={row['t']:7.1f}s "
                + " ".join(
                    f"{p.name}: rss {row[p.name]['rss'] / 2**20:6.1f} MiB "
                    f"fds {row[p.name]['fds']:4d} tasks {row[p.name]['tasks']:4d}"
                    for p in procs
                )
                + f" ok {dict(tally.ok)} failed {dict(tally.failed)}",
                flush=True,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.interval):
                    await stop.wait()

    loop.add_signal_handler(signal.SIGINT, stop.set)
    started = time.time()
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(sampler())
            for _ in range(args.bulk):
                tg.create_task(forever("bulk", tally, stop, bulk_op))
            tg.create_task(forever("short", tally, stop, short_op, pause=1.0 / args.short_rate))
            tg.create_task(forever("mkcp", tally, stop, kcp_op))
            tg.create_task(udp_loop(ports["socks"], udp_port, tally, stop))
            tg.create_task(idle_pool(ports["socks"], echo_port, args.idle, tally, stop))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.minutes * 60):
                    await stop.wait()
            stop.set()
    finally:
        for proc in procs:
            proc.popen.terminate()
        for proc in procs:
            try:
                proc.popen.wait(10)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
        echo.close()
        bulk.close()
        for writer in list(_TARGET_WRITERS):
            writer.transport.abort()
        await asyncio.sleep(0.1)  # let the handlers see their connections end
        udp_echo.close()
        relay.close()
    errors = {p.name: p.log_path.read_text(errors="replace")[-4000:] for p in procs}
    return {
        "started": started,
        "minutes": args.minutes,
        "interval_s": args.interval,
        "load": {
            "bulk_streams": args.bulk,
            "bulk_mib_per_s": args.bulk_rate,
            "short_per_s": args.short_rate,
            "idle_connections": args.idle,
            "udp_interval_s": UDP_INTERVAL_S,
            "mkcp_loss": LOSS,
        },
        "ok": dict(tally.ok),
        "failed": dict(tally.failed),
        "bytes": dict(tally.bytes),
        "last_error": tally.last_error,
        "samples": samples,
        "process_logs_tail": errors,
        "machine_note": "shared 2-core machine: figures are noisy",
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result["samples"]
    minutes = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    for name, style in (("client", "-"), ("server", "--")):
        axes[0].plot(minutes, [s[name]["rss"] / 2**20 for s in samples], style, label=name)
        axes[1].plot(minutes, [s[name]["fds"] for s in samples], style, label=name)
        axes[2].plot(minutes, [s[name]["tasks"] for s in samples], style, label=name)
    kinds = sorted({k for s in samples for k in s["ok"]})
    for kind in kinds:
        axes[3].plot(minutes, [s["ok"].get(kind, 0) for s in samples], label=f"{kind} ok")
    axes[0].set_ylabel("RSS (MiB)")
    axes[1].set_ylabel("descriptors")
    axes[2].set_ylabel("asyncio tasks + threads")
    axes[3].set_ylabel("operations (cumulative)")
    axes[3].set_yscale("symlog")
    axes[3].set_xlabel("minutes")
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    failed = result["failed"]
    fig.suptitle(
        f"v2py soak, {result['minutes']} min: bulk x{result['load']['bulk_streams']}, "
        f"short {result['load']['short_per_s']}/s, idle {result['load']['idle_connections']}, "
        f"UDP, mKCP {result['load']['mkcp_loss']:.0%} loss; failed {failed or 'none'}",
        fontsize="medium",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=summary)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--bulk", type=int, default=2, help="concurrent bulk downloads")
    parser.add_argument("--bulk-rate", type=float, default=4.0, help="MiB/s per bulk download")
    parser.add_argument("--short-rate", type=float, default=20.0, help="short connections/s")
    parser.add_argument("--idle", type=int, default=200, help="idle connections held")
    parser.add_argument("--out", default="bench/results/soak", help="path prefix for .json/.png")
    args = parser.parse_args(argv)
    result = asyncio.run(soak(args))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.png')}")
    print(f"ok {result['ok']} failed {result['failed']} last errors {result['last_error']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
