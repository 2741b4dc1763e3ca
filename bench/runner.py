"""One run: start one implementation's chain, drive every phase through it, stop it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.chains import ChainSpec, ProcPlan
from bench.procs import (
    ChainProcess,
    ChainStartError,
    command_for,
    cpu_seconds,
    fd_count,
    read_status_kib,
    self_cpu_seconds,
)
from bench.relay import LossyUdpRelay

MiB = 1 << 20


@dataclass
class Options:
    bulk_bytes: int
    kcp_bulk_bytes: int
    bulk_cap: float
    rate_seconds: float
    rate_workers: int
    idle_conns: int
    idle_wait: float
    start_timeout: float
    loss_pct: float
    seed: int
    verbose: bool
    many_conns: int = 0
    kcp_many_conns: int = 0
    many_bytes: int = 64 * 1024
    many_deadline: float = 120.0
    load_conns: int = 0
    load_probes: int = 10


#: fds a chain process may hold above its pre-phase count once the phase has drained
#: (runtime housekeeping such as a lazily opened resolver socket), and how long to wait.
FD_TOLERANCE = 2
FD_SETTLE_S = 10.0


class PhaseError(RuntimeError):
    pass


def _log(opts: Options, msg: str) -> None:
    if opts.verbose:
        print(f"    {msg}", flush=True)


async def _probe(
    procs: list[ChainProcess], socks_port: int, sink: loadgen.SinkServer, timeout: float
) -> float:
    """One ping end to end, retried until the chain answers; returns the time it took."""
    t0 = time.monotonic()
    last: str = "no attempt"
    while time.monotonic() - t0 < timeout:
        for p in procs:
            if not p.alive():
                raise ChainStartError(p.describe_failure("died before the first request"))
        peer = None
        try:
            async with asyncio.timeout(max(0.5, min(3.0, timeout - (time.monotonic() - t0)))):
                peer = await loadgen.socks_connect(socks_port, sink.port)
                await loadgen.ping_once(peer)
            return time.monotonic() - t0
        except (OSError, ConnectionError, TimeoutError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        finally:
            if peer is not None:
                peer.abort()
        await asyncio.sleep(0.2)
    tails = "\n".join(p.describe_failure("is up but the chain did not relay") for p in procs)
    raise ChainStartError(f"first request through the chain failed ({last})\n{tails}")


def _rss(procs: list[ChainProcess], key: str = "VmRSS") -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for p in procs:
        kib = read_status_kib(p.pid, key)
        out[p.role] = kib / 1024 if kib is not None else None
    return out


def _cpu(procs: list[ChainProcess]) -> dict[str, float | None]:
    return {p.role: cpu_seconds(p.pid) for p in procs}


def _fds(procs: list[ChainProcess]) -> dict[str, int | None]:
    out: dict[str, int | None] = {p.role: fd_count(p.pid) for p in procs}
    out["bench"] = fd_count("self")
    return out


async def _wait_fds_settled(
    procs: list[ChainProcess], before: dict[str, int | None], settle_s: float
) -> dict[str, int | None]:
    """Poll until every fd count is back to ``before`` + FD_TOLERANCE (or ``settle_s``)."""
    deadline = time.monotonic() + settle_s
    while True:
        now = _fds(procs)
        if all(
            b is None or (v is not None and v <= b + FD_TOLERANCE)
            for v, b in ((now.get(k), b) for k, b in before.items())
        ):
            return now
        if time.monotonic() >= deadline:
            return now
        await asyncio.sleep(0.1)


async def _many_phase(
    procs: list[ChainProcess],
    count: int,
    socks_port: int,
    sink: loadgen.SinkServer,
    opts: Options,
    metrics: dict[str, Any],
    notes: list[str],
) -> None:
    """Many concurrent bulk connections: completion, verified bytes, fd leak per process."""
    fds_before = _fds(procs)
    async with asyncio.timeout(opts.many_deadline + 30):
        res = await loadgen.many_conns(socks_port, sink, count, opts.many_bytes, opts.many_deadline)
    _check_alive(procs, "many connections")
    fds_after = await _wait_fds_settled(procs, fds_before, FD_SETTLE_S)
    metrics["many_total"] = res.total
    metrics["many_completed"] = res.completed
    metrics["many_verified_mib"] = res.bytes_verified / MiB
    metrics["many_connect_s"] = res.connect_s
    metrics["many_transfer_s"] = res.transfer_s
    metrics["many_wall_s"] = res.wall_s
    for role, b in fds_before.items():
        a = fds_after.get(role)
        if a is not None and b is not None:
            metrics[f"many_fd_before:{role}"] = b
            metrics[f"many_fd_after:{role}"] = a
            metrics[f"many_fd_delta:{role}"] = a - b
    _put_roles(metrics, "many_rss_peak_mib", _rss(procs, "VmHWM"))
    if res.completed < res.total:
        notes.append(
            f"many: {res.completed}/{res.total} completed "
            f"({res.established} established), first error: {res.first_error}"
        )
    leaks = [
        f"{role} {fds_after[role]} vs {b}"
        for role, b in fds_before.items()
        if b is not None and (fds_after.get(role) or 0) > b + FD_TOLERANCE
    ]
    if leaks:
        notes.append(
            f"many: fds not back to the pre-phase count after {FD_SETTLE_S:g}s: " + ", ".join(leaks)
        )
    _log(
        opts,
        f"many: {res.completed}/{res.total} in {res.wall_s:.1f}s, fds {fds_before} -> {fds_after}",
    )


async def _load_phase(
    procs: list[ChainProcess],
    socks_port: int,
    sink: loadgen.SinkServer,
    opts: Options,
    metrics: dict[str, Any],
    notes: list[str],
) -> None:
    """New connections' first-byte latency while ``load_conns`` downloads run."""
    async with asyncio.timeout(60 + opts.load_probes * 25):
        res = await loadgen.first_byte_under_load(
            socks_port, sink, opts.load_conns, opts.load_probes, parallel=opts.load_conns
        )
    _check_alive(procs, "first byte under load")
    for name, values in (("first_byte", res.first_byte), ("connect", res.connect)):
        v = loadgen.percentile(values, 50)
        if v is not None:
            metrics[f"load_{name}_p50_ms"] = v * 1000
    if res.first_byte:
        metrics["load_first_byte_max_ms"] = max(res.first_byte) * 1000
    metrics["load_probe_errors"] = res.probe_errors
    metrics["load_bulk_started"] = res.bulk_started
    metrics["load_bulk_lost"] = res.bulk_lost
    metrics["load_bulk_mb_s"] = res.bulk_mb_s
    metrics["load_bench_lag_max_ms"] = res.loop_lag_max * 1000
    if res.first_error:
        notes.append(
            f"loaded: {res.probe_errors} probe(s) failed, "
            f"{res.bulk_lost} download(s) dropped; first: {res.first_error}"
        )
    _log(
        opts,
        f"loaded: first byte {[round(x * 1000) for x in res.first_byte]} ms, "
        f"{res.bulk_started}/{res.bulk} downloads, {res.bulk_lost} dropped",
    )
    await asyncio.sleep(0.5)


def _check_alive(procs: list[ChainProcess], phase: str) -> None:
    for p in procs:
        if not p.alive():
            raise PhaseError(p.describe_failure(f"died during {phase}"))


def _put_roles(m: dict[str, Any], prefix: str, values: dict[str, float | None]) -> None:
    for role, v in values.items():
        if v is not None:
            m[f"{prefix}:{role}"] = v


async def run_once(
    spec: ChainSpec,
    impl: str,
    template: str,
    plans: list[ProcPlan],
    config_paths: list[Path],
    socks_port: int,
    vmess_port: int,
    relay_port: int,
    workdir: Path,
    sink: loadgen.SinkServer,
    opts: Options,
) -> dict[str, Any]:
    """Run every phase once; returns ``{"ok": bool, "metrics": {...}, "error": str|None}``."""
    metrics: dict[str, Any] = {}
    result: dict[str, Any] = {"ok": False, "metrics": metrics, "error": None, "notes": []}
    procs: list[ChainProcess] = []
    relay: LossyUdpRelay | None = None
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        if relay_port:
            relay = LossyUdpRelay(vmess_port, opts.loss_pct, opts.seed)
            await relay.start(relay_port)
        t_spawn = time.monotonic()
        for plan, cfg in zip(plans, config_paths, strict=True):
            proc = ChainProcess(plan.role, command_for(template, cfg), workdir)
            procs.append(proc)
            try:
                proc.start()
            except OSError as exc:
                raise ChainStartError(f"cannot start {proc.argv[0]}: {exc}") from exc
            await asyncio.to_thread(proc.wait_ready, plan, opts.start_timeout)
        await _probe(procs, socks_port, sink, opts.start_timeout)
        metrics["startup_ms"] = (time.monotonic() - t_spawn) * 1000
        await asyncio.sleep(0.3)
        _put_roles(metrics, "rss_start_mib", _rss(procs))

        # -- idle connections (fresh chain, before bulk traffic grows any heap) -------------
        if opts.idle_conns > 0:
            before = _rss(procs)
            async with asyncio.timeout(60 + opts.idle_conns * 0.05):
                peers, errors, first = await loadgen.open_idle(socks_port, sink, opts.idle_conns)
            try:
                await asyncio.sleep(opts.idle_wait)
                _check_alive(procs, "idle connections")
                during = _rss(procs)
                metrics["idle_open"] = len(peers)
                metrics["idle_errors"] = errors
                if first:
                    result["notes"].append(f"idle: {errors} failed, first: {first}")
                _put_roles(metrics, "idle_rss_mib", during)
                if peers:
                    for role, v in during.items():
                        b = before.get(role)
                        if v is not None and b is not None:
                            metrics[f"idle_kib_per_conn:{role}"] = (v - b) * 1024 / len(peers)
            finally:
                for p in peers:
                    p.abort()
            _log(opts, f"idle: {len(peers)} open, rss {during}")
            await asyncio.sleep(0.5)

        # -- connection rate ---------------------------------------------------------------
        cpu0 = _cpu(procs)
        me_rate0 = self_cpu_seconds()
        async with asyncio.timeout(opts.rate_seconds + 20):
            rate = await loadgen.conn_rate(socks_port, sink, opts.rate_workers, opts.rate_seconds)
        cpu1 = _cpu(procs)
        me_rate1 = self_cpu_seconds()
        _check_alive(procs, "connection rate")
        metrics["conn_per_s"] = rate.per_s
        metrics["conn_errors"] = rate.errors
        if rate.first_error:
            result["notes"].append(f"conn-rate: {rate.errors} failed, first: {rate.first_error}")
        for key, vals in (("conn", rate.total_lat), ("exch", rate.exchange_lat)):
            for pct in (50, 99):
                v = loadgen.percentile(vals, pct)
                if v is not None:
                    metrics[f"{key}_p{pct}_ms"] = v * 1000
        if rate.connections:
            for role in cpu0:
                a, b = cpu0[role], cpu1[role]
                if a is not None and b is not None:
                    metrics[f"cpu_ms_per_kconn:{role}"] = (b - a) * 1000 / rate.connections * 1000
            # The load generator and the sink share the machine's cores with the chain.
            metrics["cpu_ms_per_kconn:bench"] = (me_rate1 - me_rate0) * 1e6 / rate.connections
        _log(opts, f"conn-rate: {rate.per_s:.0f}/s, errors {rate.errors}")

        # -- bulk upload and download -----------------------------------------------------
        # mKCP only: V2Ray's default mKCP moves a few MB/s. QUIC gets the full size (its
        # first second is slow start, so a small transfer measures mostly the ramp-up).
        size = opts.kcp_bulk_bytes if spec.is_kcp else opts.bulk_bytes
        cpu0 = _cpu(procs)
        me0 = self_cpu_seconds()
        moved = 0
        for name, fn in (("upload", loadgen.bulk_upload), ("download", loadgen.bulk_download)):
            async with asyncio.timeout(opts.bulk_cap + 20):
                try:
                    res = await fn(socks_port, sink, size, opts.bulk_cap)
                except (OSError, ConnectionError) as exc:
                    _check_alive(procs, name)
                    raise PhaseError(f"{name} failed: {type(exc).__name__}: {exc}") from exc
            _check_alive(procs, name)
            moved += res.bytes
            metrics[f"{name}_mb_s"] = res.mb_per_s
            if res.capped:
                metrics[f"{name}_capped"] = 1
                result["notes"].append(
                    f"{name}: time cap {opts.bulk_cap:g}s hit after {res.bytes / MiB:.1f} MiB"
                )
            _log(opts, f"{name}: {res.mb_per_s:.1f} MB/s ({res.bytes / MiB:.1f} MiB)")
        cpu1 = _cpu(procs)
        me1 = self_cpu_seconds()
        if moved:
            gb = moved / 1e9
            for role in cpu0:
                a, b = cpu0[role], cpu1[role]
                if a is not None and b is not None:
                    metrics[f"cpu_s_per_gb:{role}"] = (b - a) / gb
            metrics["cpu_s_per_gb:bench"] = (me1 - me0) / gb
        await asyncio.sleep(1.0)
        _put_roles(metrics, "rss_after_mib", _rss(procs))
        _put_roles(metrics, "rss_peak_mib", _rss(procs, "VmHWM"))

        # -- first byte of new connections while bulk downloads saturate the chain --------
        if opts.load_conns > 0:
            await _load_phase(procs, socks_port, sink, opts, metrics, result["notes"])

        # -- many concurrent bulk connections (last: it sets the lifetime RSS peak) -------
        many = opts.kcp_many_conns if spec.is_udp else opts.many_conns
        if many > 0:
            await _many_phase(procs, many, socks_port, sink, opts, metrics, result["notes"])
        if relay is not None:
            st = relay.stats
            metrics["relay_dropped_pct"] = (
                100 * (st.up_dropped + st.down_dropped) / max(1, st.up_in + st.down_in)
            )
        result["ok"] = True
    except ChainStartError as exc:
        result["error"] = f"chain failed to start: {exc}"
    except (PhaseError, TimeoutError, OSError, ConnectionError) as exc:
        msg = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            msg = "phase timed out"
        tails = "\n".join(p.describe_failure("output") for p in procs if p.popen)
        result["error"] = f"{msg}\n{tails}" if not isinstance(exc, PhaseError) else msg
    except Exception:  # a bench bug must not take the other chains down with it
        result["error"] = "internal bench error:\n" + traceback.format_exc()
    finally:
        for p in reversed(procs):
            with contextlib.suppress(Exception):
                await asyncio.to_thread(p.stop)
        if relay is not None:
            relay.close()
    return result
