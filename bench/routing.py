"""Routing bench: connection rate and RSS with big geo lists, v2py against v2ray 4.34.

``python -m bench.routing`` writes a geosite.dat with one list of ``--domains``
entries (90% ``domain:``, 8% ``full:``, 2% keywords) and a geoip.dat with one list
of ``--cidrs`` /24 networks, and one config: a SOCKS inbound whose routing sends
that geosite list and that geoip list to a blackhole and everything else (no
match) to freedom. Both implementations get the same file and
``V2RAY_LOCATION_ASSET``. Then, per implementation and run (alternating):

* RSS at rest (VmRSS of the process, lists loaded, 1 s after start);
* connection rate for ``--seconds``: ``--workers`` loops of connect + SOCKS5
  CONNECT + 64-byte echo + close through the proxy to a local echo server, once
  with an IP target (127.0.0.1: every domain rule is skipped, the IP rule is
  searched) and once with a domain target (``localhost``: the 100,000-entry domain
  rule is searched, the IP rule sees no IP under AsIs);
* RSS after the load.

The machine is shared: keep runs short and read ratios, not absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.procs import read_status_kib

PAYLOAD = b"x" * 64
OP_TIMEOUT_S = 5.0


def write_assets(directory: Path, domains: int, cidrs: int) -> None:
    """geosite.dat (list BIG) and geoip.dat (list BIG) of the requested sizes."""
    from v2py.app.geo_proto import geodata_pb2

    sites = geodata_pb2.GeoSiteList()
    big = sites.entry.add(country_code="BIG")
    full_n = domains * 8 // 100
    keyword_n = domains * 2 // 100
    for i in range(domains - full_n - keyword_n):
        big.domain.add(type=2, value=f"s{i}.example{i % 97}.com")
    for i in range(full_n):
        big.domain.add(type=3, value=f"www.f{i}.net")
    for i in range(keyword_n):
        big.domain.add(type=0, value=f"kw{i}x")
    (directory / "geosite.dat").write_bytes(sites.SerializeToString())
    ips = geodata_pb2.GeoIPList()
    entry = ips.entry.add(country_code="BIG")
    for i in range(cidrs):
        # /24s spread over 1.0.0.0-223.255.255.0, never 127/8.
        a = 1 + (i >> 16) % 126
        entry.cidr.add(ip=bytes([a if a != 127 else 128, (i >> 8) & 0xFF, i & 0xFF, 0]), prefix=24)
    (directory / "geoip.dat").write_bytes(ips.SerializeToString())


def config(port: int) -> dict[str, object]:
    return {
        "log": {"loglevel": "none"},
        "inbounds": [
            {
                "listen": "127.0.0.1",
                "port": port,
                "protocol": "socks",
                "settings": {"auth": "noauth"},
            }
        ],
        "outbounds": [
            {"tag": "direct", "protocol": "freedom", "settings": {}},
            {"tag": "block", "protocol": "blackhole", "settings": {}},
        ],
        "routing": {
            "domainStrategy": "AsIs",
            "rules": [
                {"type": "field", "domain": ["geosite:big"], "outboundTag": "block"},
                {"type": "field", "ip": ["geoip:big"], "outboundTag": "block"},
            ],
        },
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"not listening on {port} within {timeout} s")


async def one_connection(socks_port: int, target: bytes, echo_port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", socks_port)
    try:
        writer.write(b"\x05\x01\x00")
        await reader.readexactly(2)
        writer.write(b"\x05\x01\x00" + target + echo_port.to_bytes(2, "big"))
        head = await reader.readexactly(4)
        if head[1] != 0:
            raise ConnectionError(f"socks reply {head[1]}")
        rest = {1: 6, 4: 18}.get(head[3])
        if rest is None:
            rest = (await reader.readexactly(1))[0] + 2
        await reader.readexactly(rest)
        writer.write(PAYLOAD)
        await reader.readexactly(len(PAYLOAD))
    finally:
        writer.close()


async def rate(
    socks_port: int, echo_port: int, target: bytes, workers: int, seconds: float
) -> tuple[float, int]:
    done = 0
    errors = 0

    async def worker() -> None:
        nonlocal done, errors
        while True:
            try:
                async with asyncio.timeout(OP_TIMEOUT_S):
                    await one_connection(socks_port, target, echo_port)
                done += 1
            except (OSError, ConnectionError, TimeoutError, asyncio.IncompleteReadError):
                errors += 1
                await asyncio.sleep(0.01)

    tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
    start = time.perf_counter()
    await asyncio.sleep(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return done / (time.perf_counter() - start), errors


async def echo_server() -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Cancelled when the bench shuts the server down: end quietly (asyncio's stream
        # callback would log the CancelledError of a handler task).
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
        writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0, backlog=1024)


IP_TARGET = b"\x01\x7f\x00\x00\x01"
DOMAIN_TARGET = b"\x03\x09localhost"


async def measure(
    argv: list[str], env: dict[str, str], args: argparse.Namespace, port: int
) -> dict[str, float]:
    server = await echo_server()
    echo_port = server.sockets[0].getsockname()[1]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        start = time.monotonic()
        await asyncio.to_thread(wait_listening, port, proc, 60.0)
        ready_s = time.monotonic() - start
        await asyncio.sleep(1.0)
        rest = read_status_kib(proc.pid, "VmRSS") or 0
        ip_rate, ip_err = await rate(port, echo_port, IP_TARGET, args.workers, args.seconds)
        dom_rate, dom_err = await rate(port, echo_port, DOMAIN_TARGET, args.workers, args.seconds)
        after = read_status_kib(proc.pid, "VmRSS") or 0
        return {
            "ready s": ready_s,
            "RSS rest MiB": rest / 1024,
            "conn/s ip target": ip_rate,
            "conn/s domain target": dom_rate,
            "RSS after MiB": after / 1024,
            "errors": float(ip_err + dom_err),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        server.close()


async def main_async(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-routing-"))
    try:
        assets = workdir / "assets"
        assets.mkdir()
        t0 = time.perf_counter()
        write_assets(assets, args.domains, args.cidrs)
        print(
            f"geo files: {args.domains} domains, {args.cidrs} CIDRs "
            f"({time.perf_counter() - t0:.1f} s to write)",
            file=sys.stderr,
        )
        port = free_port()
        path = workdir / "config.json"
        path.write_text(json.dumps(config(port), indent=1))
        env = {**os.environ, "V2RAY_LOCATION_ASSET": str(assets)}
        commands = {
            "v2py": [*args.v2py_cmd.split(), "run", "-c", str(path)],
            "v2ray": [args.v2ray_cmd, "-config", str(path)],
        }
        results: dict[str, list[dict[str, float]]] = {"v2py": [], "v2ray": []}
        for run in range(args.runs):
            order = ["v2py", "v2ray"] if run % 2 == 0 else ["v2ray", "v2py"]
            for name in order:
                results[name].append(await measure(commands[name], env, args, port))
        keys = list(results["v2py"][0])
        print(f"{'metric':24} {'v2py':>10} {'v2ray':>10} {'v2py/v2ray':>11}")
        for key in keys:
            a = statistics.median(r[key] for r in results["v2py"])
            b = statistics.median(r[key] for r in results["v2ray"])
            ratio = f"{a / b:.2f}" if b else "-"
            print(f"{key:24} {a:10.1f} {b:10.1f} {ratio:>11}")
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--domains", type=int, default=100_000)
    parser.add_argument("--cidrs", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--v2py-cmd", default=f"{sys.executable} -m v2py")
    parser.add_argument("--v2ray-cmd", default="/usr/bin/v2ray")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
