"""``python -m bench``: drive the same load through v2py's and v2ray's chains, compare."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import os
import platform
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import loadgen, report
from bench.chains import CHAINS, Ports, plan
from bench.procs import command_for, free_ports, kill_all_started
from bench.runner import MiB, Options, run_once

EXIT_OK, EXIT_USAGE, EXIT_PARTIAL = 0, 2, 3
KCP_MANY_CONNS_DEFAULT = 250
#: descriptors the bench holds per many-phase connection (its client end, the sink's end)
#: and besides them (listeners, pipes, the interpreter's own)
FDS_PER_MANY_CONN, FDS_SPARE = 2, 256


def _default_v2py_cmd() -> str:
    here = Path(sys.executable).parent / "v2py"
    exe = str(here) if here.exists() else (shutil.which("v2py") or "v2py")
    return f"{shlex.quote(exe)} run -c {{config}}"


def _default_v2ray_cmd() -> str:
    exe = os.environ.get("V2PY_V2RAY_BIN") or shutil.which("v2ray") or "/usr/bin/v2ray"
    return f"{shlex.quote(exe)} -config {{config}}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark v2py against v2ray 4.34 on identical chains on 127.0.0.1.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--chain",
        action="append",
        metavar="NAME",
        help=f"chain(s) to run, repeatable or comma-separated; one of: "
        f"{', '.join(CHAINS)} (default: all)",
    )
    p.add_argument(
        "--impl", default="v2py,v2ray", help="implementations to run, comma-separated (v2py, v2ray)"
    )
    p.add_argument("--runs", type=int, default=5, help="runs per implementation (medians)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke mode: 4 MiB bulk, 1 s conn-rate, 20 idle conns, 200 many-conns (50 on kcp)",
    )
    p.add_argument("--bulk-mib", type=float, default=256, help="bulk upload/download size")
    p.add_argument(
        "--kcp-bulk-mib",
        type=float,
        default=32,
        help="bulk size on kcp chains (v2ray's default mKCP capacity is ~5 MB/s up)",
    )
    p.add_argument(
        "--bulk-max-seconds",
        type=float,
        default=30,
        help="cap per bulk transfer; the rate is then bytes delivered / cap",
    )
    p.add_argument("--rate-seconds", type=float, default=5, help="connection-rate duration")
    p.add_argument("--rate-workers", type=int, default=8, help="concurrent connection workers")
    p.add_argument(
        "--idle-conns",
        type=int,
        default=1000,
        help="idle established connections for the RSS measurement (0: skip)",
    )
    p.add_argument(
        "--idle-wait",
        type=float,
        default=2.0,
        help="seconds to hold the idle connections before reading RSS",
    )
    p.add_argument(
        "--many-conns",
        type=int,
        default=5000,
        help="concurrent bulk connections of the last phase (0: skip)",
    )
    p.add_argument(
        "--kcp-many-conns",
        type=int,
        default=KCP_MANY_CONNS_DEFAULT,
        help="the same on kcp chains (all of them share one UDP socket pair)",
    )
    p.add_argument(
        "--many-kib",
        type=float,
        default=64,
        help="KiB each of those connections sends and gets echoed back",
    )
    p.add_argument(
        "--many-deadline",
        type=float,
        default=120,
        help="seconds for the whole many-connections phase; later ones fail",
    )
    p.add_argument(
        "--load-conns",
        type=int,
        default=100,
        help="bulk downloads running while new connections' first byte is timed "
        "(0: skip that phase)",
    )
    p.add_argument(
        "--load-probes",
        type=int,
        default=10,
        help="new connections timed, one after another, under that load",
    )
    p.add_argument(
        "--loss",
        type=float,
        default=0.0,
        metavar="PCT",
        help="kcp chains: drop PCT%% of UDP packets each way in a relay",
    )
    p.add_argument("--seed", type=int, default=1, help="seed of the relay's drop decisions")
    p.add_argument(
        "--start-timeout",
        type=float,
        default=15.0,
        help="seconds for a chain to listen and relay its first request",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write all results as JSON")
    p.add_argument("--png", type=Path, metavar="FILE", help="write a bar chart (matplotlib)")
    p.add_argument(
        "--v2py-cmd",
        default=_default_v2py_cmd(),
        help="command template for v2py; {config} is the config path",
    )
    p.add_argument(
        "--v2ray-cmd",
        default=_default_v2ray_cmd(),
        help="command template for v2ray; {config} is the config path",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        help="keep configs and process output here (default: a temp dir, removed)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="print per-phase progress")
    args = p.parse_args(argv)
    if args.quick:
        for name, value in (
            ("bulk_mib", 4),
            ("kcp_bulk_mib", 2),
            ("rate_seconds", 1),
            ("idle_conns", 20),
            ("idle_wait", 0.5),
            ("many_conns", 200),
            ("kcp_many_conns", 50),
            ("load_conns", 20),
            ("load_probes", 3),
        ):
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)
    names: list[str] = []
    for item in args.chain or list(CHAINS):
        names += [n.strip() for n in item.split(",") if n.strip()]
    bad = [n for n in names if n not in CHAINS]
    if bad:
        p.error(f"unknown chain(s) {', '.join(bad)}; known: {', '.join(CHAINS)}")
    args.chains = list(dict.fromkeys(names))
    args.impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    if not args.impls or any(i not in ("v2py", "v2ray") for i in args.impls):
        p.error("--impl takes v2py and/or v2ray")
    if args.runs < 1:
        p.error("--runs must be >= 1")
    if not 0 <= args.loss < 100:
        p.error("--loss must be in [0, 100)")
    if args.many_conns < 0 or args.kcp_many_conns < 0 or args.many_kib <= 0:
        p.error("--many-conns / --kcp-many-conns must be >= 0 and --many-kib > 0")
    return args


def _raise_nofile() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (as v2py and Go's runtime do); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _fit_many_to_fd_limit(args: argparse.Namespace, limit: int) -> None:
    """Lower the many-connections counts the bench cannot hold open, and say so."""
    most = max(0, (limit - FDS_SPARE) // FDS_PER_MANY_CONN)
    for name in ("many_conns", "kcp_many_conns"):
        value = getattr(args, name)
        if value > most:
            print(
                f"bench: open-files limit {limit} allows {most} concurrent connections; "
                f"--{name.replace('_', '-')} lowered from {value}",
                file=sys.stderr,
            )
            setattr(args, name, most)


def _version(template: str) -> str:
    argv = command_for(template, Path("x"))
    exe = argv[0]
    base = os.path.basename(exe)
    if "v2ray" in base:
        vargv = [exe, "-version"]
    elif base == "v2py":
        vargv = [exe, "version"]
    else:
        return "(custom command; version unknown)"
    try:
        out = subprocess.run(vargv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{exe}: {exc}"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else f"{exe}: no version output"


async def _main(args: argparse.Namespace, workroot: Path) -> dict[str, Any]:
    try:
        import uvloop  # noqa: F401

        loop_name = "uvloop"
    except ImportError:
        loop_name = "asyncio"
    opts = Options(
        bulk_bytes=int(args.bulk_mib * MiB),
        kcp_bulk_bytes=int(args.kcp_bulk_mib * MiB),
        bulk_cap=args.bulk_max_seconds,
        rate_seconds=args.rate_seconds,
        rate_workers=args.rate_workers,
        idle_conns=args.idle_conns,
        idle_wait=args.idle_wait,
        start_timeout=args.start_timeout,
        loss_pct=args.loss,
        seed=args.seed,
        verbose=args.verbose,
        many_conns=args.many_conns,
        kcp_many_conns=args.kcp_many_conns,
        many_bytes=int(args.many_kib * 1024),
        many_deadline=args.many_deadline,
        load_conns=args.load_conns,
        load_probes=args.load_probes,
    )
    templates = {"v2py": args.v2py_cmd, "v2ray": args.v2ray_cmd}
    summary: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "runs": args.runs,
            "bulk_mib": args.bulk_mib,
            "kcp_bulk_mib": args.kcp_bulk_mib,
            "bulk_max_seconds": args.bulk_max_seconds,
            "rate_seconds": args.rate_seconds,
            "rate_workers": args.rate_workers,
            "idle_conns": args.idle_conns,
            "many_conns": args.many_conns,
            "kcp_many_conns": args.kcp_many_conns,
            "many_kib": args.many_kib,
            "many_deadline": args.many_deadline,
            "load_conns": args.load_conns,
            "load_probes": args.load_probes,
            "loss_pct": args.loss,
            "seed": args.seed,
            "quick": args.quick,
            "commands": {i: templates[i] for i in args.impls},
            "versions": {i: _version(templates[i]) for i in args.impls},
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loop": loop_name,
            "load_generator": "in the bench process (single asyncio loop, buffered protocols)",
        },
        "chains": {},
        "ratios": {},
    }
    print(
        f"bench: {', '.join(args.chains)}; {args.runs} run(s) each of "
        f"{', '.join(args.impls)}; cpus={os.cpu_count()} loop={loop_name}",
        flush=True,
    )
    for impl in args.impls:
        print(f"  {impl}: {summary['meta']['versions'][impl]}  [{templates[impl]}]", flush=True)
    sink = loadgen.SinkServer()
    await sink.start()
    try:
        for chain in args.chains:
            spec = CHAINS[chain]
            use_relay = spec.is_kcp and args.loss > 0
            socks, vmess, relay_port = free_ports(3)
            ports = Ports(socks=socks, vmess=vmess, dial=relay_port if use_relay else vmess)
            plans = plan(spec, ports)
            chain_dir = workroot / chain
            chain_dir.mkdir(parents=True, exist_ok=True)
            cfgs = []
            for pl in plans:  # one file per process, shared by both implementations
                path = chain_dir / f"{pl.role}.json"
                path.write_text(pl.config_text())
                cfgs.append(path)
            per_impl: dict[str, Any] = {
                i: {"runs": 0, "ok_runs": 0, "all": [], "errors": [], "notes": [], "median": {}}
                for i in args.impls
            }
            print(
                f"\n[{chain}] {spec.description}"
                + (f"; relay drops {args.loss:g}% each way" if use_relay else ""),
                flush=True,
            )
            gave_up: set[str] = set()
            for run in range(args.runs):
                order = list(args.impls) if run % 2 == 0 else list(reversed(args.impls))
                for impl in order:
                    if impl in gave_up:
                        continue
                    rdir = chain_dir / f"{impl}-run{run + 1}"
                    t0 = time.monotonic()
                    res = await run_once(
                        spec,
                        impl,
                        templates[impl],
                        plans,
                        cfgs,
                        socks,
                        vmess,
                        relay_port if use_relay else 0,
                        rdir,
                        sink,
                        opts,
                    )
                    entry = per_impl[impl]
                    entry["runs"] += 1
                    entry["all"].append(res)
                    entry["notes"] += res["notes"]
                    took = time.monotonic() - t0
                    if res["ok"]:
                        entry["ok_runs"] += 1
                        m = res["metrics"]
                        many = (
                            f"  many {m['many_completed']}/{m['many_total']} "
                            f"{m['many_wall_s']:.1f}s"
                            if "many_total" in m
                            else ""
                        )
                        print(
                            f"  run {run + 1} {impl:<5} ok  {took:5.1f}s  "
                            f"up {m.get('upload_mb_s', 0):8.1f} MB/s  "
                            f"down {m.get('download_mb_s', 0):8.1f} MB/s  "
                            f"{m.get('conn_per_s', 0):7.0f} conn/s{many}",
                            flush=True,
                        )
                    else:
                        entry["errors"].append(res["error"])
                        print(
                            f"  run {run + 1} {impl:<5} FAILED ({took:.1f}s): {res['error']}",
                            flush=True,
                        )
                        if "chain failed to start" in (res["error"] or ""):
                            gave_up.add(impl)
                            print(f"  ({impl} will not be retried on {chain})", flush=True)
            for i in args.impls:
                per_impl[i]["median"] = report.medians(per_impl[i]["all"])
            summary["chains"][chain] = per_impl
            if set(args.impls) == {"v2py", "v2ray"}:
                a, b = per_impl["v2py"]["median"], per_impl["v2ray"]["median"]
                summary["ratios"][chain] = {
                    k: report.ratio(a.get(k), b.get(k)) for k in sorted(set(a) & set(b))
                }
    finally:
        await sink.close()
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _fit_many_to_fd_limit(args, _raise_nofile())
    atexit.register(kill_all_started)

    def _term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # explicit for SIGINT too: a bench started in the background of a script inherits
    # SIGINT ignored, and would otherwise leave its chain processes running
    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    tmp = None
    if args.workdir:
        workroot = args.workdir
        workroot.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="v2py-bench-")
        workroot = Path(tmp.name)
    try:
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        summary = runner(_main(args, workroot))
    except KeyboardInterrupt:
        print("\nbench: interrupted; stopping chain processes", file=sys.stderr)
        return 130
    finally:
        kill_all_started()
        if tmp is not None:
            tmp.cleanup()
    impls = [i for i in ("v2py", "v2ray") if i in args.impls]
    print(report.table(summary, impls))
    print(
        "\nratios are v2py/v2ray (throughput and conn/s: higher is better for v2py; "
        "latency, CPU and RSS: lower is better)"
    )
    if args.json:
        report.write_json(args.json, summary)
        print(f"bench: wrote {args.json}")
    if args.png:
        why = report.write_png(args.png, summary, impls)
        print(f"bench: {why}" if why else f"bench: wrote {args.png}")
    failed = any(e["errors"] for c in summary["chains"].values() for e in c.values())
    return EXIT_PARTIAL if failed else EXIT_OK
