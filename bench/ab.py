"""A/B of two builds (or v2py against v2ray) on the connection rate, paired per round.

Usage: python -m bench.ab [--a CMD] [--b CMD] [--chain NAME] [--rounds R] [--seconds S]
                          [--workers W] [--workdir DIR]

``bench/run`` restarts the chain for every run and measures every phase, so two runs of
one build differ by ±10% on a busy 2-core machine and an effect of 3-5% needs dozens of
runs. Here both chains run at once (each on its own ports; an idle chain costs nothing),
are warmed up, and then take turns: each round runs the connection-rate load
(``loadgen.conn_rate``: connect + SOCKS CONNECT + one 64-byte exchange + close, ``W``
loops) for ``S`` seconds on A and on B, in alternating order. A round's ratio B/A pairs
two runs seconds apart, so the machine's slow drift cancels; the median of the rounds'
ratios is the result. Two copies of one build give medians within ~5% of 1.0 here.

CPU per connection is the chain's client and server process trees (``/proc``).
Commands take ``{config}`` as ``bench/run``'s ``--v2py-cmd`` does; the defaults are this
environment's v2py (A) and v2ray (B).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench import loadgen
from bench.chains import CHAINS, Ports, plan
from bench.cli import _default_v2py_cmd, _default_v2ray_cmd
from bench.procs import (
    ChainProcess,
    ChainStartError,
    cpu_seconds,
    free_ports,
    kill_all_started,
    start_chain,
    stop_chain,
)

START_TIMEOUT_S = 20.0
WARM_UP_S = 1.0
PAUSE_S = 0.3


@dataclass
class Side:
    """One chain under test: its processes and what its rounds measured."""

    name: str
    socks_port: int
    procs: list[ChainProcess]
    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)
    errors: int = 0

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) or 0.0 for p in self.procs)


async def _start(name: str, template: str, chain: str, workdir: Path) -> Side:
    socks, vmess = free_ports(2)
    plans = plan(CHAINS[chain], Ports(socks=socks, vmess=vmess, dial=vmess))
    side = Side(name, socks, [])
    await start_chain(plans, template, workdir, name, side.procs, START_TIMEOUT_S)
    return side


async def _round(side: Side, sink: loadgen.SinkServer, workers: int, seconds: float) -> None:
    cpu0 = side.cpu()
    result = await loadgen.conn_rate(side.socks_port, sink, workers, seconds)
    cpu1 = side.cpu()
    side.rates.append(result.per_s)
    side.cpu_us.append(1e6 * (cpu1 - cpu0) / max(1, result.connections))
    side.errors += result.errors


def report(a: Side, b: Side) -> str:
    lines = []
    for side in (a, b):
        lines.append(
            f"{side.name}: median {statistics.median(side.rates):.0f} conn/s, "
            f"CPU {statistics.median(side.cpu_us):.0f} us/conn (client + server), "
            f"errors {side.errors}; rounds: {' '.join(f'{r:.0f}' for r in side.rates)}"
        )
    ratios = [rb / ra for ra, rb in zip(a.rates, b.rates, strict=True) if ra > 0]
    if ratios:
        lines.append(
            f"B/A conn/s per round: median {statistics.median(ratios):.3f} "
            f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} rounds)"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-ab-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sink = loadgen.SinkServer()
    await sink.start()
    sides: list[Side] = []
    try:
        try:
            for name, template in (("A", args.a), ("B", args.b)):
                sides.append(await _start(name, template, args.chain, workdir))
        except (ChainStartError, OSError) as exc:
            print(f"bench.ab: {exc}", file=sys.stderr)
            return 1
        a, b = sides
        for side in sides:
            await loadgen.conn_rate(side.socks_port, sink, args.workers, WARM_UP_S)
        for r in range(args.rounds):
            for side in (a, b) if r % 2 == 0 else (b, a):
                await _round(side, sink, args.workers, args.seconds)
                await asyncio.sleep(PAUSE_S)
        print(f"[{args.chain}] A: {args.a}\n[{args.chain}] B: {args.b}")
        print(report(a, b), flush=True)
    finally:
        for side in sides:
            await stop_chain(side.procs)
        await sink.close()
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.ab",
        description="Connection rate of two commands on one chain, paired per round.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--a", default=_default_v2py_cmd(), help="command A, with {config}")
    p.add_argument("--b", default=_default_v2ray_cmd(), help="command B, with {config}")
    p.add_argument("--chain", default="vmess-mux", choices=sorted(CHAINS), metavar="NAME")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--seconds", type=float, default=2.0, help="load per side per round")
    p.add_argument("--workers", type=int, default=8, help="concurrent connection loops")
    p.add_argument("--workdir", help="where configs and process output go (default: a temp dir)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.workers < 1:
        p.error("--rounds and --workers must be at least 1, --seconds above 0")
    if CHAINS[args.chain].is_kcp:
        p.error("kcp chains need the bench's loss relay; use python -m bench for them")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency
            return asyncio.run(run(args))
        return uvloop.run(run(args))
    finally:
        kill_all_started()


if __name__ == "__main__":
    sys.exit(main())
