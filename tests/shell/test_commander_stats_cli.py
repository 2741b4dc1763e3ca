"""``v2py stats``: QueryStats as a table (the pure formatting, and the command against a
running v2py and, in interop, a running v2ray 4.34)."""

from __future__ import annotations

import asyncio
import io
import sys
from typing import Any

import pytest

from tests.shell.test_commander_handlers import echo, server_config
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_ports, run_v2ray
from v2py.stats_cli import format_table, human
from v2py.stats_cli import main as stats_main


def test_human_units() -> None:
    assert [human(n) for n in (0, 1023, 1024, 1536, 5 << 20, 3 << 30)] == [
        "0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 MiB", "3.0 GiB",
    ]  # fmt: skip


def test_table_pairs_directions_and_sorts() -> None:
    stats = [
        ("user>>>bob>>>traffic>>>uplink", 10),
        ("inbound>>>api>>>traffic>>>downlink", 2048),
        ("user>>>alice>>>traffic>>>downlink", 7),
        ("user>>>alice>>>traffic>>>uplink", 5),
        ("weird>>>name", 1),
        ("outbound>>>direct>>>traffic>>>uplink", 0),
    ]
    assert format_table(stats, exact=True) == (
        "KIND      NAME          UPLINK  DOWNLINK\n"
        "inbound   api                -      2048\n"
        "outbound  direct             0         -\n"
        "user      alice              5         7\n"
        "user      bob               10         -\n"
        "-         weird>>>name       1         -\n"
    )
    assert "2.0 KiB" in format_table(stats)


async def _stats(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(stats_main, list(args), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


async def test_stats_of_a_running_v2py(echo_server: tuple[str, int]) -> None:
    api_port, socks_port = free_ports(2)
    socks: dict[str, Any] = {
        "tag": "socks-late", "listen": "127.0.0.1", "port": socks_port,
        "protocol": "socks", "settings": {"auth": "noauth"},
    }  # fmt: skip
    async with run_v2py(server_config(api_port, inbounds=(socks,))):
        assert await echo(socks_port, echo_server) == b""  # blackholed: rule names "late"
        code, out, err = await _stats(f"--server=127.0.0.1:{api_port}", "--bytes", "blocked")
        assert (code, err) == (0, "")
        assert out.splitlines()[1].split() == ["outbound", "blocked", "0", "0"]
        code, out, _ = await _stats("-s", f":{api_port}", "inbound>>>socks-late")
        assert code == 0 and out.splitlines()[1].split()[:2] == ["inbound", "socks-late"]
        code, out, err = await _stats(f"-server=127.0.0.1:{api_port}", "no such counter")
        assert (code, out) == (0, "") and "no counters" in err


async def test_unreachable_server_is_one_line() -> None:
    (closed,) = free_ports(1)
    code, out, err = await _stats(f"--server=127.0.0.1:{closed}")
    assert (code, out) == (1, "")
    assert err == f"v2py stats: cannot reach 127.0.0.1:{closed} (no API there?)\n"


@pytest.mark.interop
async def test_console_command_against_v2ray() -> None:
    (api_port,) = free_ports(1)
    config = server_config(api_port)
    config["routing"]["rules"] = config["routing"]["rules"][:1]
    async with run_v2ray(config, wait_tcp=[api_port]):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "v2py", "stats", f"-server=127.0.0.1:{api_port}", "-bytes",
            "outbound>>>", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(20):
            out, err = await proc.communicate()
    assert (proc.returncode, err) == (0, b"")
    assert out.decode().splitlines() == [
        "KIND      NAME     UPLINK  DOWNLINK",
        "outbound  blocked       0         0",
        "outbound  direct        0         0",
    ]
