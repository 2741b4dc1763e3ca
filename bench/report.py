"""Medians, the printed table, JSON and the PNG chart."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

# (metric key, label, format); per-role keys are "name:role"
METRICS: list[tuple[str, str, str]] = [
    ("upload_mb_s", "upload MB/s", "{:.1f}"),
    ("download_mb_s", "download MB/s", "{:.1f}"),
    ("conn_per_s", "conn/s (64B req/resp)", "{:.0f}"),
    ("conn_p50_ms", "conn latency p50 ms", "{:.2f}"),
    ("conn_p99_ms", "conn latency p99 ms", "{:.2f}"),
    ("exch_p50_ms", "64B exchange p50 ms", "{:.2f}"),
    ("exch_p99_ms", "64B exchange p99 ms", "{:.2f}"),
    ("cpu_s_per_gb:client", "CPU s/GB client", "{:.2f}"),
    ("cpu_s_per_gb:server", "CPU s/GB server", "{:.2f}"),
    ("cpu_ms_per_kconn:client", "CPU ms/1k conns client", "{:.0f}"),
    ("cpu_ms_per_kconn:server", "CPU ms/1k conns server", "{:.0f}"),
    ("rss_start_mib:client", "RSS start MiB client", "{:.1f}"),
    ("rss_start_mib:server", "RSS start MiB server", "{:.1f}"),
    ("idle_rss_mib:client", "RSS idle-conns MiB client", "{:.1f}"),
    ("idle_rss_mib:server", "RSS idle-conns MiB server", "{:.1f}"),
    ("idle_kib_per_conn:client", "KiB/idle conn client", "{:.1f}"),
    ("idle_kib_per_conn:server", "KiB/idle conn server", "{:.1f}"),
    ("rss_peak_mib:client", "RSS peak MiB client", "{:.1f}"),
    ("rss_peak_mib:server", "RSS peak MiB server", "{:.1f}"),
    ("rss_after_mib:client", "RSS after load MiB client", "{:.1f}"),
    ("rss_after_mib:server", "RSS after load MiB server", "{:.1f}"),
    ("load_first_byte_p50_ms", "loaded: first byte p50 ms", "{:.1f}"),
    ("load_first_byte_max_ms", "loaded: first byte max ms", "{:.1f}"),
    ("load_connect_p50_ms", "loaded: SOCKS CONNECT p50 ms", "{:.1f}"),
    ("load_probe_errors", "loaded: probes failed", "{:.0f}"),
    ("load_bulk_started", "loaded: downloads running", "{:.0f}"),
    ("load_bulk_lost", "loaded: downloads dropped", "{:.0f}"),
    ("load_bulk_mb_s", "loaded: downloads MB/s", "{:.1f}"),
    ("load_bench_lag_max_ms", "loaded: (bench loop lag max ms)", "{:.1f}"),
    ("many_total", "many: connections", "{:.0f}"),
    ("many_completed", "many: completed", "{:.0f}"),
    ("many_verified_mib", "many: MiB echoed + verified", "{:.1f}"),
    ("many_connect_s", "many: connect all s", "{:.2f}"),
    ("many_transfer_s", "many: transfer all s", "{:.2f}"),
    ("many_wall_s", "many: wall s", "{:.2f}"),
    ("many_fd_delta:client", "many: fd delta client", "{:+.0f}"),
    ("many_fd_delta:server", "many: fd delta server", "{:+.0f}"),
    ("many_fd_delta:bench", "many: (fd delta bench)", "{:+.0f}"),
    ("many_rss_peak_mib:client", "many: RSS peak MiB client", "{:.1f}"),
    ("many_rss_peak_mib:server", "many: RSS peak MiB server", "{:.1f}"),
    ("startup_ms", "spawn to first reply ms", "{:.0f}"),
    ("cpu_s_per_gb:bench", "(bench CPU s/GB)", "{:.2f}"),
    ("cpu_ms_per_kconn:bench", "(bench CPU ms/1k conns)", "{:.0f}"),
    ("relay_dropped_pct", "(relay dropped %)", "{:.1f}"),
]
LABELS = {k: label for k, label, _ in METRICS}
# differences around zero: a ratio of two of them means nothing
NO_RATIO = {
    "many_fd_delta:client",
    "many_fd_delta:server",
    "many_fd_delta:bench",
    "load_bulk_lost",
    "load_probe_errors",
}
# panels spanning orders of magnitude (mKCP next to plain TCP)
LOG_PANELS = {"upload_mb_s", "download_mb_s", "conn_per_s", "conn_p99_ms", "cpu_s_per_gb:server"}


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    ok = [r["metrics"] for r in runs if r["ok"]]
    keys = sorted({k for m in ok for k in m})
    return {k: statistics.median([m[k] for m in ok if k in m]) for k in keys}


def _fmt(fmt: str, v: float | None) -> str:
    return "-" if v is None else fmt.format(v)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def table(summary: dict[str, Any], impls: list[str]) -> str:
    """The text table: one block per chain, absolute medians per implementation + ratio."""
    lines: list[str] = []
    show_ratio = impls == ["v2py", "v2ray"]
    head = f"{'metric':<28}" + "".join(f"{i:>12}" for i in impls)
    if show_ratio:
        head += f"{'v2py/v2ray':>12}"
    for chain, per_impl in summary["chains"].items():
        lines.append("")
        runs_desc = ", ".join(
            f"{i}: {per_impl[i]['ok_runs']}/{per_impl[i]['runs']} ok" for i in impls
        )
        lines.append(f"== {chain}  ({runs_desc})")
        lines.append(head)
        lines.append("-" * len(head))
        shown = 0
        for key, label, fmt in METRICS:
            vals = [per_impl[i]["median"].get(key) for i in impls]
            if all(v is None for v in vals):
                continue
            row = f"{label:<28}" + "".join(f"{_fmt(fmt, v):>12}" for v in vals)
            if show_ratio:
                r = None if key in NO_RATIO else ratio(vals[0], vals[1])
                row += f"{'-' if r is None else f'{r:.2f}':>12}"
            lines.append(row)
            shown += 1
        if not shown:
            lines.append("(no successful run)")
        for i in impls:
            for note in per_impl[i]["notes"]:
                lines.append(f"  note [{i}]: {note}")
            if per_impl[i]["errors"]:
                first = per_impl[i]["errors"][0]
                lines.append(f"  FAILED [{i}]: " + first.splitlines()[0])
    return "\n".join(lines)


def write_json(path: Path, summary: dict[str, Any]) -> None:
    path.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")


def write_png(path: Path, summary: dict[str, Any], impls: list[str]) -> str | None:
    """A bar chart of the main metrics; returns an explanation when it was skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'); PNG skipped"
    panels = [
        ("upload_mb_s", "upload MB/s"),
        ("download_mb_s", "download MB/s"),
        ("conn_per_s", "connections/s"),
        ("conn_p99_ms", "conn latency p99 ms"),
        ("cpu_s_per_gb:server", "CPU s/GB (server, or only process)"),
        ("idle_rss_mib:server", "RSS MiB with idle conns (server)"),
        ("many_wall_s", "many conns: wall s"),
        ("many_rss_peak_mib:server", "many conns: RSS peak MiB (server)"),
    ]
    chains = list(summary["chains"])
    fig, axes = plt.subplots(2, 4, figsize=(20, 8))
    width = 0.8 / max(1, len(impls))
    for ax, (key, title) in zip(axes.flat, panels, strict=True):
        for n, impl in enumerate(impls):
            vals = []
            for c in chains:
                med = summary["chains"][c][impl]["median"]
                v = med.get(key)
                if v is None and key.endswith(":server"):
                    v = med.get(key.replace(":server", ":client"))
                vals.append(v if v is not None else 0.0)
            xs = [x + (n - (len(impls) - 1) / 2) * width for x in range(len(chains))]
            ax.bar(xs, vals, width, label=impl)
        ax.set_title(title + (" (log)" if key in LOG_PANELS else ""))
        if key in LOG_PANELS and any(
            summary["chains"][c][i]["median"].get(key) for c in chains for i in impls
        ):
            ax.set_yscale("log")
        ax.set_xticks(range(len(chains)))
        ax.set_xticklabels(chains, rotation=20, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes.flat[0].legend()
    meta = summary["meta"]
    fig.suptitle(
        f"v2py vs v2ray, medians of {meta['runs']} run(s); "
        f"bulk {meta['bulk_mib']} MiB, loss {meta['loss_pct']}%; many conns "
        f"{meta.get('many_conns', 0)} x {meta.get('many_kib', 0):g} KiB echoed"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None
