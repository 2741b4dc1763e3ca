"""Micro-benchmark: what each stream layer costs per connection, client and server apart.

Usage: python -m bench.micro_layers [--seconds S] [--rounds R] [--kinds a,b,...]

For each kind, a server process listens with the very transport v2py builds for a bench
chain's ``streamSettings`` (``transport/stack.py`` ``layered``) and echoes; this process
dials it with the client's transport from 8 loops of connect + one 64-byte exchange +
close. No proxy protocol runs on top, so the rows isolate the layers:

* ``tcp``: plain TCP (the ``vmess-aead-gcm`` chain's stream);
* ``tls``, ``ws``, ``ws+tls``: the ``vmess-tls``, ``vmess-ws``, ``vmess-ws-tls`` streams;
* ``tls-uvloop``: a reference, not v2py: uvloop's own TLS transport (Cython) with the same
  OpenSSL contexts, the least Python can spend on a TLS connection here.

Each row is the median of ``rounds`` runs (kinds alternate within a round) of the CPU per
connection of the client (this process) and of the server (``/proc``), and the increment
over ``tcp``. The chain bench measures whole chains with the load generator on the same
cores and moves ±10% between sets on a busy machine; these rows are steadier, for A/B
work on one layer.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.chains import CHAINS, _stream
from bench.micro_tls_handshake import _securities
from bench.procs import cpu_seconds, free_port, self_cpu_seconds

#: kind -> the bench chain whose streamSettings it uses.
KINDS = {"tcp": "vmess-aead-gcm", "tls": "vmess-tls", "ws": "vmess-ws", "ws+tls": "vmess-ws-tls"}
REFERENCE = "tls-uvloop"
WORKERS = 8
MESSAGE = b"x" * 64


def _transport(kind: str, *, server: bool) -> Any:
    from v2py.config.model import StreamConfig
    from v2py.transport import TcpTransport
    from v2py.transport.stack import layered

    stream = StreamConfig.model_validate(_stream(CHAINS[KINDS[kind]], server=server))
    return layered(stream, TcpTransport())


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class _Exchange(asyncio.Protocol):
    """Client side of the reference row: done once 64 bytes came back."""

    def __init__(self) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.got = 0

    def data_received(self, data: bytes) -> None:
        self.got += len(data)
        if self.got >= len(MESSAGE) and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(ConnectionError("closed before the echo"))


async def _serve(kind: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    if kind == REFERENCE:
        _, server = _securities()
        await loop.create_server(
            _Echo, "127.0.0.1", port, ssl=server.server_context(), backlog=1024
        )
    else:

        async def echo(stream: Any) -> None:
            while data := await stream.read():
                stream.write(data)

        await _transport(kind, server=True).listen("127.0.0.1", port, echo)
    print("ready", flush=True)
    await asyncio.Event().wait()


def _dialer(kind: str) -> Any:
    """A coroutine function doing one connection of ``kind``: dial, 64 bytes echoed, close."""
    if kind == REFERENCE:
        client, _ = _securities()
        context = client.client_context()
        name = client.client_server_name("127.0.0.1")

        async def one_reference(port: int) -> None:
            loop = asyncio.get_running_loop()
            tr, proto = await loop.create_connection(
                _Exchange, "127.0.0.1", port, ssl=context, server_hostname=name
            )
            tr.write(MESSAGE)
            await proto.done
            tr.close()

        return one_reference
    transport = _transport(kind, server=False)

    async def one(port: int) -> None:
        stream = await transport.dial("127.0.0.1", port, timeout=5)
        try:
            stream.write(MESSAGE)
            got = 0
            while got < len(MESSAGE):
                data = await stream.read()
                if not data:
                    raise ConnectionError("closed before the echo")
                got += len(data)
        finally:
            stream.close()

    return one


def _server_cpu(pid: int) -> float:
    cpu = cpu_seconds(pid)
    if cpu is None:
        raise SystemExit(f"cannot read the CPU time of server process {pid}")
    return cpu


async def _load(kind: str, port: int, seconds: float) -> tuple[int, float]:
    """(connections, client CPU seconds) over ``seconds`` of WORKERS loops."""
    one = _dialer(kind)
    count = 0
    stop = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal count
        while time.monotonic() < stop:
            async with asyncio.timeout(10):
                await one(port)
            count += 1

    before = self_cpu_seconds()
    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    return count, self_cpu_seconds() - before


def _start(kind: str, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.micro_layers", "--serve", kind, str(port)],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        _stop(proc)
        raise SystemExit(f"the {kind} server did not start")
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.kill()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def measure(kinds: list[str], seconds: float, rounds: int) -> dict[str, dict[str, float]]:
    """Median conn/s and CPU microseconds per connection (client, server) per kind."""
    servers = {kind: (_start(kind, port := free_port()), port) for kind in kinds}
    samples: dict[str, list[tuple[float, float, float]]] = {kind: [] for kind in kinds}
    try:
        for r in range(rounds):
            order = kinds if r % 2 == 0 else kinds[::-1]
            for kind in order:
                proc, port = servers[kind]
                s0 = _server_cpu(proc.pid)
                w0 = time.monotonic()
                count, client_cpu = _run(_load(kind, port, seconds))
                elapsed = time.monotonic() - w0
                server_cpu = _server_cpu(proc.pid) - s0
                samples[kind].append(
                    (count / elapsed, client_cpu / count * 1e6, server_cpu / count * 1e6)
                )
    finally:
        for proc, _ in servers.values():
            _stop(proc)
    return {
        kind: {
            "conn_per_s": statistics.median(s[0] for s in rows),
            "client_us": statistics.median(s[1] for s in rows),
            "server_us": statistics.median(s[2] for s in rows),
        }
        for kind, rows in samples.items()
    }


def _run(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.run(coro)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro_layers")
    parser.add_argument("--seconds", type=float, default=3.0, help="per kind per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kinds", default=",".join([*KINDS, REFERENCE]))
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _run(_serve(args.serve[0], int(args.serve[1])))
        return 0
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in kinds if k not in KINDS and k != REFERENCE]
    if unknown:
        parser.error(f"unknown kind(s): {', '.join(unknown)}")
    rows = measure(kinds, args.seconds, args.rounds)
    base = rows.get("tcp")
    print(f"{WORKERS} loops, {args.rounds} rounds x {args.seconds:g} s per kind (medians)")
    print(f"{'kind':12s}{'conn/s':>9s}{'client us':>11s}{'server us':>11s}{'over tcp':>16s}")
    for kind, row in rows.items():
        extra = ""
        if base is not None and kind != "tcp":
            extra = (
                f"{row['client_us'] - base['client_us']:+7.0f}"
                f"{row['server_us'] - base['server_us']:+8.0f}"
            )
        print(
            f"{kind:12s}{row['conn_per_s']:9.0f}{row['client_us']:11.0f}"
            f"{row['server_us']:11.0f}{extra:>16s}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
