"""The real V2Ray 4.34 client against ``v2py run --workers 2`` with the seed dynamic-port
config: it is told "port P, user U" by whichever worker served its main-port
connection and comes back to P on any worker, so every worker must know U."""

from __future__ import annotations

import asyncio
import sys

import pytest

from tests.interop.test_dynamic_port_interop import run_v2ray_client
from tests.scenarios.test_dynamic_port import echo_through, seed_server
from tests.scenarios.test_workers import DYNAMIC_CONNECTIONS, generation_ports
from tests.support.ports import free_dual_ports, free_port_range
from tests.support.socks import socks5_connect
from tests.support.v2ray import require_v2ray
from tests.support.workers import connections_per_worker, run_v2py_workers

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only"),
]

#: Sequential connections first (main, main, D1, D2, main, D1: spec 5.2), then the
#: rest held open at once so that /proc shows which worker holds which.
WARM_UP = 6
HELD = DYNAMIC_CONNECTIONS - WARM_UP


async def test_v2ray_client_to_two_workers(echo_server: tuple[str, int]) -> None:
    require_v2ray()
    main_port, socks_port = free_dual_ports(2)
    first, last = free_port_range(8)
    text = seed_server("tcp", main_port, first, last, log={"loglevel": "info"})
    async with (
        run_v2py_workers(text) as server,
        run_v2ray_client("tcp", socks_port, main_port),
    ):
        gens = generation_ports(server.log())
        assert len(gens) == 2 and gens[0] == gens[1], server.log()
        for _ in range(WARM_UP):
            await echo_through(socks_port, echo_server)

        async def held(i: int) -> asyncio.StreamWriter:
            async with asyncio.timeout(20):
                reader, writer = await socks5_connect(socks_port, *echo_server)
                writer.write(b"held-%d" % i)
                assert await reader.readexactly(len(b"held-%d" % i)) == b"held-%d" % i
            return writer

        writers = await asyncio.gather(*(held(i) for i in range(HELD)))
        per_worker = connections_per_worker(server, gens[0])
        for writer in writers:
            writer.close()
    # ~2/3 of them went to the two dynamic ports, and both workers served some.
    assert all(per_worker.values()), per_worker
