"""Cost of traffic counting: the vmess-aead-gcm chain with stats off and on, v2py and
v2ray 4.34 side by side.

``python -m bench.stats`` (from the repository root). Variant ``off`` is the plain
``vmess-aead-gcm`` chain of ``bench/chains.py``. Variant ``on`` is what a panel runs
(x-ui / 3x-ui): the server gets ``stats: {}``, the user an email, policy
``levels.0.statsUser{Up,Down}link`` and ``system.stats{In,Out}bound{Up,Down}link``, and
the API wiring (``api`` + a dokodemo-door inbound tagged ``api`` + the routing rule
``inboundTag api -> api``); the client gets ``stats: {}`` and the system switches, so
it counts its socks inbound and its vmess outbound too.

Per run, every (implementation, variant) pair in an order that flips each run: fresh
processes, one ping, a bulk upload then a bulk download of ``--bulk-mib`` through one
connection each, CPU seconds of both processes from /proc. After an ``on`` pass the
server's counters are read through its API (QueryStats) and the user's are compared
with the bytes the bench moved, so a pass that counted nothing cannot look cheap.

Reported: medians of MB/s (10^6 bytes/s) up and down, CPU s per GB (10^9 bytes moved,
client + server), and the cost of counting = on/off - 1 per implementation. The
machine is shared: with few short runs the numbers are noisy (+-10% is common), so
read CPU s/GB, which noise moves less than MB/s, and run more ``--runs`` for numbers
you want to quote.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import loadgen
from bench.chains import CHAINS, Ports, ProcPlan, plan
from bench.procs import (
    ChainProcess,
    cpu_seconds,
    free_ports,
    kill_all_started,
    start_chain,
    stop_chain,
)

CHAIN = "vmess-aead-gcm"
EMAIL = "bench@stats"
VARIANTS = ("off", "on")
START_TIMEOUT_S = 15.0
PROBE_TIMEOUT_S = 10.0


def with_stats(procs: list[ProcPlan], api_port: int) -> list[ProcPlan]:
    """``procs`` (server, client) with counting switched on as a panel does."""
    out: list[ProcPlan] = []
    for proc in procs:
        config = copy.deepcopy(proc.config)
        config["stats"] = {}
        system = {
            "statsInboundUplink": True,
            "statsInboundDownlink": True,
            "statsOutboundUplink": True,
            "statsOutboundDownlink": True,
        }
        config["policy"] = {"system": system}
        tcp_ports = list(proc.tcp_ports)
        if proc.role == "server":
            config["policy"]["levels"] = {"0": {"statsUserUplink": True, "statsUserDownlink": True}}
            for client in config["inbounds"][0]["settings"]["clients"]:
                client["email"] = EMAIL
            config["api"] = {"tag": "api", "services": ["StatsService"]}
            config["inbounds"].append(
                {
                    "tag": "api",
                    "listen": "127.0.0.1",
                    "port": api_port,
                    "protocol": "dokodemo-door",
                    "settings": {"address": "127.0.0.1"},
                }
            )
            config["routing"] = {
                "rules": [{"type": "field", "inboundTag": ["api"], "outboundTag": "api"}]
            }
            tcp_ports.append(api_port)
        out.append(ProcPlan(proc.role, config, tcp_ports=tcp_ports, udp_ports=proc.udp_ports))
    return out


def query_stats(api_port: int) -> dict[str, int]:
    """Every counter of the server, through StatsService.QueryStats."""
    import grpc

    from v2py.app.commander.proto import stats_command_pb2 as spb

    with grpc.insecure_channel(f"127.0.0.1:{api_port}") as channel:
        call: grpc.UnaryUnaryMultiCallable[spb.QueryStatsRequest, spb.QueryStatsResponse]
        call = channel.unary_unary(
            "/v2ray.core.app.stats.command.StatsService/QueryStats",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=spb.QueryStatsResponse.FromString,
        )
        response = call(spb.QueryStatsRequest(pattern=""), timeout=5)
    return {s.name: int(s.value) for s in response.stat}


@dataclass
class Pass:
    impl: str
    variant: str
    up_mb_s: float
    down_mb_s: float
    cpu_s_per_gb: float
    counted: dict[str, int] = field(default_factory=dict)
    moved: int = 0


async def _probe(socks_port: int, sink: loadgen.SinkServer) -> None:
    deadline = time.monotonic() + PROBE_TIMEOUT_S
    while True:
        peer = None
        try:
            async with asyncio.timeout(3):
                peer = await loadgen.socks_connect(socks_port, sink.port)
                await loadgen.ping_once(peer)
            return
        except (OSError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
        finally:
            if peer is not None:
                peer.abort()


async def one_pass(
    impl: str, variant: str, template: str, args: argparse.Namespace, workdir: Path
) -> Pass:
    socks, vmess, api = free_ports(3)
    procs = plan(CHAINS[CHAIN], Ports(socks=socks, vmess=vmess, dial=vmess))
    if variant == "on":
        procs = with_stats(procs, api)
    running: list[ChainProcess] = []
    sink = loadgen.SinkServer()
    await sink.start()
    try:
        await start_chain(procs, template, workdir, f"{impl}-{variant}", running, START_TIMEOUT_S)
        await _probe(socks, sink)
        size = int(args.bulk_mib * (1 << 20))
        cpu_before = [cpu_seconds(p.pid) or 0.0 for p in running]
        up = await loadgen.bulk_upload(socks, sink, size, args.bulk_max_seconds)
        down = await loadgen.bulk_download(socks, sink, size, args.bulk_max_seconds)
        cpu = sum((cpu_seconds(p.pid) or 0.0) - b for p, b in zip(running, cpu_before, strict=True))
        moved = up.bytes + down.bytes
        result = Pass(impl, variant, up.mb_per_s, down.mb_per_s, cpu / (moved / 1e9), moved=moved)
        if variant == "on":
            # the server finishes its relays just after the bench's last byte
            await asyncio.sleep(0.3)
            result.counted = await asyncio.to_thread(query_stats, api)
        return result
    finally:
        await stop_chain(running)
        await sink.close()


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _pct(ratio_of: float, to: float, *, invert: bool = False) -> str:
    """``ratio_of / to - 1`` (``invert``: ``1 - ratio_of / to``) in percent; n/a when
    ``to`` is 0 (a pass too short to measure)."""
    if not to:
        return "n/a"
    change = ratio_of / to - 1
    return f"{100 * (-change if invert else change):+.1f}%"


def report(passes: list[Pass], impls: list[str]) -> str:
    lines = [
        f"{'':16}{'up MB/s':>10}{'down MB/s':>11}{'CPU s/GB':>10}{'(mean':>8}{'sd)':>6}  "
        f"(medians of {len(passes) // max(1, len(impls) * len(VARIANTS))} runs)"
    ]
    med: dict[tuple[str, str], tuple[float, float, float]] = {}
    for impl in impls:
        for variant in VARIANTS:
            mine = [p for p in passes if p.impl == impl and p.variant == variant]
            row = (
                _median([p.up_mb_s for p in mine]),
                _median([p.down_mb_s for p in mine]),
                _median([p.cpu_s_per_gb for p in mine]),
            )
            med[impl, variant] = row
            cpu = [p.cpu_s_per_gb for p in mine]
            spread = statistics.stdev(cpu) if len(cpu) > 1 else 0.0
            lines.append(
                f"{impl + ' stats ' + variant:16}{row[0]:>10.1f}{row[1]:>11.1f}{row[2]:>10.2f}"
                f"{_mean(cpu):>8.2f}{spread:>6.2f}"
            )
    lines.append("")
    for impl in impls:
        off, on = med[impl, "off"], med[impl, "on"]
        lines.append(
            f"{impl}: counting costs {_pct(on[0], off[0], invert=True)} up, "
            f"{_pct(on[1], off[1], invert=True)} down MB/s, {_pct(on[2], off[2])} CPU s/GB "
            "(positive = slower / more CPU)"
        )
    for impl in impls:
        extra = sorted(
            {
                p.counted.get(f"user>>>{EMAIL}>>>traffic>>>uplink", 0)
                + p.counted.get(f"user>>>{EMAIL}>>>traffic>>>downlink", 0)
                - p.moved
                for p in passes
                if p.impl == impl and p.variant == "on"
            }
        )
        lines.append(
            f"  {impl}: user counters minus bulk bytes moved, per pass: {extra} "
            "(the bench's request headers and ping)"
        )
    if len({p.impl for p in passes}) > 1:
        lines.append("")
        for variant in VARIANTS:
            v2py, v2ray = med["v2py", variant], med["v2ray", variant]
            lines.append(
                f"v2py/v2ray, stats {variant}: up MB/s {v2py[0] / v2ray[0]:.2f}, "
                f"down MB/s {v2py[1] / v2ray[1]:.2f}"
            )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from bench.cli import _default_v2py_cmd, _default_v2ray_cmd

    p = argparse.ArgumentParser(prog="python -m bench.stats", description=__doc__.split("\n")[0])
    p.add_argument("--impl", default="v2py,v2ray", help="comma-separated: v2py, v2ray")
    p.add_argument("--runs", type=int, default=3, help="runs per (implementation, variant)")
    p.add_argument("--bulk-mib", type=float, default=64, help="bulk upload and download size")
    p.add_argument("--bulk-max-seconds", type=float, default=30)
    p.add_argument("--v2py-cmd", default=_default_v2py_cmd())
    p.add_argument("--v2ray-cmd", default=_default_v2ray_cmd())
    p.add_argument("--json", type=Path, help="write every pass here")
    return p.parse_args(argv)


async def main_async(args: argparse.Namespace) -> int:
    impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    templates = {"v2py": args.v2py_cmd, "v2ray": args.v2ray_cmd}
    order = [(impl, variant) for impl in impls for variant in VARIANTS]
    passes: list[Pass] = []
    workdir = Path(tempfile.mkdtemp(prefix="bench-stats-"))
    try:
        for run in range(args.runs):
            for impl, variant in order if run % 2 == 0 else list(reversed(order)):
                result = await one_pass(impl, variant, templates[impl], args, workdir)
                print(
                    f"run {run + 1} {impl:5} stats {variant:3}: up {result.up_mb_s:7.1f} "
                    f"down {result.down_mb_s:7.1f} MB/s, {result.cpu_s_per_gb:6.2f} CPU s/GB",
                    flush=True,
                )
                passes.append(result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(report(passes, impls))
    if args.json is not None:
        args.json.write_text(json.dumps([p.__dict__ for p in passes], indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        try:
            import uvloop

            return uvloop.run(main_async(args))
        except ImportError:
            return asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 130
    finally:
        kill_all_started()


if __name__ == "__main__":
    sys.exit(main())
