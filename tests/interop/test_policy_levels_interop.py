"""Interop: which policy level times a connection, as 4.34 decides it.

4.34 runs one inactivity timer in the inbound (at the inbound user's level, or its
``userLevel``) and one in the outbound (at the picked server user's level, or
freedom's ``userLevel``); either one firing ends the connection, so the shorter
``connIdle`` wins. A level that ``policy.levels`` does not list has the built-in
defaults (``connIdle`` 300 s), not level 0's values. The same socks -> vmess client
config runs under v2ray and under v2py towards a silent target; both must end the
connection (or keep it) alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.support.configs import vmess_client_config, vmess_server_config
from tests.support.socks import socks5_connect
from tests.support.v2py import run_side, run_v2py
from tests.support.v2ray import free_port

pytestmark = pytest.mark.interop

UUID = "5a0b5d31-77a4-4b2e-9d5c-2d44e6c1f0a1"
#: Every case waits at most this long for the connection to end.
WAIT_S = 3.5
QUICK = {"connIdle": 1, "uplinkOnly": 0, "downlinkOnly": 0}
SLOW = {"connIdle": 60, "uplinkOnly": 0, "downlinkOnly": 0}

#: (levels, socks userLevel, vmess user level, whether the connection ends within WAIT_S)
CASES: list[tuple[dict[str, Any], int, int, bool]] = [
    ({"0": SLOW, "1": QUICK}, 0, 1, True),  # the outbound user's level is shorter
    ({"0": SLOW, "1": QUICK}, 1, 0, True),  # the inbound's level is shorter
    ({"0": SLOW, "1": SLOW}, 0, 1, False),
    ({"0": QUICK}, 5, 5, False),  # level 5 unlisted: 300 s, not level 0's 1 s
]


def client_config(
    socks: int, server: int, levels: dict[str, Any], inbound: int, outbound: int
) -> Any:
    config = vmess_client_config(socks, server, UUID, 0, "aes-128-gcm")
    config["policy"] = {"levels": levels}
    config["inbounds"][0]["settings"]["userLevel"] = inbound
    config["outbounds"][0]["settings"]["vnext"][0]["users"][0]["level"] = outbound
    return config


@contextlib.asynccontextmanager
async def silent_target() -> AsyncIterator[int]:
    """Takes everything, never answers, never closes first."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def ends_within(socks: int, target: int) -> float | None:
    """Seconds until the chain closed the connection, or None if it stayed open."""
    reader, writer = await socks5_connect(socks, "127.0.0.1", target)
    started = time.monotonic()
    writer.write(b"anyone there?")
    try:
        async with asyncio.timeout(WAIT_S):
            with contextlib.suppress(ConnectionError):
                while await reader.read(65536):
                    pass
        return time.monotonic() - started
    except TimeoutError:
        return None
    finally:
        writer.close()


async def run_case(
    kind: str, server: int, target: int, case: tuple[Any, int, int, bool]
) -> float | None:
    levels, inbound, outbound, _ = case
    socks = free_port()
    async with run_side(kind, client_config(socks, server, levels, inbound, outbound), socks):
        return await ends_within(socks, target)


async def test_the_shorter_level_ends_the_connection_as_in_4_34() -> None:
    server = free_port()
    async with silent_target() as target, run_v2py(vmess_server_config(server, UUID, 0)):
        kinds = ("v2ray", "v2py")
        results = await asyncio.gather(
            *(run_case(kind, server, target, case) for case in CASES for kind in kinds)
        )
    for index, case in enumerate(CASES):
        v2ray, v2py = results[2 * index], results[2 * index + 1]
        ends = case[3]
        assert (v2ray is not None, v2py is not None) == (ends, ends), (case, v2ray, v2py)
