"""``v2py stats``: the traffic counters of a running V2Ray 4.34 or v2py as a table.

``v2py stats [--server=HOST:PORT] [--reset] [--bytes] [PATTERN]`` calls
StatsService.QueryStats (``PATTERN`` is QueryStats' plain substring; none: every
counter) and prints one row per inbound, outbound and user with its uplink and
downlink, in KiB/MiB/GiB (``--bytes``: exact byte counts). ``--reset`` zeroes the
counters it lists (what it prints are the values before). For scripts, ``v2py api
StatsService.QueryStats ...`` prints v2ctl's exact text instead.

Exit 0, or 1 with one line on standard error when the server cannot be reached or
refuses the call.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

__all__ = ["format_table", "main"]

DEFAULT_SERVER = "127.0.0.1:8080"
TIMEOUT_S = 3.0
_KINDS = ("inbound", "outbound", "user")
_DIRECTIONS = ("uplink", "downlink")
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human(n: int) -> str:
    """``n`` bytes in IEC units with one decimal (bytes exactly below 1 KiB)."""
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_table(stats: Iterable[tuple[str, int]], *, exact: bool = False) -> str:
    """Rows of kind, name, uplink, downlink from ``(counter name, value)`` pairs.

    ``kind>>>NAME>>>traffic>>>uplink|downlink`` counters are paired by (kind, NAME);
    any other counter gets its own row under kind ``-`` with its value as uplink.
    Sorted by kind (inbound, outbound, user, others), then name.
    """
    rows: dict[tuple[str, str], list[int | None]] = {}
    for full, value in stats:
        parts = full.split(">>>")
        if len(parts) == 4 and parts[2] == "traffic" and parts[3] in _DIRECTIONS:
            key = (parts[0], parts[1])
            slot = _DIRECTIONS.index(parts[3])
        else:
            key, slot = ("-", full), 0
        rows.setdefault(key, [None, None])[slot] = value

    def cell(value: int | None) -> str:
        if value is None:
            return "-"
        return str(value) if exact else human(value)

    def order(key: tuple[str, str]) -> tuple[int, str, str]:
        kind, name = key
        return (_KINDS.index(kind) if kind in _KINDS else len(_KINDS), kind, name)

    table = [("KIND", "NAME", "UPLINK", "DOWNLINK")]
    table += [
        (k, n, cell(v[0]), cell(v[1]))
        for (k, n), v in sorted(rows.items(), key=lambda r: order(r[0]))
    ]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    kind_w, name_w, up_w, down_w = widths
    lines = [
        f"{kind:<{kind_w}}  {name:<{name_w}}  {up:>{up_w}}  {down:>{down_w}}"
        for kind, name, up, down in table
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def query(server: str, pattern: str, reset: bool) -> list[tuple[str, int]]:
    """QueryStats on ``server``; raises RuntimeError with a one-line reason."""
    import grpc

    from v2py.api_cli import _target
    from v2py.app.commander.proto import stats_command_pb2 as spb

    with grpc.insecure_channel(_target(server)) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=TIMEOUT_S)
        except grpc.FutureTimeoutError:
            raise RuntimeError(f"cannot reach {server} (no API there?)") from None
        call: grpc.UnaryUnaryMultiCallable[spb.QueryStatsRequest, spb.QueryStatsResponse]
        call = channel.unary_unary(
            "/v2ray.core.app.stats.command.StatsService/QueryStats",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=spb.QueryStatsResponse.FromString,
        )
        try:
            response = call(spb.QueryStatsRequest(pattern=pattern, reset=reset), timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise RuntimeError(f"{server} refused QueryStats: {details}") from None
    return [(s.name, int(s.value)) for s in response.stat]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="v2py stats",
        description="The traffic counters of a running V2Ray/v2py (StatsService.QueryStats).",
    )
    p.add_argument("-s", "-server", "--server", default=DEFAULT_SERVER, metavar="HOST:PORT",
                   help=f"the API's address (default {DEFAULT_SERVER})")  # fmt: skip
    p.add_argument("-reset", "--reset", action="store_true",
                   help="zero the listed counters (the values before are printed)")  # fmt: skip
    p.add_argument("-bytes", "--bytes", action="store_true", help="exact byte counts")
    p.add_argument("pattern", nargs="?", default="", help="substring of counter names")
    return p


def main(args: Sequence[str], *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``v2py stats ARGS``; returns the exit code."""
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    try:
        options = _parser().parse_args(list(args))
    except SystemExit as exc:  # argparse: -h (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        found = query(options.server, options.pattern, options.reset)
    except RuntimeError as exc:
        err.write(f"v2py stats: {exc}\n")
        return 1
    if not found:
        err.write('v2py stats: no counters (is "stats": {} in the config, and the policy on?)\n')
        return 0
    out.write(format_table(found, exact=options.bytes))
    out.flush()
    return 0
