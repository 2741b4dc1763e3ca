"""4.34's own API client against ``v2py run --workers 2``: ``v2ctl api`` reads the
counters of both workers summed, whichever worker its call lands on, and gets 4.34's
error for a counter neither has (users and handlers across workers:
``tests/scenarios/test_workers_api.py``)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.interop.test_api_interop import _stats, v2ctl
from tests.scenarios.test_workers_api import ALICE, UPLINK, server_config
from tests.support.configs import vmess_client_config
from tests.support.socks import socks5_connect
from tests.support.v2py import run_v2py
from tests.support.v2ray import free_ports, require_v2ray
from tests.support.workers import connections_per_worker, run_v2py_workers

pytestmark = pytest.mark.interop


async def test_v2ctl_reads_the_sum_of_both_workers(echo_server: tuple[str, int]) -> None:
    require_v2ray()
    api_port, vmess_port, socks_port = free_ports(3)
    async with (
        run_v2py_workers(server_config(api_port, vmess_port)) as handle,
        run_v2py(vmess_client_config(socks_port, vmess_port, ALICE, 0, "aes-128-gcm")),
        asyncio.timeout(60),
    ):
        held = [await socks5_connect(socks_port, *echo_server) for _ in range(30)]
        for _, writer in held:
            writer.write(bytes(500))
        for reader, _ in held:
            await reader.readexactly(500)
        assert all(n > 0 for n in connections_per_worker(handle, {vmess_port}).values())
        for _, writer in held:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        seen = set()
        for _ in range(6):
            code, out, err = await v2ctl(
                f"--server=127.0.0.1:{api_port}", "StatsService.GetStats", f'name: "{UPLINK}"'
            )
            assert code == 0, err
            seen.add(_stats(out)[UPLINK])
        assert len(seen) == 1 and seen.pop() >= 30 * 500
        code, out, err = await v2ctl(
            f"--server=127.0.0.1:{api_port}", "StatsService.GetStats", 'name: "no>>>such"'
        )
        assert code != 0 and b"no>>>such not found." in err
