"""Operator scale: many users, one connection at a time, start-up and resting memory,
v2py against v2ray 4.34 side by side.

``python -m bench.users`` (from the repository root) runs two phases.

Users phase: for every user count (``--users``, default 1, 1,000 and 10,000) and
authentication (``--auth``: ``aead`` = every user alterId 0, the client sends AEAD
headers; ``legacy`` = every user alterId 4, the client sends legacy headers), one
server config holding that many users (uuid5 ids, emails ``u<i>@bench``) and one client
config that is the *last* user (so a linear scan tries every other user first). The
chain is socks -> VMess -> VMess -> freedom. The very same two files go to both
implementations. Per run (fresh processes; the order of the implementations flips
every run):

* ``server ready ms``: spawn of the server to its VMess port listening (the config
  load, users included);
* ``warm-up s``: after the first reply through the chain, time until the server runs
  (or waits runnable) less than 10% of the time (v2py builds the rest of its legacy
  auth table in the background; v2ray builds all of it before listening), capped by
  ``--settle-max``;
* RSS of the server at rest, then ``--concurrency`` (default 1 and 8) loops of
  connect + SOCKS5 CONNECT + one 64-byte request/response + close for ``--seconds``:
  conn/s and p50 of the whole connection, server CPU ms per 1000 connections;
* RSS of the server after the load and its peak (VmHWM).

Start-up phase: ``socks-freedom`` (one process) and ``vmess-aead`` (server and client
spawned together, one user): spawn to the first 64-byte reply through the chain,
polled every 5 ms, and the resting RSS of each process 1 s later.

Medians of ``--runs`` (default 5) runs, v2py/v2ray ratios; ``--json`` and ``--png``.
The machine this is developed on is shared by other jobs: keep ``--seconds`` short,
read the ratios of one run, not absolute numbers, and expect +-20% noise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.chains import LOG, ProcPlan
from bench.procs import (
    ChainProcess,
    command_for,
    cpu_seconds,
    free_ports,
    kill_all_started,
    read_status_kib,
    stop_chain,
)

START_TIMEOUT_S = 120.0  # v2ray builds 10,000 x 5 legacy IDs x 241 s before it listens
PROBE_TIMEOUT_S = 30.0
#: A server is "at rest" when it ran or waited runnable for less than this share of
#: SETTLE_TICK_S (run-queue waits count: a starved process is not idle).
SETTLE_CPU_SHARE = 0.10
SETTLE_TICK_S = 0.25
_NAMESPACE = uuid.UUID("6f1d3a52-35c8-4b0e-9a4b-0b5a6c1e0d11")
LEGACY_ALTER_ID = 4


def user_ids(count: int) -> list[str]:
    """``count`` distinct, reproducible user ids."""
    return [str(uuid.uuid5(_NAMESPACE, f"bench-user-{i}")) for i in range(count)]


def users_plans(count: int, auth: str, socks: int, vmess: int) -> list[ProcPlan]:
    """(server with ``count`` users, client as the last of them), server first."""
    alter = LEGACY_ALTER_ID if auth == "legacy" else 0
    ids = user_ids(count)
    clients = [
        {"id": uid, "alterId": alter, "email": f"u{i}@bench", "level": 0}
        for i, uid in enumerate(ids)
    ]
    server = {
        "log": LOG,
        "inbounds": [
            {
                "tag": "vmess-in",
                "listen": "127.0.0.1",
                "port": vmess,
                "protocol": "vmess",
                "settings": {"clients": clients},
            }
        ],
        "outbounds": [{"tag": "direct", "protocol": "freedom", "settings": {}}],
    }
    client = {
        "log": LOG,
        "inbounds": [
            {
                "tag": "socks-in",
                "listen": "127.0.0.1",
                "port": socks,
                "protocol": "socks",
                "settings": {"auth": "noauth", "udp": False},
            }
        ],
        "outbounds": [
            {
                "tag": "vmess-out",
                "protocol": "vmess",
                "settings": {
                    "vnext": [
                        {
                            "address": "127.0.0.1",
                            "port": vmess,
                            "users": [{"id": ids[-1], "alterId": alter, "security": "aes-128-gcm"}],
                        }
                    ]
                },
            }
        ],
    }
    return [
        ProcPlan("server", server, tcp_ports=[vmess]),
        ProcPlan("client", client, tcp_ports=[socks]),
    ]


def startup_plans(name: str, socks: int, vmess: int) -> list[ProcPlan]:
    if name == "socks-freedom":
        config = {
            "log": LOG,
            "inbounds": [
                {
                    "tag": "socks-in",
                    "listen": "127.0.0.1",
                    "port": socks,
                    "protocol": "socks",
                    "settings": {"auth": "noauth", "udp": False},
                }
            ],
            "outbounds": [{"tag": "direct", "protocol": "freedom", "settings": {}}],
        }
        return [ProcPlan("client", config, tcp_ports=[socks])]
    return users_plans(1, "aead", socks, vmess)


STARTUP_CONFIGS = ("socks-freedom", "vmess-aead")


@dataclass
class Group:
    """One (configuration, implementation): every run's metrics."""

    runs: list[dict[str, float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def median(self) -> dict[str, float]:
        keys = sorted({k for r in self.runs for k in r})
        return {k: statistics.median([r[k] for r in self.runs if k in r]) for k in keys}


def _mib(pid: int, key: str) -> float | None:
    kib = read_status_kib(pid, key)
    return kib / 1024 if kib is not None else None


async def _first_reply(socks: int, sink: loadgen.SinkServer, procs: list[ChainProcess],
                       timeout: float, pause: float) -> None:  # fmt: skip
    """A ping end to end, retried every ``pause`` s until the chain answers."""
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        for p in procs:
            if not p.alive():
                raise RuntimeError(p.describe_failure("died before the first reply"))
        peer = None
        try:
            async with asyncio.timeout(2.0):
                peer = await loadgen.socks_connect(socks, sink.port)
                await loadgen.ping_once(peer)
            return
        except (OSError, ConnectionError, TimeoutError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        finally:
            if peer is not None:
                peer.abort()
        await asyncio.sleep(pause)
    raise RuntimeError(f"no reply through the chain within {timeout:g} s ({last})")


def _busy_seconds(pid: int) -> float | None:
    """Seconds ``pid``'s threads ran or waited runnable for a CPU (/proc schedstat).

    Counting the run-queue wait too means a starved process on a loaded machine does
    not look idle; None when the process is gone.
    """
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as fh:
                run_ns, wait_ns = fh.read().split()[:2]
        except (OSError, ValueError):
            continue
        total += int(run_ns) + int(wait_ns)
    return total / 1e9


async def _settle(pid: int, limit: float) -> float:
    """Seconds until ``pid`` is busy (running or runnable) < SETTLE_CPU_SHARE of one
    tick (<= limit)."""
    t0 = time.monotonic()
    before = _busy_seconds(pid) or 0.0
    while time.monotonic() - t0 < limit:
        await asyncio.sleep(SETTLE_TICK_S)
        now = _busy_seconds(pid) or 0.0
        if now - before < SETTLE_CPU_SHARE * SETTLE_TICK_S:
            return max(0.0, time.monotonic() - t0 - SETTLE_TICK_S)
        before = now
    return time.monotonic() - t0


def _spawn(plan: ProcPlan, impl: str, template: str, workdir: Path, tag: str) -> ChainProcess:
    path = workdir / f"{tag}-{plan.role}.json"
    if not path.exists():  # one file per configuration, shared by both implementations
        path.write_text(plan.config_text())
    proc = ChainProcess(f"{tag}-{impl}-{plan.role}", command_for(template, path), workdir)
    proc.start()
    return proc


async def users_pass(count: int, auth: str, impl: str, template: str,
                     args: argparse.Namespace, workdir: Path,
                     sink: loadgen.SinkServer) -> dict[str, float]:  # fmt: skip
    socks, vmess = free_ports(2)
    tag = f"users-{auth}-{count}"
    plans = users_plans(count, auth, socks, vmess)
    # Ports differ per pass; the configs are rewritten (same users, same shape).
    for p in plans:
        (workdir / f"{tag}-{p.role}.json").unlink(missing_ok=True)
    procs: list[ChainProcess] = []
    m: dict[str, float] = {}
    try:
        t0 = time.monotonic()
        server = _spawn(plans[0], impl, template, workdir, tag)
        procs.append(server)
        await asyncio.to_thread(server.wait_ready, plans[0], START_TIMEOUT_S)
        m["server_ready_ms"] = (time.monotonic() - t0) * 1000
        client = _spawn(plans[1], impl, template, workdir, tag)
        procs.append(client)
        await asyncio.to_thread(client.wait_ready, plans[1], START_TIMEOUT_S)
        await _first_reply(socks, sink, procs, PROBE_TIMEOUT_S, 0.05)
        m["warmup_s"] = await _settle(server.pid, args.settle_max)
        rest = _mib(server.pid, "VmRSS")
        if rest is not None:
            m["server_rss_rest_mib"] = rest
        for conc in args.concurrency:
            cpu0 = cpu_seconds(server.pid)
            res = await loadgen.conn_rate(socks, sink, conc, args.seconds)
            cpu1 = cpu_seconds(server.pid)
            m[f"conn_s_c{conc}"] = res.per_s
            p50 = loadgen.percentile(res.total_lat, 50)
            if p50 is not None:
                m[f"p50_ms_c{conc}"] = p50 * 1000
            if res.errors:
                m[f"errors_c{conc}"] = res.errors
            if res.connections and cpu0 is not None and cpu1 is not None:
                m[f"server_cpu_ms_per_kconn_c{conc}"] = (cpu1 - cpu0) * 1e6 / res.connections
        for key, name in (("VmRSS", "server_rss_after_mib"), ("VmHWM", "server_rss_peak_mib")):
            v = _mib(server.pid, key)
            if v is not None:
                m[name] = v
        client_rss = _mib(client.pid, "VmRSS")
        if client_rss is not None:
            m["client_rss_mib"] = client_rss
        for p in procs:
            if not p.alive():
                raise RuntimeError(p.describe_failure("died during the pass"))
        return m
    finally:
        await stop_chain(procs)


async def startup_pass(name: str, impl: str, template: str, workdir: Path,
                       sink: loadgen.SinkServer) -> dict[str, float]:  # fmt: skip
    socks, vmess = free_ports(2)
    tag = f"startup-{name}"
    plans = startup_plans(name, socks, vmess)
    for p in plans:
        (workdir / f"{tag}-{p.role}.json").unlink(missing_ok=True)
    procs: list[ChainProcess] = []
    m: dict[str, float] = {}
    try:
        for plan in plans:  # written before the clock starts
            (workdir / f"{tag}-{plan.role}.json").write_text(plan.config_text())
        t0 = time.monotonic()
        for plan in plans:
            procs.append(_spawn(plan, impl, template, workdir, tag))
        await _first_reply(socks, sink, procs, PROBE_TIMEOUT_S, 0.005)
        m["first_reply_ms"] = (time.monotonic() - t0) * 1000
        await asyncio.sleep(1.0)
        for proc, plan in zip(procs, plans, strict=True):
            v = _mib(proc.pid, "VmRSS")
            if v is not None:
                m[f"rss_rest_mib:{plan.role}"] = v
        return m
    finally:
        await stop_chain(procs)


# ------------------------------------------------------------------------------ report


def _labels(concurrency: list[int]) -> list[tuple[str, str, str]]:
    rows = [("server_ready_ms", "server ready ms (config load)", "{:.0f}"),
            ("warmup_s", "warm-up after first reply s", "{:.1f}"),
            ("server_rss_rest_mib", "server RSS at rest MiB", "{:.1f}")]  # fmt: skip
    for c in concurrency:
        rows += [
            (f"conn_s_c{c}", f"conn/s, {c} concurrent", "{:.0f}"),
            (f"p50_ms_c{c}", f"p50 ms, {c} concurrent", "{:.2f}"),
            (f"server_cpu_ms_per_kconn_c{c}", f"server CPU ms/1k conns, {c} conc", "{:.0f}"),
        ]
    rows += [("server_rss_after_mib", "server RSS after MiB", "{:.1f}"),
             ("server_rss_peak_mib", "server RSS peak MiB", "{:.1f}"),
             ("client_rss_mib", "client RSS MiB", "{:.1f}")]  # fmt: skip
    return rows


STARTUP_ROWS = [
    ("first_reply_ms", "spawn to first reply ms", "{:.0f}"),
    ("rss_rest_mib:client", "RSS at rest MiB (socks side)", "{:.1f}"),
    ("rss_rest_mib:server", "RSS at rest MiB (vmess server)", "{:.1f}"),
]


def _table(title: str, groups: dict[str, Group], impls: list[str],
           rows: list[tuple[str, str, str]]) -> list[str]:  # fmt: skip
    med = {i: groups[i].median() for i in impls}
    both = impls == ["v2py", "v2ray"]
    runs = ", ".join(f"{i}: {len(groups[i].runs)} ok" for i in impls)
    head = f"{'metric':<36}" + "".join(f"{i:>10}" for i in impls)
    head += f"{'v2py/v2ray':>12}" if both else ""
    out = ["", f"== {title}  ({runs})", head, "-" * len(head)]
    for key, label, fmt in rows:
        vals = [med[i].get(key) for i in impls]
        if all(v is None for v in vals):
            continue
        line = f"{label:<36}" + "".join(f"{'-' if v is None else fmt.format(v):>10}" for v in vals)
        if both and vals[0] is not None and vals[1]:
            line += f"{vals[0] / vals[1]:>12.2f}"
        out.append(line)
    for i in impls:
        for e in groups[i].errors[:2]:
            out.append(f"  FAILED [{i}]: {e.splitlines()[0]}")
    return out


def write_png(path: Path, summary: dict[str, Any], impls: list[str],
              concurrency: list[int]) -> str | None:  # fmt: skip
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'); PNG skipped"
    users = summary["users"]
    startup = summary["startup"]
    panels: list[tuple[str, str, dict[str, Any]]] = []
    for c in concurrency:
        panels.append((f"conn_s_c{c}", f"conn/s, {c} concurrent", users))
        panels.append((f"p50_ms_c{c}", f"p50 ms, {c} concurrent", users))
    panels += [
        ("server_ready_ms", "server ready ms (config load)", users),
        ("server_rss_rest_mib", "server RSS at rest MiB", users),
        ("first_reply_ms", "start-up: spawn to first reply ms", startup),
        ("rss_rest_mib:client", "start-up: RSS at rest MiB", startup),
    ]
    cols = 4
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    width = 0.8 / max(1, len(impls))
    for ax, (key, title, block) in zip(axes.flat, panels, strict=False):
        names = list(block)
        for n, impl in enumerate(impls):
            vals = [block[g][impl]["median"].get(key) or 0.0 for g in names]
            xs = [x + (n - (len(impls) - 1) / 2) * width for x in range(len(names))]
            ax.bar(xs, vals, width, label=impl)
        log = key == "server_ready_ms"  # 30 ms to tens of seconds
        if log and any(block[g][i]["median"].get(key) for g in names for i in impls):
            ax.set_yscale("log")
        ax.set_title(title + (" (log)" if log else ""))
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    axes.flat[0].legend()
    fig.suptitle(f"v2py vs v2ray 4.34: users and start-up, medians of {summary['meta']['runs']} "
                 "alternating runs (shared 2-core machine: noisy)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return None


# ------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from bench.cli import _default_v2py_cmd, _default_v2ray_cmd

    p = argparse.ArgumentParser(prog="python -m bench.users", description=__doc__.split("\n")[0])
    p.add_argument("--impl", default="v2py,v2ray", help="comma-separated: v2py, v2ray")
    p.add_argument("--users", default="1,1000,10000", help="comma-separated user counts")
    p.add_argument("--auth", default="aead,legacy", help="comma-separated: aead, legacy")
    p.add_argument("--concurrency", default="1,8", help="comma-separated connection loops")
    p.add_argument("--runs", type=int, default=5, help="alternating runs per configuration")
    p.add_argument("--seconds", type=float, default=2.0, help="per connection-rate step")
    p.add_argument("--settle-max", type=float, default=60.0,
                   help="most seconds to wait for the server to come to rest")  # fmt: skip
    p.add_argument("--skip-users", action="store_true")
    p.add_argument("--skip-startup", action="store_true")
    p.add_argument("--v2py-cmd", default=_default_v2py_cmd())
    p.add_argument("--v2ray-cmd", default=_default_v2ray_cmd())
    p.add_argument("--json", type=Path)
    p.add_argument("--png", type=Path)
    args = p.parse_args(argv)
    args.impls = [i.strip() for i in args.impl.split(",") if i.strip()]
    args.user_counts = [int(u) for u in args.users.split(",") if u.strip()]
    args.auths = [a.strip() for a in args.auth.split(",") if a.strip()]
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    bad = [a for a in args.auths if a not in ("aead", "legacy")]
    bad += [i for i in args.impls if i not in ("v2py", "v2ray")]
    if bad or not args.user_counts or min(args.user_counts) < 1:
        p.error(f"bad --auth/--impl/--users: {bad or args.users}")
    return args


async def _alternate(name: str, impls: list[str], runs: int, one: Any) -> dict[str, Group]:
    groups = {i: Group() for i in impls}
    for run in range(runs):
        for impl in impls if run % 2 == 0 else list(reversed(impls)):
            t0 = time.monotonic()
            try:
                m = await one(impl)
            except (RuntimeError, OSError, ConnectionError, TimeoutError) as exc:
                groups[impl].errors.append(str(exc) or type(exc).__name__)
                print(f"  {name} run {run + 1} {impl:5} FAILED: {str(exc).splitlines()[0]}",
                      flush=True)  # fmt: skip
                continue
            groups[impl].runs.append(m)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in m.items())
            print(f"  {name} run {run + 1} {impl:5} {time.monotonic() - t0:5.1f}s  {shown}",
                  flush=True)  # fmt: skip
    return groups


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    templates = {"v2py": args.v2py_cmd, "v2ray": args.v2ray_cmd}
    summary: dict[str, Any] = {
        "meta": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "runs": args.runs,
            "seconds": args.seconds,
            "users": args.user_counts,
            "auth": args.auths,
            "concurrency": args.concurrency,
            "commands": {i: templates[i] for i in args.impls},
            "cpus": os.cpu_count(),
            "loadavg": os.getloadavg(),
        },
        "users": {},
        "startup": {},
    }
    if os.environ.get("PYTHONDONTWRITEBYTECODE") and not args.skip_startup:
        print(
            "note: PYTHONDONTWRITEBYTECODE is set: v2py's start-up includes compiling every "
            "module that has no current .pyc (an installed wheel has them; in a checkout run "
            "python -m compileall src once without the variable)",
            flush=True,
        )
    workdir = Path(tempfile.mkdtemp(prefix="bench-users-"))
    sink = loadgen.SinkServer()
    await sink.start()
    lines: list[str] = []
    try:
        if not args.skip_users:
            for auth in args.auths:
                for count in args.user_counts:
                    name = f"{auth}/{count}"

                    async def one(
                        impl: str, auth: str = auth, count: int = count
                    ) -> dict[str, float]:
                        return await users_pass(count, auth, impl, templates[impl], args,
                                                workdir, sink)  # fmt: skip

                    groups = await _alternate(name, args.impls, args.runs, one)
                    summary["users"][name] = {
                        i: {"runs": g.runs, "errors": g.errors, "median": g.median()}
                        for i, g in groups.items()
                    }
                    title = f"users {name} ({'alterId 4' if auth == 'legacy' else 'alterId 0'})"
                    lines += _table(title, groups, args.impls, _labels(args.concurrency))
        if not args.skip_startup:
            for name in STARTUP_CONFIGS:

                async def one(impl: str, name: str = name) -> dict[str, float]:
                    return await startup_pass(name, impl, templates[impl], workdir, sink)

                groups = await _alternate(f"start-up {name}", args.impls, args.runs, one)
                summary["startup"][name] = {
                    i: {"runs": g.runs, "errors": g.errors, "median": g.median()}
                    for i, g in groups.items()
                }
                lines += _table(f"start-up {name}", groups, args.impls, STARTUP_ROWS)
    finally:
        await sink.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(lines))
    print("\nratios are v2py/v2ray (conn/s: higher is better for v2py; ms and MiB: lower)")
    summary["meta"]["loadavg_end"] = os.getloadavg()
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        try:
            import uvloop

            summary = uvloop.run(main_async(args))
        except ImportError:
            summary = asyncio.run(main_async(args))
    except KeyboardInterrupt:
        return 130
    finally:
        kill_all_started()
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"bench: wrote {args.json}")
    if args.png is not None:
        impls = [i for i in ("v2py", "v2ray") if i in args.impls]
        why = write_png(args.png, summary, impls, args.concurrency)
        print(f"bench: {why}" if why else f"bench: wrote {args.png}")
    failed = any(
        e["errors"] for block in ("users", "startup") for g in summary[block].values()
        for e in g.values()
    )  # fmt: skip
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
