"""``v2py api`` as a user runs it (the console command), compared byte for byte with
``v2ctl api`` of V2Ray 4.34: its flag handling, its errors, and its answers from a
running v2ray 4.34 server."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.v2ray import REQUIRE_ENV, free_ports, run_v2ray
from v2py.api_cli import FLAG_USAGE, USAGE
from v2py.api_cli import main as api_main

USAGE_TEXT = "".join(line + "\n" for line in USAGE)


def _v2py_command() -> list[str]:
    """The installed ``v2py`` console script next to this Python, else ``python -m v2py``."""
    script = Path(sys.executable).with_name("v2py")
    return [str(script)] if script.exists() else [sys.executable, "-m", "v2py"]


def require_v2ctl() -> str:
    found = shutil.which("v2ctl") or ("/usr/bin/v2ctl" if Path("/usr/bin/v2ctl").exists() else None)
    if found is None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail("v2ctl required (V2PY_REQUIRE_V2RAY is set) but not found")
        pytest.skip("v2ctl not installed")
    return found


async def _exec(*argv: str) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(20):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out, err


async def _both(args: list[str]) -> tuple[tuple[int, bytes, bytes], tuple[int, bytes, bytes]]:
    """(``v2ctl api ARGS``, ``v2py api ARGS``), run at the same time."""
    v2ctl = require_v2ctl()
    want, got = await asyncio.gather(
        _exec(v2ctl, "api", *args), _exec(*_v2py_command(), "api", *args)
    )
    return want, got


# -- without v2ctl: the texts as 4.34's v2ctl prints them [verified] ---------------------


@pytest.mark.parametrize(
    ("args", "code", "stderr"),
    [
        (["-h"], 0, FLAG_USAGE),
        (["--help"], 0, FLAG_USAGE),
        (
            ["--bogus", "x", "y"],
            255,
            f"flag provided but not defined: -bogus\n{FLAG_USAGE}"
            "flag provided but not defined: -bogus\n\n",
        ),
        (
            ["-server"],
            255,
            f"flag needs an argument: -server\n{FLAG_USAGE}flag needs an argument: -server\n\n",
        ),
        (
            ["---server=x", "a", "b"],
            255,
            f"bad flag syntax: ---server=x\n{FLAG_USAGE}bad flag syntax: ---server=x\n\n",
        ),  # fmt: skip
        ([], 255, "v2ray.com/core/infra/control: service name or request not specified.\n\n"),
        (
            ["-server=127.0.0.1:1", "StatsService.GetStats"],
            255,
            "v2ray.com/core/infra/control: service name or request not specified.\n\n",
        ),
        (
            ["--", "-server=x", ""],
            255,
            "v2ray.com/core/infra/control: unknown service: -server=x\n\n",
        ),
    ],
)
def test_usage_and_flag_errors(args: list[str], code: int, stderr: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert api_main(args, stdout=out, stderr=err) == code
    assert (out.getvalue(), err.getvalue()) == (USAGE_TEXT, stderr)


def test_api_is_a_subcommand() -> None:
    from v2py.cli import SUBCOMMANDS

    assert "api" in SUBCOMMANDS


# -- the console command against v2ctl ------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize(
    "args",
    [
        [],
        ["-h"],
        ["-help"],
        ["--bogus", "x", "y"],
        ["-server"],
        ["---server=x", "a", "b"],
        ["-=x", "a", "b"],
        ["StatsService.GetStats"],
        ["Nope.Get", ""],
        ["--", "-x", "y"],
        ["-", "y"],
    ],
)
async def test_command_line_errors_as_v2ctl(args: list[str]) -> None:
    want, got = await _both(args)
    assert got == want


@pytest.mark.interop
async def test_dial_failure_as_v2ctl() -> None:
    """Nothing listens: both give up after their 3-second deadline with the same text."""
    (closed,) = free_ports(1)
    want, got = await _both([f"--server=127.0.0.1:{closed}", "StatsService.GetStats", ""])
    assert got == want
    assert b"context deadline exceeded" in got[2]


def _v2ray_api_server(api_port: int) -> dict[str, Any]:
    """A 4.34 panel-style API wiring (dokodemo ``api`` inbound routed to ``api``)."""
    return {
        "api": {"tag": "api", "services": ["HandlerService", "StatsService", "LoggerService"]},
        "stats": {},
        "policy": {"system": {"statsInboundUplink": True, "statsOutboundUplink": True}},
        "inbounds": [
            {
                "tag": "api",
                "listen": "127.0.0.1",
                "port": api_port,
                "protocol": "dokodemo-door",
                "settings": {"address": "127.0.0.1"},
            }
        ],
        "outbounds": [{"protocol": "freedom", "tag": "direct"}],
        "routing": {"rules": [{"type": "field", "inboundTag": ["api"], "outboundTag": "api"}]},
    }


@pytest.mark.interop
async def test_v2py_api_command_against_v2ray_prints_what_v2ctl_prints() -> None:
    """``v2py api`` (the real console command) talking to a running v2ray 4.34."""
    require_v2ctl()
    (api_port,) = free_ports(1)
    server = f"--server=127.0.0.1:{api_port}"
    async with run_v2ray(_v2ray_api_server(api_port), wait_tcp=[api_port]):
        for args in (
            [server, "StatsService.GetStats", 'name: "outbound>>>direct>>>traffic>>>uplink"'],
            [f"-server=:{api_port}", "StatsService.GetStats", 'name: "nope"'],
            # one match each (4.34 lists several counters in Go map order, which is
            # random); not the api inbound's, which every call changes
            [server, "StatsService.QueryStats", 'pattern: "direct>>>traffic>>>up" reset: false'],
            [
                server,
                "statsservice.querystats",
                "pattern: 'direct>>>traffic>>>uplink', reset: true",
            ],
            [server, "StatsService.QueryStats", 'pattern: "no such counter"'],
            [server, "StatsService.QueryStats", "bogus: 1"],
            [server, "StatsService.GetStats", 'name: "x'],
            [server, "StatsService.Nope", ""],
            [server, "LoggerService.RestartLogger", ""],
            ["-server", f"127.0.0.1:{api_port}", "LoggerService.RestartLogger", "ignored: 1"],
        ):
            want, got = await _both(args)
            assert got == want, args
        # GetSysStats: the same fields in the same order (the values differ, of course)
        want, got = await _both([server, "StatsService.GetSysStats", ""])
        assert (got[0], got[2]) == (want[0], want[2]) == (0, b"")

        def keys(text: bytes) -> list[bytes]:
            return [line.split(b":")[0] for line in text.splitlines() if line]

        assert keys(got[1]) == keys(want[1])[: len(keys(got[1]))]
        assert keys(got[1])[:2] == [b"NumGoroutine", b"NumGC"]
